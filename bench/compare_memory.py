"""Compare memory: one base model with the adapter toggled vs two model copies.

    python bench/compare_memory.py            # full: SmolLM2-135M + a LoRA r=16 adapter, 3 questions
    python bench/compare_memory.py --quick    # CI smoke run
    python bench/compare_memory.py --model meta-llama/Llama-3.1-8B   # GPU, bigger model

workbench: engine.eval.compare.open_pair(model, adapter=...) - the adapter is attached to
  ONE copy of the base weights; the base side runs inside ``disable_adapter()``.
baseline:  what a side-by-side script usually does - load the base model, and load a second
  copy with the adapter attached.
Each variant runs in its own child process (clean peak RSS; peak GPU memory on a GPU) and
answers the same questions (greedy) on both sides; the answers of the two variants are
checked to be identical. The adapter is a LoRA (all linear layers, the workbench defaults)
with non-zero random weights, so "tuned" really differs from "base". Goal: <= 0.6x peak.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import _common

QUESTIONS = ["What is the first-line treatment for uncomplicated hypertension?",
             "List three red-flag symptoms of headache.",
             "How is community-acquired pneumonia assessed?"]


def make_adapter(model: str, out: Path) -> None:
    """A LoRA adapter for ``model`` with random (non-zero) weights, saved with peft."""
    import torch
    from peft import LoraConfig, get_peft_model

    from engine.config import RunConfig
    from engine.models.loader import load_model
    from engine.train.model import target_modules

    torch.manual_seed(0)
    lm = load_model(model, device="cpu")
    cfg = RunConfig()
    pm = get_peft_model(lm.model, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, init_lora_weights=False,
                                             target_modules=target_modules(cfg, lm.model, lm.kind),
                                             task_type="CAUSAL_LM" if lm.kind == "text" else None))
    with torch.no_grad():  # keep the random update small: answers change, but stay answers
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.mul_(0.3)
    pm.save_pretrained(str(out))


def run_variant(args, variant: str) -> dict:
    import torch

    from engine import infer
    from engine.eval.compare import open_pair
    from engine.models.loader import load_model

    import peft  # noqa: F401 - counted in the runtime floor, like torch and transformers
    import transformers  # noqa: F401

    dev = _common.device(args)
    floor = _common.peak_rss_mb()  # interpreter + libraries, before any weights
    torch.manual_seed(0)
    gen = {"max_new_tokens": args.max_new_tokens}
    answers = {}
    if variant == "workbench":
        pair = open_pair(args.model, adapter=args.adapter)
        for side in ("base", "tuned"):
            with pair.side(side) as lm:
                answers[side] = infer.generate_batch(lm, QUESTIONS[:args.questions], **gen)
    else:
        base = load_model(args.model, device=args.device)
        tuned = load_model(args.model, device=args.device, adapter=args.adapter)
        answers["base"] = infer.generate_batch(base, QUESTIONS[:args.questions], **gen)
        answers["tuned"] = infer.generate_batch(tuned, QUESTIONS[:args.questions], **gen)
    return {"variant": "workbench (one base, adapter toggled)" if variant == "workbench"
            else "baseline (two model copies)", "answers": answers, "runtime_floor_mb": round(floor, 1),
            **_common.peak_mem(dev)}


def main() -> None:
    ap = _common.parser(__doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--adapter", default="", help="a LoRA adapter folder (default: a random one made here)")
    ap.add_argument("--questions", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    args = ap.parse_args()
    if args.quick:
        args.questions, args.max_new_tokens = 1, 4
    if args.variant:
        _common.emit(run_variant(args, args.variant))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if not args.adapter:
            args.adapter = str(Path(tmp) / "adapter")
            make_adapter(args.model, Path(args.adapter))
        argv = _common.passthrough(args, ["workspace", "device", "model", "adapter", "questions", "max_new_tokens"])
        rows = [_common.run_variant(__file__, v, argv) for v in ("baseline", "workbench")]
    base, wb = rows
    same = base["answers"] == wb["answers"]
    differs = wb["answers"]["base"] != wb["answers"]["tuned"]
    key = "peak_gpu_mb" if "peak_gpu_mb" in wb else "peak_rss_mb"
    r = wb[key] / base[key]
    for row in rows:
        row["above_floor_mb"] = round(row["peak_rss_mb"] - row["runtime_floor_mb"], 1)
    r_floor = wb["above_floor_mb"] / base["above_floor_mb"]
    cols = ["variant", "runtime_floor_mb", "peak_rss_mb", "above_floor_mb"] + \
        (["peak_gpu_mb"] if key == "peak_gpu_mb" else [])
    _common.finish(f"Compare memory, {args.model} + LoRA r16 adapter, {args.questions} question(s) per side", rows,
                   cols, _common.ratio_line(
                       r, f"workbench/baseline {key} ({r_floor:.2f}x above the runtime floor; answers {'identical' if same else 'DIFFER'} across variants; "
                       f"base vs tuned {'differ' if differs else 'identical'})", "<= 0.6x", r <= 0.6 and same), args)


if __name__ == "__main__":
    main()
