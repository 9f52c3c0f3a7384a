"""``medtune eval`` and ``medtune review``: base vs tuned on a dataset split, review summaries.

    medtune eval RUN_OR_MODEL [--dataset med-dictation] [--split test] [--limit N] [--background]
                 [--normaliser whisper|medtune] [--no-rouge-stemmer]
    medtune eval report RUN [--format md|html] [--out FILE]
    medtune review summary RUN
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from engine import jobs
from engine.cli.common import workspace
from engine.errors import MedtuneError
from engine.eval.compare import open_pair
from engine.eval.definitions import describe
from engine.eval.job import evaluate_dataset, load_predictions
from engine.eval.job import run as run_job
from engine.eval.metrics import WER_NORMALISER
from engine.eval.report import write_report
from engine.eval.review import summary
from engine.progress import tqdm_progress
from engine.runs import JobContext, get_run
from engine.text import NORMALISERS


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``eval`` and ``review`` to the `medtune` parser."""
    p = sub.add_parser("eval", help="evaluate a run (base vs tuned) or a base model on a dataset split",
                       description="Evaluate RUN (its base model with and without the adapter) or a "
                                   "model name/path alone on a dataset split. Results go to "
                                   "runs/<run>/eval/ (or evals/<model>-<dataset>-<split>/ for a model).")
    p.add_argument("target", metavar="RUN_OR_MODEL", help="a run id, or a model name/path ('report' to write a report)")
    p.add_argument("extra", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--dataset", help="shipped name or dataset folder (default: the run's dataset)")
    p.add_argument("--split", default=None, help="split to evaluate (default: the run's test split, else 'test')")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--background", action="store_true", help="run as a background job on the run's queue")
    p.add_argument("--normaliser", choices=tuple(NORMALISERS), default=WER_NORMALISER,
                   help="text normaliser before speech WER/CER: 'whisper' (Whisper's English normaliser, as "
                        "published WER is; default) or 'medtune' (the workbench's own); term recall always uses "
                        "'medtune'")
    p.add_argument("--no-rouge-stemmer", dest="rouge_stemmer", action="store_false",
                   help="ROUGE without rouge-score's Porter stemmer (on by default)")
    p.add_argument("--format", choices=("md", "html"), default="html", help="report format (eval report)")
    p.add_argument("--out", help="report file (eval report; default: runs/<run>/eval/report.<fmt>)")
    p.set_defaults(func=cmd_eval)

    r = sub.add_parser("review", help="blind clinician reviews of a run")
    rs = r.add_subparsers(dest="review_cmd", metavar="ACTION")
    rs.required = True
    s = rs.add_parser("summary", help="win rate (tuned vs base) with a 95%% CI and flagged items")
    s.add_argument("run", metavar="RUN")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=cmd_review_summary)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80] or "model"


def _fmt(v) -> str:
    return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def print_metrics(m: dict) -> None:
    sides = m.get("sides", [])
    keys = [k for k, v in m.get(sides[0], {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)] \
        if sides else []
    print(f"{m.get('dataset', '?')}/{m.get('split', '?')}: {m.get('n')} examples")
    print(f"{'metric':<16}" + "".join(f"{s:>12}" for s in sides) + ("       delta" if "delta" in m else ""))
    for k in keys:
        row = f"{k:<16}" + "".join(f"{_fmt(m[s].get(k)):>12}" for s in sides)
        if "delta" in m:
            row += f"{_fmt(m['delta'].get(k)):>12}"
        print(row)
    for line in describe(m.get("definitions"), keys):  # what each number is (library, version, normaliser)
        print(f"  {line}")


def cmd_eval(args: argparse.Namespace) -> int:
    ws = workspace(args)
    if args.target == "report":
        if not args.extra:
            raise MedtuneError("usage: medtune eval report RUN [--format md|html] [--out FILE]")
        run = get_run(ws, args.extra)
        out = ws.resolve(args.out, allow_assets=False) if args.out else run.eval_dir / f"report.{args.format}"
        write_report(run.eval_dir, out, fmt=args.format, title=f"Evaluation of {run.id}")
        print(out)
        return 0
    run = None
    if (ws.runs / args.target / "config.yaml").is_file():
        run = get_run(ws, args.target)
    params = {"dataset": args.dataset, "split": args.split, "limit": args.limit,
              "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
              "normaliser": args.normaliser, "rouge_stemmer": args.rouge_stemmer}
    if run is not None:
        if args.background:
            jobs.submit(run, "evaluate", params)
            print(f"queued evaluation of {run.id}; results in {run.eval_dir}")
            return 0
        run_job(JobContext(run, params, tqdm_progress("eval")))
        out = run.eval_dir
    else:
        if args.background:
            raise MedtuneError("--background needs a run; a base model alone is evaluated in the foreground")
        if not args.dataset:
            raise MedtuneError("--dataset is required when evaluating a model without a run")
        split = args.split or "test"
        pair = open_pair(args.target)
        out = ws.root / "evals" / _slug(f"{Path(args.target).name}-{Path(args.dataset).name}-{split}")
        evaluate_dataset(pair, args.dataset, split, out, ws, limit=args.limit, batch_size=args.batch_size,
                         max_new_tokens=args.max_new_tokens or 128, normaliser=args.normaliser,
                         rouge_stemmer=args.rouge_stemmer, info={"model": args.target},
                         progress=tqdm_progress("eval"))
    m = json.loads((out / "metrics.json").read_text())
    print_metrics(m)
    print(f"predictions: {out / 'predictions.jsonl'}")
    return 0


def cmd_review_summary(args: argparse.Namespace) -> int:
    run = get_run(workspace(args), args.run)
    s = summary(run.eval_dir, load_predictions(run.eval_dir) or None)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    c = s["counts"]
    print(f"{s['reviews']} reviews by {len(s['reviewers'])} reviewer(s): tuned {c['tuned']}, base {c['base']}, "
          f"tie {c['tie']}, both wrong {c['both_wrong']}")
    if s["win_rate"] is None:
        print("tuned win rate: - (no decisive verdicts yet)")
    else:
        lo, hi = s["win_rate_ci95"]
        print(f"tuned win rate: {s['win_rate']:.1%} (95% CI {lo:.1%}-{hi:.1%}, Wilson)")
    for f in s["flagged"]:
        print(f"UNSAFE {f['item']}: {', '.join(f['unsafe'])} (by {f['reviewer']}) {f['comment']}")
    if s["stale"]:
        print(f"{s['stale']} review(s) refer to outputs replaced by a later evaluation and are not counted")
    return 0
