"""The Train tab submitting to a real Slurm: pick "slurm" under Where to run, launch, see the
run wait as a Slurm job, then train on the node with the chart filling, and complete.

The app is started here, after the single-node cluster (``slurm_cluster``), so that it and
the jobs it submits see the cluster's SLURM_CONF, as an app on a cluster's login node does."""

from __future__ import annotations

import re
import shutil

import pytest
from appserver import running_app
from pagekit import fill, pick, wait_points_above, wait_text
from train_tiny import qa_rows, tiny_llama, write_dataset  # noqa: F401 - fixture

from engine.runs import get_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_submit_to_slurm_from_the_train_tab(slurm_cluster, browser, open_tab, shot, tiny_llama, tmp_path):
    with running_app(tmp_path / "ws", env={"SLURM_CONF": str(slurm_cluster.conf)},
                     log_name="app-server-slurm.log") as app:
        ws = app.workspace
        shutil.copytree(tiny_llama, ws.root / "models" / "tiny-llama", dirs_exist_ok=True)
        write_dataset(ws.datasets / "tiny-qa", "text",
                      {"train": qa_rows(48), "validation": qa_rows(8, seed=1), "test": qa_rows(4, seed=2)})
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        try:
            page.goto(app.url)
            page.get_by_role("tab").first.wait_for()
            try:
                _submit_and_watch(page, open_tab, shot, ws)
            except BaseException:
                shot(page, "train-tab-slurm-FAILED")
                raise
        finally:
            context.close()
            from engine import jobs
            from engine.runs import list_runs

            for run in list_runs(ws):
                if run.status().get("state") in ("queued", "running"):
                    jobs.stop(run, force=True)
            slurm_cluster.wait_idle(120)


def _submit_and_watch(page, open_tab, shot, ws):
    open_tab(page, "Train")
    fill(page, "train-model-name", "models/tiny-llama", enter=True)
    fill(page, "train-data-dataset", "tiny-qa", enter=True)
    for field, value in {"train-train-max_steps": "60", "train-train-logging_steps": "2",
                         "train-train-eval_steps": "30", "train-train-save_steps": "30",
                         "train-train-batch_size": "2", "train-lora-r": "4"}.items():
        fill(page, field, value)
    page.get_by_text("Where to run").first.click()  # the section's accordion
    pick(page, "train-launch-where", "slurm")
    fill(page, "train-launch-processes", "1")
    _text(page, "train-launch-partition", "nope")
    page.locator("#train-preview").click()
    # a bad partition: refused next to the form, before anything is submitted
    wait_text(page, "#train-status", r"launch\.partition: no partition 'nope'", 60_000)
    _text(page, "train-launch-partition", "debug")
    page.locator("#train-name input, #train-name textarea").first.fill("slurm-run")
    page.locator("#train-preview").click()
    wait_text(page, "#train-status", r"Config is valid", 60_000)
    page.locator("#train-launch").click()
    page.wait_for_function("() => /Run .*slurm-run (running|queued)/.test("
                           "document.querySelector('#train-status').innerText)", timeout=60_000)
    run_id = re.search(r"Run (\S+slurm-run)", page.locator("#train-status").inner_text()).group(1)
    cfg = get_run(ws, run_id).config().launch
    assert (cfg.where, cfg.partition, cfg.processes) == ("slurm", "debug", 1)
    table = wait_text(page, "#train-runs", r"Slurm job \d+", 120_000)
    assert "slurm-run" in table
    n = wait_points_above(page, 1, run_id=run_id)  # the chart fills while the job runs on the node
    assert n >= 2
    shot(page, "train-tab-slurm-running")
    page.wait_for_function(
        "() => document.querySelector('#train-progress-inner')?.dataset.state === 'completed'", timeout=600_000)
    table = " ".join(page.locator("#train-runs").inner_text().split())  # cells wrap
    assert re.search(r"Slurm job \d+ on \S+, 1 node x 1 process \(DDP\)", table), table
    shot(page, "train-tab-slurm-completed")


def _text(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
    box.fill(value)
    box.blur()
