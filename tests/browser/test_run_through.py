"""Issue #8's browser run-through: what a new user does, end to end, in real Chromium.

Open the app; Data: load the shipped dictation set and play a clip; Train: pick the Whisper
recipe, make it small, launch, watch the loss chart gain points, stop (graceful: a checkpoint)
and resume, reload the page while the resumed run is going and see it re-attach and keep
updating, let it finish; Compare: base vs tuned on a test clip (both transcripts, word diff);
Evaluate: a tiny batch evaluation, then one blind review saved in ``eval/reviews.jsonl``;
Export: the merged model.

A tiny run's steps take ~0.3 s, faster than the page polls, so the checks that need the run
*running* (the chart growing, the stop landing mid-run, the reload re-attaching) hold the real
job still (SIGSTOP, ``pagekit.JobPacer``) right after a chosen step and release it after: the
same checks pass on a fast box and a slow one, with no race against the step time.

Every step asserts what the page shows (and, where the UI promises a file, the file), and
saves ``.test-artifacts/runthrough-NN-<what>.png``. The run is the real recipe shrunk through
the form (FORM below): 8 training clips and 2 eval clips (so the encoder cache is 10 clips),
24 steps at batch 2, a metrics line per step, eval (2 clips for WER) and a checkpoint every 8
steps. The batch evaluation (1 test clip) runs as a background job while the Compare tab is
used, as a user would. Timings per step are printed (``-s``) as ``run-through timings``.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from pagekit import JobPacer, fill, pick, points, wait_points_above, wait_text

pytestmark = pytest.mark.browser

RECIPE = "whisper-tiny-med-dictation.yaml"
RUN_NAME = "runthrough"
MAX_STEPS = 24
#: The form values that shrink the recipe (everything else stays as the recipe has it).
FORM = {
    "train-data-max_train_samples": "8", "train-data-max_eval_samples": "2",
    "train-train-max_steps": str(MAX_STEPS), "train-train-batch_size": "2",
    "train-train-logging_steps": "1", "train-train-eval_steps": "8", "train-train-save_steps": "8",
    "train-eval-wer_samples": "2", "train-eval-max_new_tokens": "32",
}


# ---- small page helpers (the same selectors as the per-tab browser tests) ---------------------
def play_clip(page, root: str, tries: int = 4) -> None:
    """Press Play in the Gradio audio player under ``root`` until playback starts (the control
    turns into Pause or the media element advances). A press that lands while the player is
    still decoding the clip is ignored by the player, so a busy box may need a second press."""
    play = page.locator(f"{root} button[aria-label='Play']").first
    play.wait_for()
    for attempt in range(tries):
        play.click()
        try:
            page.wait_for_function(
                """(root) => { const el = document.querySelector(root);
                       const pause = el && el.querySelector("button[aria-label='Pause'], button[aria-label='pause']");
                       const a = el && el.querySelector('audio');
                       return !!pause || (a && a.currentTime > 0); }""", arg=root, timeout=10_000)
            return
        except Exception:  # noqa: BLE001 - not started yet: press again, fail after the last try
            if attempt == tries - 1:
                raise


def train_state(page) -> str:
    return page.evaluate("() => document.querySelector('#train-progress-inner')?.dataset.state || ''")


def chart_points(page) -> int:
    """Points plotted in the loss chart's train-loss trace (read from the Plotly figure itself)."""
    return page.evaluate(
        """() => { const el = document.querySelector('#train-chart .js-plotly-plot');
                   if (!el || !el.data) return 0;
                   const t = el.data.find(d => /train loss/.test(d.name || ''));
                   return t && t.x ? t.x.length : 0; }""")


def wait_chart_points(page, n: int, timeout_ms: int = 30_000) -> int:
    """Wait until the Plotly chart itself plots ``n`` train-loss points (it renders after the
    progress line that the counter is in); the count."""
    page.wait_for_function(
        """(n) => { const el = document.querySelector('#train-chart .js-plotly-plot');
                    const t = el && el.data && el.data.find(d => /train loss/.test(d.name || ''));
                    return !!t && t.x && t.x.length === n; }""", arg=n, timeout=timeout_ms)
    return chart_points(page)


def wait_state(page, states: str, timeout_ms: int = 180_000) -> str:
    page.wait_for_function(
        """(pat) => new RegExp('^(' + pat + ')$').test(
                document.querySelector('#train-progress-inner')?.dataset.state || '')""",
        arg=states, timeout=timeout_ms)
    return train_state(page)


# ---- the test ------------------------------------------------------------------------------------
def test_new_user_run_through(app, browser_page, goto_app, open_tab, shot):
    ws = app.workspace
    t0 = time.monotonic()
    times: dict[str, float] = {}
    pacer = JobPacer()  # holds the training job still at chosen steps (see step 4)

    def lap(name: str) -> None:
        times[name] = round(time.monotonic() - t0, 1)

    try:
        _run_through(app, browser_page, goto_app, open_tab, shot, lap, pacer)
    finally:
        print("run-through timings (s since start): " + json.dumps(times))
        pacer.release()  # a job left held by a failed check
        # jobs outlive the app by design: never leave one running after the test
        from engine import jobs
        from engine.runs import list_runs

        for run in list_runs(ws):
            for kind in ("train", "evaluate", "export"):
                if run.status(kind).get("state") in ("queued", "running"):
                    jobs.stop(run, force=True, kind=kind)


def _run_through(app, page, goto_app, open_tab, shot, lap, pacer):
    from playwright.sync_api import expect

    from engine.runs import get_run

    # 1. open the app -----------------------------------------------------------------------------
    goto_app(page)
    assert page.title() == "MedTune Workbench"
    shot(page, "runthrough-01-open")
    lap("open")

    # 2. Data: load the shipped dictation set (audio synthesized on first use), play a clip -------
    open_tab(page, "Data")
    pick(page, "data-dataset", "med-dictation")
    page.locator("#data-load").click()
    msg = wait_text(page, "#data-status", r"Loaded|error", 300_000)
    assert re.search(r"Loaded \d+ examples \(speech\) from med-dictation", msg), msg
    page.wait_for_function("() => document.querySelectorAll('#data-table .virtual-row').length >= 5")
    page.locator("#data-row input").fill("1")
    page.locator("#data-show-row").click()
    wait_text(page, "#data-status", r"Row 1:")
    page.locator("#data-wave .js-plotly-plot").first.wait_for()
    play_clip(page, "#data-audio")
    shot(page, "runthrough-02-data-playing")
    lap("data")

    # 3. Train: the Whisper recipe, shrunk in the form ------------------------------------------------
    open_tab(page, "Train")
    pick(page, "train-recipe", RECIPE)
    # the recipe fills the form: wait for it before editing fields (or it would overwrite them)
    page.wait_for_function(
        """() => { const m = document.querySelector('#train-model-name input');
                   const d = document.querySelector('#train-data-dataset input');
                   return m && m.value === 'whisper-tiny.en' && d && d.value === 'med-dictation'; }""")
    # the Evaluation section of the form starts folded; a user unfolds it to reach its fields
    page.locator("#tab-train").get_by_role("button", name=re.compile(r"^\s*Evaluation\b")).first.click()
    page.locator("#train-eval-wer_samples input").first.wait_for()
    for elem_id, value in FORM.items():
        fill(page, elem_id, value)
    page.locator("#train-name input, #train-name textarea").first.fill(RUN_NAME)
    page.locator("#train-preview").click()
    wait_text(page, "#train-status", r"Config is valid|error")
    assert "Config is valid" in page.locator("#train-status").inner_text()
    # CodeMirror renders only the lines in view: these come first in the YAML
    yaml_text = page.locator("#train-yaml").inner_text()
    for line in ("name: whisper-tiny.en", "dataset: med-dictation", "max_train_samples: 8",
                 f"max_steps: {MAX_STEPS}", "batch_size: 2"):
        assert line in yaml_text, f"{line!r} not in the previewed config:\n{yaml_text}"
    # the equivalent command: the recipe plus a --set for every field changed in the form
    cmd = page.locator("#train-cmd").inner_text()
    assert f"medtune train assets/recipes/{RECIPE}" in cmd, cmd
    for elem_id, value in FORM.items():
        section, name = elem_id.split("-")[1:3]
        assert f"--set {section}.{name}={value}" in cmd, f"{section}.{name}={value} missing from:\n{cmd}"
    shot(page, "runthrough-03-train-form")

    # 4. launch, watch the loss chart gain points --------------------------------------------------
    page.locator("#train-launch").click()
    status = wait_text(page, "#train-status", rf"Run \S*{RUN_NAME} (running|queued)|error", 60_000)
    run_id = re.search(rf"Run (\S*{RUN_NAME})", status).group(1)
    run = get_run(app.workspace, run_id)
    cfg = run.config()  # what the job reads: the form's values, not the recipe's
    assert (cfg.model.name, cfg.data.dataset, cfg.data.max_train_samples, cfg.train.max_steps,
            cfg.train.save_steps, cfg.train.logging_steps) == ("whisper-tiny.en", "med-dictation", 8, MAX_STEPS, 8, 1)
    pacer.run = run
    k1 = pacer.hold_after(0)
    assert wait_points_above(page, k1 - 1, 60_000, run_id) == k1  # held: the page shows what the file has
    page.locator("#train-chart .js-plotly-plot").first.wait_for(timeout=30_000)
    assert wait_chart_points(page, k1) == k1 and train_state(page) == "running"
    pacer.release()
    k2 = pacer.hold_after(k1)
    assert wait_points_above(page, k1, 60_000, run_id) == k2 > k1  # the chart grew while it ran
    assert wait_chart_points(page, k2) == k2 and train_state(page) == "running"
    shot(page, "runthrough-04-train-running")
    lap("train-points")

    # 5. stop (graceful: finish the step, checkpoint, stop) -----------------------------------------
    # Pressed while the job is held at step k2, so the stop lands mid-run on any box.
    page.locator("#train-stop").click()
    wait_text(page, "#train-status", rf"Stop requested for {run_id}")
    pacer.release()
    end = wait_state(page, "stopped|completed|failed")
    assert end == "stopped", f"the run is {end}, not stopped: {page.locator('#train-progress').inner_text()}"
    stopped_at = points(page)
    assert k2 <= stopped_at <= k2 + 1 < MAX_STEPS, f"stop pressed at point {k2}, stopped at {stopped_at}"
    ckpts = sorted(p.name for p in run.checkpoints_dir.glob("checkpoint-*"))
    # the stop's own checkpoint is at the last finished step (a loss line is written every step)
    assert f"checkpoint-{stopped_at}" in ckpts, f"no checkpoint-{stopped_at} after a graceful stop: {ckpts}"
    assert "stopped" in page.locator("#train-progress").inner_text()
    shot(page, "runthrough-05-train-stopped")
    lap("stopped")

    # 6. resume, and reload the page while the resumed job runs (held, so it cannot finish first):
    #    the page re-attaches from the run folder and keeps updating as the job goes on ------------
    page.locator("#train-resume").click()
    wait_text(page, "#train-status", rf"Resuming {run_id}")
    k3 = pacer.hold_after(stopped_at)  # the resumed job's first step
    page.reload()
    page.get_by_role("tab").first.wait_for()
    open_tab(page, "Train")
    assert wait_points_above(page, k3 - 1, 60_000, run_id) == k3
    assert run_id in page.locator("#train-progress").inner_text()
    page.locator("#train-chart .js-plotly-plot").first.wait_for(timeout=30_000)
    assert wait_chart_points(page, k3) == k3 and train_state(page) == "running"
    pacer.release()
    k4 = pacer.hold_after(k3)
    assert wait_points_above(page, k3, 60_000, run_id) == k4 > k3 and wait_chart_points(page, k4) == k4
    assert train_state(page) == "running"
    shot(page, "runthrough-06-train-reloaded")
    pacer.release()
    lap("reload")

    # 7. let it finish: every step's loss once, none lost, none duplicated ----------------------------
    wait_state(page, "completed", 600_000)
    page.wait_for_function(f"() => parseInt(document.querySelector('#train-progress .train-points')"
                           f"?.innerText) === {MAX_STEPS}", timeout=30_000)
    steps = [r["step"] for r in run.metrics() if r.get("loss") is not None]
    assert steps == list(range(1, MAX_STEPS + 1)), steps
    assert chart_points(page) == MAX_STEPS
    assert re.search(r"training from checkpoint-\d+", run.log_tail(400)), "the resumed job did not start from a checkpoint"
    assert (run.adapter_dir / "adapter_config.json").is_file()
    expect(page.locator("#train-runs")).to_contain_text(run_id)
    shot(page, "runthrough-07-train-completed")
    lap("train-done")

    # 8. Evaluate: start a tiny batch evaluation (a background job; it runs while we compare) --------
    open_tab(page, "Evaluate")
    page.locator("#ev-refresh").click()
    pick(page, "ev-runs", run_id)
    page.get_by_text("Run an evaluation (background job)").click()
    limit = page.get_by_label("Limit (0 = all)")
    limit.fill("1")
    limit.blur()
    page.locator("#ev-start").click()
    wait_text(page, "#ev-status", rf"Evaluation of {run_id} queued|error", 60_000)
    assert "queued" in page.locator("#ev-status").inner_text()
    shot(page, "runthrough-08-evaluate-started")
    lap("evaluate-started")

    # 9. Compare: base vs tuned on a test clip ----------------------------------------------------------
    open_tab(page, "Compare")
    page.locator("#cmp-refresh").click()
    pick(page, "cmp-run", run_id)
    page.locator("#cmp-load-row").click()
    wait_text(page, "#cmp-status", r"Row 0 of med-dictation/test|error")
    assert page.locator("#cmp-reference textarea").input_value().strip(), "no reference text for the row"
    box = page.locator("#cmp-max-new input[type=number]")
    box.fill("48")
    box.press("Enter")
    page.locator("#cmp-go").click()
    wait_text(page, "#cmp-status", r"Transcribed and scored|error", 240_000)
    assert "Transcribed and scored" in page.locator("#cmp-status").inner_text()
    for side, title in (("#cmp-base-out", "Base"), ("#cmp-tuned-out", "Tuned (adapter on)")):
        text = wait_text(page, side, r"WER \d")
        assert title in text and "terms hit" in text and "transcript:" in text, text
        transcript = text.split("transcript:", 1)[1].strip()
        assert transcript, f"{side}: empty transcript"
        assert page.locator(f"{side} .mt-diff span").count() > 0, f"{side}: no word diff"
    shot(page, "runthrough-09-compare")
    lap("compare")

    # 10. Evaluate: the evaluation's results, then one blind review ------------------------------------
    open_tab(page, "Evaluate")
    wait_text(page, "#ev-job", r"Evaluation job: (completed|failed|stopped)", 420_000)
    assert "completed" in page.locator("#ev-job").inner_text(), page.locator("#ev-job").inner_text()
    page.locator("#ev-show").click()
    wait_text(page, "#ev-status", rf"{run_id}: med-dictation/test, 1 examples|error")
    table = wait_text(page, "#ev-metrics", r"WER")
    assert run_id in table

    page.locator("#rv-reviewer textarea, #rv-reviewer input").first.fill("dr runthrough")
    page.locator("#rv-next").click()
    wait_text(page, "#rv-a", r"\w")
    html_a, html_b = page.locator("#rv-a").inner_html(), page.locator("#rv-b").inner_html()
    assert "base" not in (html_a + html_b).lower() and "tuned" not in (html_a + html_b).lower()
    page.get_by_label("B is better").check()
    page.locator("#rv-submit").click()
    wait_text(page, "#rv-summary", r"1 reviews")
    reviews = [json.loads(x) for x in (run.eval_dir / "reviews.jsonl").read_text().splitlines()]
    assert len(reviews) == 1
    assert reviews[0]["reviewer"] == "dr runthrough" and reviews[0]["shown"] == "B"
    assert reviews[0]["winner"] in ("base", "tuned")
    shot(page, "runthrough-10-evaluate-review")
    lap("evaluate")

    # 11. Export: the merged model ---------------------------------------------------------------------
    open_tab(page, "Export")
    page.locator("#export-refresh").click()
    pick(page, "export-run", run_id)
    expect(page.locator("#export-status")).to_contain_text("No export yet")
    page.locator("#export-start").click()
    expect(page.locator("#export-status")).to_contain_text("Export completed.", timeout=420_000)
    verification = page.locator("#export-verification")
    expect(verification).to_contain_text("merged")
    expect(verification).to_contain_text("passed")
    expect(page.locator("#export-files")).to_contain_text("merged")
    merged = run.export_dir / "merged"
    assert (merged / "config.json").is_file() and list(merged.glob("*.safetensors")), \
        f"no merged model in {merged}: {sorted(p.name for p in run.export_dir.iterdir())}"
    shot(page, "runthrough-11-export")
    lap("export")
    assert page.external_requests == []
