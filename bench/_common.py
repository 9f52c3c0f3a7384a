"""Shared plumbing for the bench/ scripts: arguments, child-process variants, peaks, tables.

Every script measures a workbench way of doing something against the common baseline on
the same machine, model and data, and prints a small table with the ratio as its LAST line:

    ratio: 4.37x  workbench/baseline real tokens/s  (goal >= 4x: met)

Each variant runs in its own child process (``--variant NAME``) so its peak RSS / peak GPU
memory is its own, not the high-water mark of whatever ran before it in the same process.
The child prints one ``RESULT {json}`` line that the parent collects.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

RESULT = "RESULT "


def parser(doc: str) -> argparse.ArgumentParser:
    """The options every bench script shares."""
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes for a CI smoke run (< 1 min on 2 cores); figures are not meaningful")
    ap.add_argument("--workspace", default=os.environ.get("MEDTUNE_BENCH_WORKSPACE", ""),
                    help="workspace holding the shipped datasets (default: a persistent bench workspace "
                         "in the model cache, so datasets are built once)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--variant", default="", help=argparse.SUPPRESS)  # internal: run one variant
    ap.add_argument("--json", default="", help="also write the figures to this JSON file")
    return ap


def workspace(args: argparse.Namespace):
    """The bench workspace (persistent by default: the shipped speech set takes ~25 s to build)."""
    from engine.workspace import Workspace, model_cache_dir

    root = Path(args.workspace) if args.workspace else model_cache_dir().parent / "bench-workspace"
    return Workspace.open(root)


def device(args: argparse.Namespace) -> str:
    import torch

    if args.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return args.device


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """User + system CPU seconds of this process so far. On a shared CPU wall time swings
    with other load; CPU time counts the work done, so it is the steadier figure there."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_mem(dev: str) -> dict[str, float]:
    out = {"peak_rss_mb": round(peak_rss_mb(), 1)}
    if dev == "cuda":
        import torch

        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def emit(result: dict[str, Any]) -> None:
    """Child side: hand the figures to the parent."""
    print(RESULT + json.dumps(result), flush=True)


def run_variant(script: str, variant: str, argv: Sequence[str], timeout: float = 3600) -> dict[str, Any]:
    """Parent side: run ``script --variant variant argv...`` in a fresh process, return its RESULT."""
    cmd = [sys.executable, script, "--variant", variant, *argv]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"variant {variant!r} failed (exit {proc.returncode})")
    res = json.loads(lines[-1][len(RESULT):])
    res.setdefault("process_s", round(time.monotonic() - t0, 1))
    return res


def passthrough(args: argparse.Namespace, names: Sequence[str]) -> list[str]:
    """Re-serialise the named options for a child process."""
    out: list[str] = []
    for name in names:
        val = getattr(args, name)
        flag = "--" + name.replace("_", "-")
        if isinstance(val, bool):
            out += [flag] if val else []
        elif val not in (None, ""):
            out += [flag, str(val)]
    return out


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__}"


def table(rows: list[dict[str, Any]], cols: Sequence[str]) -> str:
    """A plain fixed-width table (markdown-friendly pipes)."""
    cells = [[str(c) for c in cols]] + [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def ratio_line(value: float, what: str, goal: str, met: bool) -> str:
    """The last line of every script: ``ratio: <x>x  <what>  (goal <goal>: met|not met)``."""
    return f"ratio: {value:.2f}x  {what}  (goal {goal}: {'met' if met else 'NOT met'})"


def finish(title: str, rows: list[dict], cols: Sequence[str], ratio: str, args: argparse.Namespace,
           extra: dict | None = None) -> None:
    print(f"\n{title}  [{'quick' if args.quick else 'full'} mode; {machine()}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}]")
    print(table(rows, cols))
    if args.json:
        Path(args.json).write_text(json.dumps({"title": title, "rows": rows, "ratio": ratio,
                                               "quick": args.quick, **(extra or {})}, indent=1))
    print(ratio, flush=True)
