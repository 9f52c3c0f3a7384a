"""Compare and Evaluate tabs in a real browser, on the embedded Whisper with a real LoRA adapter.

Compare: a row of the shipped dictation set gives base and tuned transcripts with a coloured
diff. Evaluate: the metrics table shows, and one blind review is recorded in the run.
"""

from __future__ import annotations

import json

import pytest
from export_runs import make_run
from pagekit import pick, wait_text

pytestmark = pytest.mark.browser

RUN = "cmp-speech"


@pytest.fixture(scope="module")
def speech_run(app, whisper_dir):
    """A speech run with a non-trivial adapter, evaluated on two rows of the shipped test split."""
    from engine.data.datasets import open_dataset
    from engine.eval.compare import open_pair
    from engine.eval.job import evaluate
    from engine.runs import Run

    ws = app.workspace
    run = Run(ws.runs / RUN) if (ws.runs / RUN).exists() else Run(make_run(ws, whisper_dir, name=RUN, kind="speech"))
    ds = open_dataset("med-dictation", ws)
    pair = open_pair(str(whisper_dir), adapter=run.adapter_dir)
    evaluate(pair, ds.load_split("test")[:2], run.eval_dir, kind="speech", terms=ds.terms(),
             info={"dataset": ds.name, "split": "test", "run": RUN, "model": "whisper-tiny.en"}, max_new_tokens=60)
    return run


def test_compare_and_evaluate_tabs(speech_run, browser_page, goto_app, open_tab, shot):
    page = goto_app(browser_page)
    open_tab(page, "Compare")
    page.locator("#cmp-refresh").click()
    pick(page, "cmp-run", RUN)
    page.locator("#cmp-load-row").click()
    wait_text(page, "#cmp-status", r"Row 0 of med-dictation/test")
    box = page.locator("#cmp-max-new input[type=number]")
    box.fill("40")
    box.press("Enter")
    page.locator("#cmp-go").click()
    wait_text(page, "#cmp-status", r"Transcribed and scored")
    for side in ("#cmp-base-out", "#cmp-tuned-out"):
        text = wait_text(page, side, r"WER \d")
        assert "terms hit" in text
        assert page.locator(f"{side} .mt-diff span").count() > 0
    # the adapter changes the transcript, so the two diffs differ
    assert page.locator("#cmp-base-out .mt-diff").inner_html() != page.locator("#cmp-tuned-out .mt-diff").inner_html()
    shot(page, "compare-tab-dictation")

    open_tab(page, "Evaluate")
    page.locator("#ev-refresh").click()
    pick(page, "ev-runs", RUN)
    page.locator("#ev-show").click()
    table = wait_text(page, "#ev-metrics", r"WER")
    assert "Term recall" in table and RUN in table
    wait_text(page, "#ev-samples", r"\w")

    page.locator("#rv-reviewer textarea, #rv-reviewer input").first.fill("dr browser")
    page.locator("#rv-next").click()
    wait_text(page, "#rv-a", r"\w")
    html_a, html_b = page.locator("#rv-a").inner_html(), page.locator("#rv-b").inner_html()
    assert "base" not in (html_a + html_b).lower() and "tuned" not in (html_a + html_b).lower()
    page.get_by_label("A is better").check()
    page.locator("#rv-submit").click()
    wait_text(page, "#rv-summary", r"1 reviews")
    shot(page, "evaluate-tab-review")
    lines = (speech_run.eval_dir / "reviews.jsonl").read_text().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["reviewer"] == "dr browser" and rec["shown"] == "A" and rec["winner"] in ("base", "tuned")
