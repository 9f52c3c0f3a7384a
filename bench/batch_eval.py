"""Batch evaluation: batched transcription/generation vs one item at a time.

    python bench/batch_eval.py                  # full: shipped test splits, speech and text
    python bench/batch_eval.py --quick          # CI smoke run: a handful of clips and questions
    python bench/batch_eval.py --kind speech --speech-model openai/whisper-small   # GPU, bigger model

workbench: engine.infer.transcribe_batch / generate_batch, --batch-size items per forward
  pass (what the evaluation job and the Compare tab use).
baseline:  the same functions called once per item (transcribe / answer), the way a
  hand-written evaluation loop usually goes.
Data: the shipped med-dictation test split (speech) and med-qa test split (text), greedy
decoding. Figures: items/s and how many outputs are identical between the two ways (greedy
decoding with padding can differ in a rare last-digit tie; the count shows it).
Goal: >= 3x items/s. With --kind both the ratio line reports the LOWER of the two.
The CPU seconds each way took are shown too (cpu_speedup): on a shared CPU the wall-clock
ratio moves with other load, the CPU-time ratio much less.
"""

from __future__ import annotations

import time

import _common


def _time(fn) -> tuple[list[str], tuple[float, float]]:
    """Run ``fn``; return its outputs and (wall seconds, CPU seconds of this process). On a
    shared CPU the wall time swings with other load; the CPU time is the steadier figure."""
    t0, c0 = time.perf_counter(), _common.cpu_s()
    out = fn()
    return out, (time.perf_counter() - t0, _common.cpu_s() - c0)


def bench_speech(args, ws) -> dict:
    from engine import infer
    from engine.data.datasets import open_dataset
    from engine.data.shipped import ensure_shipped
    from engine.models.loader import load_model

    rows = open_dataset(str(ensure_shipped("med-dictation", ws)), ws).load_split("test")[:args.limit or None]
    audios = [r["audio"] for r in rows]
    lm = load_model(args.speech_model, device=args.device)
    infer.transcribe(lm, audios[0])  # warm-up (first call pays one-off kernel/feature set-up)
    one, t_one = _time(lambda: [infer.transcribe(lm, a) for a in audios])
    batched, t_b = _time(lambda: infer.transcribe_batch(lm, audios, batch_size=args.batch_size))
    return _row("speech", args.speech_model, len(audios), one, t_one, batched, t_b)


def bench_text(args, ws) -> dict:
    from engine import infer
    from engine.data.datasets import open_dataset
    from engine.data.shipped import ensure_shipped
    from engine.models.loader import load_model

    rows = open_dataset(str(ensure_shipped("med-qa", ws)), ws).load_split("test")[:args.limit or None]
    qs = [r["prompt"] for r in rows]
    lm = load_model(args.text_model, device=args.device)
    gen = {"max_new_tokens": args.max_new_tokens}
    infer.answer(lm, qs[0], max_new_tokens=4)  # warm-up
    one, t_one = _time(lambda: [infer.answer(lm, q, **gen) for q in qs])
    batched, t_b = _time(lambda: infer.generate_batch(lm, qs, batch_size=args.batch_size, **gen))
    return _row("text", args.text_model, len(qs), one, t_one, batched, t_b)


def _row(kind, model, n, one, t_one, batched, t_b) -> dict:
    same = sum(a == b for a, b in zip(one, batched))
    (t_one, c_one), (t_b, c_b) = t_one, t_b
    return {"kind": kind, "model": model, "items": n, "one_at_a_time_s": round(t_one, 2),
            "batched_s": round(t_b, 2), "one_items_per_s": round(n / t_one, 3),
            "batched_items_per_s": round(n / t_b, 3), "speedup": round(t_one / t_b, 2),
            "one_cpu_s": round(c_one, 1), "batched_cpu_s": round(c_b, 1),
            "cpu_speedup": round(c_one / c_b, 2) if c_b > 0 else None,
            "identical_outputs": f"{same}/{n}"}


def main() -> None:
    ap = _common.parser(__doc__)
    ap.add_argument("--kind", choices=["speech", "text", "both"], default="both")
    ap.add_argument("--speech-model", default="whisper-tiny.en")
    ap.add_argument("--text-model", default="smollm2-135m-instruct")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--limit", type=int, default=0, help="at most this many test items (0 = the whole split)")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="text answers")
    args = ap.parse_args()
    if args.quick:
        args.limit = args.limit or 4
        args.max_new_tokens = min(args.max_new_tokens, 8)
        args.batch_size = min(args.batch_size, 4)
    import torch

    torch.manual_seed(0)
    ws = _common.workspace(args)
    rows = []
    if args.kind in ("speech", "both"):
        rows.append(bench_speech(args, ws))
    if args.kind in ("text", "both"):
        rows.append(bench_text(args, ws))
    low = min(rows, key=lambda r: r["speedup"])
    all_same = all(r["identical_outputs"].split("/")[0] == r["identical_outputs"].split("/")[1] for r in rows)
    detail = ", ".join(f"{r['kind']} {r['speedup']:.2f}x" for r in rows)
    _common.finish(f"Batch evaluation, batch {args.batch_size}, shipped test splits", rows,
                   ["kind", "model", "items", "one_items_per_s", "batched_items_per_s", "speedup",
                    "one_cpu_s", "batched_cpu_s", "cpu_speedup", "identical_outputs"], _common.ratio_line(
                       low["speedup"], f"batched/one-at-a-time items/s ({detail}; lower shown; outputs "
                       f"{'identical' if all_same else 'NOT all identical'})", ">= 3x", low["speedup"] >= 3), args)


if __name__ == "__main__":
    main()
