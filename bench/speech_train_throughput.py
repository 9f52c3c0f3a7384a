"""Speech LoRA training throughput: decoder-LoRA on cached encoder outputs vs the naive loop.

    python bench/speech_train_throughput.py            # full: 96 med-dictation clips x 2 epochs, batch 8
    python bench/speech_train_throughput.py --quick    # CI smoke run (figures meaningless)
    python bench/speech_train_throughput.py --model openai/whisper-small --examples 256  # GPU

workbench: the frozen encoder's output for each clip is computed once
  (engine.train.speech.build_encoder_cache, fp16 safetensors) and training runs the
  decoder only, fed by SpeechCollator from the cache.
baseline:  the naive loop - every step loads the audio, computes log-mel features and runs
  the (frozen) encoder again before the decoder (SpeechCollator without a cache).
Both: same model (embedded Whisper tiny.en unless --model), same shipped med-dictation
clips, same decoder LoRA (workbench defaults), batch, schedule and seed, the Trainer set up
by engine.train.hf, and so the same decoder step (engine/train/speech_step.py: cross-
attention folded over the frozen frames, loss on target positions): the only difference
is where the encoder output comes from, so the ratio is the cache's alone.
Figures: training samples/s, the one-time cache build (its cost is paid once per clip and
model, and reused by every later run and epoch), samples/s with the cache build counted
over --epochs, peak RSS (and GPU memory). Goal: >= 5x samples/s.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import _common


def _spaced(rows: list[dict], n: int) -> list[dict]:
    if n >= len(rows):
        return rows
    step = len(rows) / n
    return [rows[int(i * step)] for i in range(n)]


def run_variant(args, cached: bool) -> dict:
    from transformers import set_seed

    from engine.config import RunConfig
    from engine.data.datasets import open_dataset
    from engine.data.shipped import ensure_shipped
    from engine.train import speech
    from engine.train.collators import Counter, SpeechCollator
    from engine.train.hf import _trainer
    from engine.train.model import apply_lora, load_base, pick_device, precision_flags

    cfg = RunConfig()
    cfg.model.name = args.model
    cfg.data.dataset = "med-dictation"
    cfg.train.batch_size = args.batch_size
    cfg.train.device = args.device
    cfg.train.max_steps = math.ceil(args.examples * args.epochs / args.batch_size)
    cfg.train.save_steps = 10**6
    cfg.train.eval_steps = 0
    ws = _common.workspace(args)
    rows = _spaced(open_dataset(str(ensure_shipped("med-dictation", ws)), ws).load_split("train"), args.examples)
    dev = pick_device(cfg)
    flags = precision_flags(cfg, dev)
    model, proc, _ = load_base(cfg, "speech", dev)
    prefix = speech.prompt_ids(proc, model)
    with tempfile.TemporaryDirectory() as tmp:
        cache, cache_s = None, 0.0
        if cached:
            t0 = time.perf_counter()
            cache = speech.build_encoder_cache(model, proc, [r["audio"] for r in rows], Path(tmp) / "enc")
            cache_s = time.perf_counter() - t0
        set_seed(cfg.train.seed)
        model = apply_lora(cfg, model, "speech")
        ds = speech.build_speech_dataset(proc, prefix, rows, cfg.train.max_length, cache, "med-dictation/train.jsonl")
        counter = Counter()
        collator = SpeechCollator(proc.tokenizer.eos_token_id, proc.feature_extractor, counter)
        trainer = _trainer(cfg, SimpleNamespace(checkpoints_dir=Path(tmp) / "ckpt"), model, proc, ds, None,
                           collator, flags, dev, "speech")
        t0, c0 = time.perf_counter(), _common.cpu_s()
        out = trainer.train()
        secs, cpu = time.perf_counter() - t0, _common.cpu_s() - c0
    return {"variant": "workbench (cached encoder)" if cached else "baseline (encoder every step)",
            "steps": trainer.state.global_step, "samples": counter.samples, "train_s": round(secs, 2),
            "samples_per_s": round(counter.samples / secs, 3),
            "train_cpu_s": round(cpu, 2), "samples_per_cpu_s": round(counter.samples / cpu, 3), "cache_build_s": round(cache_s, 2),
            "samples_per_s_incl_cache": round(counter.samples / (secs + cache_s), 3),
            "train_loss": round(out.training_loss, 4), **_common.peak_mem(dev)}


def main() -> None:
    ap = _common.parser(__doc__)
    ap.add_argument("--model", default="whisper-tiny.en")
    # 24 steps: a 4-step run (32 clips, 1 epoch) read 4.75x where this read 6.56x, its first
    # step's one-time warm-up weighing on the workbench's short total
    ap.add_argument("--examples", type=int, default=96, help="training clips")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    if args.quick:
        args.examples, args.batch_size, args.epochs = 4, 2, 1
    if args.variant:
        _common.emit(run_variant(args, cached=args.variant == "workbench"))
        return
    argv = _common.passthrough(args, ["workspace", "device", "model", "examples", "epochs", "batch_size"])
    rows = [_common.run_variant(__file__, v, argv) for v in ("baseline", "workbench")]
    base, wb = rows
    r = wb["samples_per_s"] / base["samples_per_s"]
    cols = ["variant", "samples", "steps", "train_s", "samples_per_s", "train_cpu_s", "samples_per_cpu_s",
            "cache_build_s", "samples_per_s_incl_cache",
            "train_loss", "peak_rss_mb"] + (["peak_gpu_mb"] if "peak_gpu_mb" in wb else [])
    incl = wb["samples_per_s_incl_cache"] / base["samples_per_s"]
    r_cpu = wb["samples_per_cpu_s"] / base["samples_per_cpu_s"]
    _common.finish(f"Speech decoder-LoRA training, {args.model}, med-dictation, batch {args.batch_size}, "
                   f"{args.epochs} epoch(s)", rows, cols,
                   _common.ratio_line(r, f"workbench/baseline training samples/s ({r_cpu:.2f}x per CPU-second; {incl:.2f}x counting the "
                                      f"one-time cache build)", ">= 5x", r >= 5), args)


if __name__ == "__main__":
    main()
