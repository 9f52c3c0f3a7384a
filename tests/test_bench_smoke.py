"""Smoke runs of the bench/ scripts in --quick mode: they run end to end as real child
processes and print a table with the ratio as the last line. No timing is asserted (speed
targets live in the scripts' own output and bench/RESULTS.md, never in tests).

The two cheapest scripts always run (~1 min together on 2 busy cores). The heavier ones
(training, the browser and the app start) run only with MEDTUNE_BENCH_SMOKE_ALL=1, so CI
time stays small:  MEDTUNE_BENCH_SMOKE_ALL=1 python -m pytest tests/test_bench_smoke.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RATIO = re.compile(r"^ratio: \d+(\.\d+)?x  \S.*\(goal .+: (met|NOT met)\)$")
ALL = os.environ.get("MEDTUNE_BENCH_SMOKE_ALL") == "1"
heavy = pytest.mark.skipif(not ALL, reason="heavy bench smoke run: set MEDTUNE_BENCH_SMOKE_ALL=1")


def run_bench(script: str, *args: str, workspace: Path | None = None, timeout: float = 600) -> list[str]:
    cmd = [sys.executable, str(REPO / "bench" / script), "--quick", *args]
    if workspace is not None:
        cmd += ["--workspace", str(workspace)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines and RATIO.match(lines[-1]), f"{script}: last line is not a ratio line:\n{proc.stdout[-2000:]}"
    assert any(ln.startswith("| ") for ln in lines[:-1]), f"{script}: no table printed:\n{proc.stdout[-2000:]}"
    return lines


def test_batch_eval_quick(tmp_path):
    lines = run_bench("batch_eval.py", "--kind", "text", "--limit", "2", workspace=tmp_path / "ws")
    row = next(ln for ln in lines if ln.startswith("| text"))
    assert re.search(r"\| [0-2]/2 +\|$", row), row  # identical-outputs column is "k/2"


def test_compare_memory_quick(tmp_path):
    lines = run_bench("compare_memory.py", workspace=tmp_path / "ws")
    assert any("two model copies" in ln for ln in lines) and any("adapter toggled" in ln for ln in lines)
    # correctness (not speed): both ways must give the same answers
    assert "answers identical across variants" in lines[-1], lines[-1]


@pytest.mark.slow
@heavy
@pytest.mark.parametrize("script", ["text_train_throughput.py", "speech_train_throughput.py"])
def test_training_benches_quick(tmp_path, script):
    run_bench(script, workspace=tmp_path / "ws", timeout=900)


@pytest.mark.slow
@heavy
def test_app_cold_start_quick():
    run_bench("app_cold_start.py")


@pytest.mark.browser
@heavy
def test_ui_latency_quick():
    run_bench("ui_latency.py")
