"""Compare memory: one base model with the adapter toggled vs two model copies.

    python bench/compare_memory.py            # full: SmolLM2-135M + a LoRA r=16 adapter, 3 questions
    python bench/compare_memory.py --quick    # CI smoke run
    python bench/compare_memory.py --shape smollm2-1.7b   # realistic size offline: random weights, real architecture
    python bench/compare_memory.py --model meta-llama/Llama-3.1-8B   # GPU, bigger model

workbench: engine.eval.compare.open_pair(model, adapter=...) - the adapter is attached to
  ONE copy of the base weights; the base side runs inside ``disable_adapter()``.
baseline:  what a side-by-side script usually does - load the base model, and load a second
  copy with the adapter attached.
Each variant runs in its own child process (clean peak RSS; peak GPU memory on a GPU) and
answers the same questions (greedy) on both sides; the answers of the two variants are
checked to be identical. The adapter is a LoRA (all linear layers, the workbench defaults)
with non-zero random weights, so "tuned" really differs from "base". Goal: <= 0.6x peak.

--shape NAME|CONFIG: measure at a bigger size without downloading anything. A model with
  the REAL ARCHITECTURE of a bigger checkpoint (preset smollm2-360m / smollm2-1.7b, or a
  config.json / a folder holding one) and RANDOM WEIGHTS is built once, in a child process,
  into a temp folder (safetensors, --checkpoint-dtype, bf16 by default as the Hub ships
  SmolLM2), with the embedded SmolLM2 tokenizer; both variants then load that folder through
  the same code path as any local model (load_model / open_pair). Only the memory figures
  mean something: the answers are noise (still checked identical across variants).
Besides the peak RSS (the goal's figure) each variant reports, at its end, its anonymous
and file-backed resident memory and its PSS: a float32 checkpoint loaded as float32 on the
CPU stays memory-mapped, and two copies of it map the SAME page-cache pages, which RSS
counts twice and PSS once (see bench/RESULTS.md, section 4).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import _common

QUESTIONS = ["What is the first-line treatment for uncomplicated hypertension?",
             "List three red-flag symptoms of headache.",
             "How is community-acquired pneumonia assessed?"]

#: The tokenizer (and the config every shape starts from) come from the embedded model.
TOKENIZER_FROM = "smollm2-135m-instruct"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json")
#: Real architectures (LlamaConfig fields of the published checkpoints); vocab 49152 and
#: tied embeddings for all three sizes, so the embedded SmolLM2 tokenizer fits every one.
SHAPES = {
    "smollm2-360m": {"hidden_size": 960, "num_hidden_layers": 32, "intermediate_size": 2560,
                     "num_attention_heads": 15, "num_key_value_heads": 5, "head_dim": 64,
                     "rope_theta": 100000.0},
    "smollm2-1.7b": {"hidden_size": 2048, "num_hidden_layers": 24, "intermediate_size": 8192,
                     "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 64,
                     "rope_theta": 130000.0},
    # a few MB, for smoke tests of the --shape plumbing only
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16},
}
RANDOM_MARKER = "medtune-bench-random.json"
RANDOM_LABEL = "random weights, real architecture"


# ----------------------------------------------------------------------------- preparation
def shape_config(shape: str) -> dict:
    """The config dict of ``shape``: a preset name, or a config.json (or a folder holding one)
    whose fields override the embedded SmolLM2 config."""
    from engine.errors import ModelError
    from engine.models.embedded import ensure_embedded

    base = json.loads((ensure_embedded(TOKENIZER_FROM) / "config.json").read_text())
    base.pop("_model_name_or_path", None)
    if shape in SHAPES:
        over = dict(SHAPES[shape])
    else:
        p = Path(shape).expanduser()
        p = p / "config.json" if p.is_dir() else p
        if not p.is_file():
            raise ModelError(f"--shape {shape!r}: not a preset ({', '.join(SHAPES)}) and no config.json there.")
        try:
            over = json.loads(p.read_text())
        except ValueError as e:
            raise ModelError(f"{p}: not valid JSON ({e}).") from e
        if not isinstance(over, dict):
            raise ModelError(f"{p}: a config.json must hold a JSON object.")
        for k in ("_model_name_or_path", "_name_or_path", "architectures", "torch_dtype", "dtype"):
            over.pop(k, None)
        if int(over.get("vocab_size", base["vocab_size"])) < base["vocab_size"]:
            raise ModelError(f"{p}: field vocab_size={over['vocab_size']} is smaller than the embedded SmolLM2 "
                             f"tokenizer's {base['vocab_size']} tokens, which this benchmark uses.")
    if any(k in over for k in ("rope_theta", "rope_scaling", "rope_parameters")):
        base.pop("rope_parameters", None)  # the shape's own RoPE fields (transformers normalises them)
    return {**base, **over}


def _meminfo_mb(field: str) -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("inf")


def build_random_model(shape: str, out: Path, checkpoint_dtype: str = "bfloat16", check_memory: bool = True,
                       device: str = "cpu"):
    """Build the randomly initialised ``shape`` model, save it to ``out`` (safetensors + the
    embedded tokenizer + a marker saying the weights are random). Returns (model, params)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.errors import ModelError
    from engine.models.embedded import ensure_embedded

    cfg_dict = shape_config(shape)
    model_type = cfg_dict.pop("model_type", "llama")
    config = AutoConfig.for_model(model_type, **cfg_dict)
    with torch.device("meta"):
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    if check_memory:  # the baseline holds two copies: refuse early, not by running out of memory
        if device == "cuda":  # two copies in the loader's GPU dtype (bf16/fp16: 2 bytes)
            need, avail, where = 2 * params * 2 / 2**20 + 1024, torch.cuda.mem_get_info()[0] / 2**20, "GPU memory"
        else:  # the loader picks float32 on a CPU
            need, avail, where = 2 * params * 4 / 2**20 + 1536, _meminfo_mb("MemAvailable"), "RAM"
        if need > avail:
            raise ModelError(f"--shape {shape}: {params / 1e9:.2f}B parameters; the two-copy baseline needs about "
                             f"{need / 1024:.1f} GB of {where}, {avail / 1024:.1f} GB is available now.",
                             hint="Pick a smaller shape (e.g. smollm2-360m), free memory, or pass "
                                  "--no-memory-check on a machine you have to yourself.")
    free = shutil.disk_usage(out.parent).free
    need_disk = params * torch.finfo(getattr(torch, checkpoint_dtype)).bits // 8
    if need_disk * 1.1 > free:
        raise ModelError(f"{out.parent}: {free / 2**30:.1f} GB free, the checkpoint needs {need_disk / 2**30:.1f} GB.")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, checkpoint_dtype))
    model.save_pretrained(str(out))  # safetensors
    src = ensure_embedded(TOKENIZER_FROM)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    (out / RANDOM_MARKER).write_text(json.dumps(
        {"shape": shape, "params": params, "checkpoint_dtype": checkpoint_dtype, "weights": RANDOM_LABEL,
         "note": "Randomly initialised, for memory measurements only: its answers are noise."}, indent=1))
    return model, params


def make_adapter(model: str, out: Path, built=None) -> None:
    """A LoRA adapter for ``model`` with random (non-zero) weights, saved with peft. ``built``:
    the model object already in memory (a --shape model), else it is loaded."""
    import torch
    from peft import LoraConfig, get_peft_model

    from engine.config import RunConfig
    from engine.train.model import target_modules

    torch.manual_seed(0)
    if built is None:
        from engine.models.loader import load_model

        lm = load_model(model, device="cpu")
        built, kind = lm.model, lm.kind
    else:
        kind = "text"
    cfg = RunConfig()
    pm = get_peft_model(built, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, init_lora_weights=False,
                                          target_modules=target_modules(cfg, built, kind),
                                          task_type="CAUSAL_LM" if kind == "text" else None))
    with torch.no_grad():  # keep the random update small: answers change, but stay answers
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.mul_(0.3)
    pm.save_pretrained(str(out))


def prepare(args) -> dict:
    """Child process: build the --shape model (if any) and the random adapter (if none given),
    so the parent never holds weights while the measured variants run."""
    t0 = time.monotonic()
    out = Path(args.prepare_dir)
    res: dict = {"model": args.model, "adapter": args.adapter}
    built = None
    if args.shape:
        res["model"] = str(out / "model")
        built, res["params"] = build_random_model(args.shape, out / "model", args.checkpoint_dtype,
                                                  not args.no_memory_check, _common.device(args))
        res["checkpoint_mb"] = round(sum(f.stat().st_size for f in (out / "model").glob("*.safetensors")) / 2**20)
    if not args.adapter:
        res["adapter"] = str(out / "adapter")
        make_adapter(res["model"], out / "adapter", built)
    res["prepare_s"] = round(time.monotonic() - t0, 1)
    return res


# ----------------------------------------------------------------------------- measuring
def resident_now() -> dict[str, float]:
    """Resident memory of this process now (Linux): anonymous, file-backed, and PSS (shared
    pages divided among the mappings that share them)."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, val = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                out[{"RssAnon": "rss_anon_mb", "RssFile": "rss_file_mb"}[key]] = round(int(val.split()[0]) / 1024, 1)
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss_mb"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def run_variant(args, variant: str) -> dict:
    import peft  # noqa: F401 - counted in the runtime floor, like torch and transformers
    import torch
    import transformers  # noqa: F401

    from engine import infer
    from engine.eval.compare import open_pair
    from engine.models.loader import load_model

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
            **_common.peak_mem(dev), **resident_now()}


def main() -> None:
    ap = _common.parser(__doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--shape", default="", metavar="PRESET|CONFIG",
                    help=f"measure a model with this real architecture and RANDOM weights, built locally "
                         f"(presets: {', '.join(SHAPES)}; or a config.json / folder); replaces --model")
    ap.add_argument("--checkpoint-dtype", default="bfloat16", choices=["bfloat16", "float32"],
                    help="dtype of the --shape checkpoint on disk (the loader still picks float32 on a CPU)")
    ap.add_argument("--no-memory-check", action="store_true",
                    help="--shape: skip the check that the two-copy baseline fits in the available RAM "
                         "(GPU memory on a GPU)")
    ap.add_argument("--adapter", default="", help="a LoRA adapter folder (default: a random one made here)")
    ap.add_argument("--questions", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--prepare-dir", default="", help=argparse.SUPPRESS)  # internal: where "prepare" writes
    args = ap.parse_args()
    if args.quick:
        args.questions, args.max_new_tokens = 1, 4
    if args.variant == "prepare":
        _common.emit(prepare(args))
        return
    if args.variant:
        _common.emit(run_variant(args, args.variant))
        return
    label = args.model
    with tempfile.TemporaryDirectory(prefix="medtune-bench-compare-") as tmp:
        prep = {}
        if args.shape or not args.adapter:
            prep = _common.run_variant(__file__, "prepare", _common.passthrough(
                args, ["workspace", "device", "model", "adapter", "shape", "checkpoint_dtype", "no_memory_check"])
                + ["--prepare-dir", tmp])
            args.model, args.adapter = prep["model"], prep["adapter"]
        if args.shape:
            n = prep["params"]
            label = (f"{args.shape} shape ({f'{n / 1e9:.2f}B' if n >= 1e9 else f'{n / 1e6:.1f}M'} params, {RANDOM_LABEL}; "
                     f"{args.checkpoint_dtype} checkpoint {prep['checkpoint_mb']} MB)")
        argv = _common.passthrough(args, ["workspace", "device", "model", "adapter", "questions", "max_new_tokens"])
        rows = [_common.run_variant(__file__, v, argv) for v in ("baseline", "workbench")]
    base, wb = rows
    same = base["answers"] == wb["answers"]
    differs = wb["answers"]["base"] != wb["answers"]["tuned"]
    key = "peak_gpu_mb" if "peak_gpu_mb" in wb else "peak_rss_mb"
    r = wb[key] / base[key]
    for row in rows:
        row["above_floor_mb"] = round(row["peak_rss_mb"] - row["runtime_floor_mb"], 1)
        row["weights"] = RANDOM_LABEL if args.shape else "trained"
    r_floor = wb["above_floor_mb"] / base["above_floor_mb"]
    pss = f"; PSS at the end {wb['pss_mb'] / base['pss_mb']:.2f}x" if base.get("pss_mb") and wb.get("pss_mb") else ""
    cols = ["variant", "weights", "runtime_floor_mb", "peak_rss_mb", "above_floor_mb"] + \
        (["peak_gpu_mb"] if key == "peak_gpu_mb" else []) + \
        [c for c in ("rss_anon_mb", "rss_file_mb", "pss_mb") if c in wb]
    _common.finish(f"Compare memory, {label} + LoRA r16 adapter, {args.questions} question(s) per side", rows,
                   cols, _common.ratio_line(
                       r, f"workbench/baseline {key} ({r_floor:.2f}x above the runtime floor{pss}; answers "
                       f"{'identical' if same else 'DIFFER'} across variants; "
                       f"base vs tuned {'differ' if differs else 'identical'})", "<= 0.6x", r <= 0.6 and same), args,
                   extra={"shape": args.shape or None, "weights": RANDOM_LABEL if args.shape else "trained",
                          "prepare": {k: v for k, v in prep.items() if k not in ("model", "adapter")}})


if __name__ == "__main__":
    main()
