"""`medtune eval` / the evaluate background job end to end, on a tiny random Llama + real adapter
(fast: ~100k parameters), in real child processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from export_runs import make_run, tiny_text_base  # noqa: F401 - fixture

from engine.runs import Run

REPO = Path(__file__).resolve().parent.parent
ROWS = [{"id": f"p{i}", "prompt": f"Does drug {i} work?", "response": "Yes. It reduced events.",
         "meta": {"label": "yes" if i % 2 else "no"}} for i in range(5)]


def _dataset(ws):
    from engine.data.folder import write_dataset

    folder = ws.datasets / "tiny-pqa"
    write_dataset(folder, {"test": ROWS}, name="tiny-pqa", kind="text", seed=0, source="test")
    return folder


def _cli(ws, *args):
    return subprocess.run([sys.executable, "-m", "engine", "--workspace", str(ws.root), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def test_background_job_and_cli(workspace, tiny_text_base):  # noqa: F811
    from engine import jobs

    folder = _dataset(workspace)
    run = Run(make_run(workspace, tiny_text_base, name="tiny-eval", kind="text"))
    jobs.submit(run, "evaluate", {"dataset": str(folder), "split": "test", "max_new_tokens": 4, "batch_size": 2})
    st = jobs.wait(run, "evaluate", timeout=300)
    assert st["state"] == "completed", (st, run.log_tail())
    preds = [json.loads(x) for x in (run.eval_dir / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in preds] == [r["id"] for r in ROWS]
    m = json.loads((run.eval_dir / "metrics.json").read_text())
    assert m["n"] == 5 and "accuracy" in m["base"] and "macro_f1" in m["tuned"]
    # each score's definition travels with it (library, version, normaliser; BLEU's signature)
    from engine.eval.definitions import definitions

    assert m["definitions"] == definitions("text")
    assert m["definitions"]["bleu"]["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")

    out = _cli(workspace, "eval", run.id, "--dataset", str(folder), "--limit", "2", "--max-new-tokens", "4")
    assert out.returncode == 0, out.stderr
    assert "rouge_l" in out.stdout and "delta" in out.stdout
    assert "BLEU: sacrebleu" in out.stdout and "signature: nrefs:1|" in out.stdout
    assert len((run.eval_dir / "predictions.jsonl").read_text().splitlines()) == 2

    out = _cli(workspace, "eval", "report", run.id, "--format", "md")
    assert out.returncode == 0, out.stderr
    assert "| Accuracy |" in Path(out.stdout.strip()).read_text()

    # bad input: a clear message naming the problem, exit code 2
    out = _cli(workspace, "eval", run.id, "--dataset", str(folder), "--split", "nope")
    assert out.returncode == 2 and "no split 'nope'" in out.stderr
