"""The Train tab in a real browser: launch a tiny run from the form, watch the loss chart
gain points, reload the page, see it re-attach and keep updating, see the run complete."""

from __future__ import annotations

import re
import shutil

import pytest
from pagekit import fill, points, wait_points_above
from train_tiny import qa_rows, tiny_llama, write_dataset  # noqa: F401 - fixture

pytestmark = pytest.mark.browser


def test_launch_watch_reload_complete(app, browser_page, goto_app, open_tab, shot, tiny_llama):
    ws = app.workspace
    shutil.copytree(tiny_llama, ws.root / "models" / "tiny-llama", dirs_exist_ok=True)
    write_dataset(ws.datasets / "tiny-qa", "text",
                  {"train": qa_rows(48), "validation": qa_rows(8, seed=1), "test": qa_rows(4, seed=2)})
    try:
        _launch_watch_reload_complete(goto_app(browser_page), open_tab, shot)
    finally:  # jobs outlive the app by design: never leave one running after the test
        from engine import jobs
        from engine.runs import list_runs

        for run in list_runs(ws):
            if run.status().get("state") in ("queued", "running"):
                jobs.stop(run, force=True)


def _launch_watch_reload_complete(page, open_tab, shot):
    open_tab(page, "Train")
    fill(page, "train-model-name", "models/tiny-llama", enter=True)
    fill(page, "train-data-dataset", "tiny-qa", enter=True)
    # Long enough to still be running after the reload on an idle machine.
    for field, value in {"train-train-max_steps": "400", "train-train-logging_steps": "5",
                         "train-train-eval_steps": "200", "train-train-save_steps": "200",
                         "train-train-batch_size": "4", "train-lora-r": "4"}.items():
        fill(page, field, value)
    page.locator("#train-name input, #train-name textarea").first.fill("browser-run")
    page.locator("#train-preview").click()
    page.wait_for_function("() => /valid/i.test(document.querySelector('#train-status').innerText)")
    assert "max_steps: 400" in page.locator("#train-yaml").inner_text()
    page.locator("#train-launch").click()
    page.wait_for_function("() => /Run .*browser-run (running|queued)/.test("
                           "document.querySelector('#train-status').innerText)", timeout=60_000)
    run_id = re.search(r"Run (\S+browser-run)", page.locator("#train-status").inner_text()).group(1)
    n1 = wait_points_above(page, 1, run_id=run_id)  # the launched run, not one watched before
    page.locator("#train-chart .js-plotly-plot").first.wait_for(timeout=30_000)
    n2 = wait_points_above(page, n1)
    assert n2 > n1 >= 2
    shot(page, "train-tab-running")

    page.reload()
    page.get_by_role("tab").first.wait_for()
    open_tab(page, "Train")
    n3 = wait_points_above(page, n2 - 1)  # re-attached from the run folder, not the session
    # ...and still updating: more points arrive, unless the run finished in the meantime
    # (then the completed-state check below sees every point instead).
    page.wait_for_function(
        """(n) => { const el = document.querySelector('#train-progress .train-points');
                    const st = document.querySelector('#train-progress-inner')?.dataset.state;
                    return (el && parseInt(el.innerText) > n) || st === 'completed'; }""",
        arg=n3, timeout=180_000)
    page.wait_for_function(
        "() => document.querySelector('#train-progress-inner')?.dataset.state === 'completed'", timeout=600_000)
    assert points(page) == 80  # 400 steps, a line every 5
    assert "browser-run" in page.locator("#train-runs").inner_text()
    shot(page, "train-tab-completed")
