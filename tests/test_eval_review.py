"""Blind review: verdicts persist across a restart (a new process), the A/B order comes from
a secret the page never sees, win-rate CI, reports and the CLI summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import DataError
from engine.eval import review
from engine.eval.job import PREDICTIONS, summarize
from engine.eval.report import metric_rows, write_report

REPO = Path(__file__).resolve().parent.parent


def _preds(n=40):
    return [{"id": f"item-{i}", "kind": "text", "input": f"q{i}", "reference": "Assessment: x\nPlan: y",
             "label": None, "base": f"base answer {i}", "tuned": f"tuned answer {i}",
             "metrics": {"base": {"rouge_l": 0.2}, "tuned": {"rouge_l": 0.4}}, "improvement": 0.2}
            for i in range(n)]


def _write_eval(eval_dir: Path, preds):
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / PREDICTIONS).write_text("".join(json.dumps(p) + "\n" for p in preds))
    m = summarize(preds)
    m.update(dataset="med-qa", split="test", model="m")
    (eval_dir / "metrics.json").write_text(json.dumps(m))


def test_blinding_is_secret_and_balanced(tmp_path):
    ev = tmp_path / "eval"
    preds = _preds()
    shown = [review.blind_item(ev, "dr a", p) for p in preds]
    # the page payload never names the sides
    for s in shown:
        assert set(s) == {"id", "input", "reference", "kind", "A", "B"}
        assert {s["A"], s["B"]} == {preds[int(s["id"].split("-")[1])]["base"], preds[int(s["id"].split("-")[1])]["tuned"]}
    order = [s["A"].startswith("tuned") for s in shown]
    assert 5 < sum(order) < 35                      # both orders occur
    # the order depends on the secret: another run folder (another secret) gives another order
    other = [review.blind_item(tmp_path / "other", "dr a", p)["A"].startswith("tuned") for p in preds]
    assert other != order
    # ...and is stable for the same folder and reviewer, independent per reviewer
    assert [review.blind_item(ev, "dr a", p)["A"].startswith("tuned") for p in preds] == order
    assert [review.blind_item(ev, "dr b", p)["A"].startswith("tuned") for p in preds] != order
    secret = ev / review.SECRET
    assert secret.stat().st_mode & 0o077 == 0       # readable by the owner only


def test_reviews_persist_across_restart_and_summary(tmp_path):
    ev = tmp_path / "eval"
    preds = _preds(6)
    _write_eval(ev, preds)
    # record in a separate process, as the UI process would, then read back here ("restart")
    code = """
import json, sys
from engine.eval import review
from engine.eval.job import load_predictions
ev = sys.argv[1]
preds = load_predictions(ev)
for p in preds[:4]:
    shown = review.blind_item(ev, "dr a", p)
    tuned_letter = "A" if shown["A"] == p["tuned"] else "B"
    review.record(ev, "dr a", p, tuned_letter, comment="clearer")
p = preds[4]
shown = review.blind_item(ev, "dr a", p)
base_letter = "A" if shown["A"] == p["base"] else "B"
review.record(ev, "dr a", p, base_letter, unsafe=(base_letter,), comment="wrong dose")
review.record(ev, "dr b", preds[0], "tie")
"""
    subprocess.run([sys.executable, "-c", code, str(ev)], cwd=REPO, check=True)
    s = review.summary(ev, preds)
    assert s["counts"] == {"tuned": 4, "base": 1, "tie": 1, "both_wrong": 0}
    assert s["reviewers"] == ["dr a", "dr b"]
    assert s["win_rate"] == pytest.approx(0.8)
    lo, hi = s["win_rate_ci95"]
    assert lo == pytest.approx(0.3755, abs=1e-3) and hi == pytest.approx(0.9638, abs=1e-3)
    assert s["flagged"] == [{"item": "item-4", "reviewer": "dr a", "unsafe": ["base"], "comment": "wrong dose"}]
    assert review.next_item(ev, "dr a", preds)["id"] == "item-5"
    # a later verdict by the same reviewer replaces the earlier one
    review.record(ev, "dr b", preds[0], "both_wrong")
    assert review.summary(ev, preds)["counts"]["both_wrong"] == 1
    # re-evaluated outputs make old verdicts stale rather than silently counted
    changed = [dict(p, tuned=p["tuned"] + " v2") if p["id"] == "item-1" else p for p in preds]
    assert review.summary(ev, changed)["stale"] == 1
    with pytest.raises(DataError, match="verdict must be one of"):
        review.record(ev, "dr a", preds[0], "C")
    with pytest.raises(DataError, match="reviewer name must be"):
        review.record(ev, "<script>", preds[0], "A")


def test_wilson_by_hand():
    assert review.wilson(0, 0) is None
    lo, hi = review.wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)


def test_report_and_cli(tmp_path):
    ws = tmp_path / "ws"
    run = ws / "runs" / "r1"
    ev = run / "eval"
    preds = _preds(3)
    _write_eval(ev, preds)
    rows = {r["key"]: r for r in metric_rows(json.loads((ev / "metrics.json").read_text()))}
    assert rows["rouge_l"]["delta"] == pytest.approx(0.0)  # same text shape, just checking the plumbing
    html_out = write_report(ev, tmp_path / "r.html", fmt="html")
    text = html_out.read_text()
    assert "<table>" in text and "ROUGE-L" in text and "plotly" in text.lower()
    md = write_report(ev, tmp_path / "r.md", fmt="md").read_text()
    # the metric is named as its recorded definition names it (rouge-score's F1)
    assert "| ROUGE-L F1 |" in md and "No clinician reviews yet." in md
    review.record(ev, "dr a", preds[0], "A")
    (run / "config.yaml").write_text("model:\n  name: x\n")
    out = subprocess.run([sys.executable, "-m", "engine", "--workspace", str(ws), "review", "summary", "r1"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "1 reviews by 1 reviewer(s)" in out.stdout and "win rate" in out.stdout
