"""The Train tab's rehearsal: load a GPU recipe, rehearse it at its model's real width on this
CPU (random weights, 2 layers), see it run like any run and end with its memory split."""

from __future__ import annotations

import re

import pytest
from pagekit import fill, pick, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_rehearse_a_gpu_recipe_from_the_form(app, browser_page, goto_app, open_tab, shot):
    page = goto_app(browser_page)
    try:
        open_tab(page, "Train")
        pick(page, "train-recipe", "phi2-lora-medqa.yaml")
        wait_text(page, "#train-model-name", "", 30_000)
        page.wait_for_function("() => document.querySelector('#train-model-name input').value === 'microsoft/phi-2'")
        fill(page, "train-train-batch_size", "1")
        fill(page, "train-train-max_length", "128")
        page.locator("#train-name input, #train-name textarea").first.fill("phi2-rehearsal")
        page.locator("#train-rehearse").click()
        status = wait_text(page, "#train-status", r"Rehearsal \S+phi2-rehearsal", 60_000)
        run_id = re.search(r"Rehearsal (\S+phi2-rehearsal)", status).group(1)
        wait_text(page, "#train-runs", r"rehearsal, 2 of 32 layers, random weights", 60_000)
        page.wait_for_function(
            """(rid) => { const el = document.querySelector('#train-progress-inner');
                          return el && ['completed', 'failed'].includes(el.dataset.state)
                                 && document.querySelector('#train-progress').innerText.includes(rid); }""",
            arg=run_id, timeout=600_000)
        state = page.locator("#train-progress-inner").get_attribute("data-state")
        assert state == "completed", page.locator("#train-progress").inner_text()
        text = wait_text(page, "#train-progress .train-rehearsal", r"Rehearsal: peak [\d.]+ GiB", 60_000)
        assert "weights" in text and "LoRA + optimizer" in text and "activations" in text
        assert re.search(r"trainable params 327,680", text)  # r8 on q,k,v,dense of 2 phi-2 blocks
        shot(page, "train-tab-rehearsal")
    finally:
        from engine import jobs
        from engine.runs import list_runs

        for run in list_runs(app.workspace):
            if run.status().get("state") in ("queued", "running"):
                jobs.stop(run, force=True)
