"""The UI process dies mid-run (SIGKILL) and comes back (issue #8).

A run launched from the Train tab belongs to its job process, not to the UI: the job keeps
training while no UI exists, and a new server on the same workspace re-attaches to it from
the run folder. Three browser tabs on the new server watch the one run at the same time.

Own servers (``appserver.running_app``) rather than the session ``app`` fixture: this test
kills one.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from urllib.parse import urlparse

import pytest
from appserver import running_app
from pagekit import fill, points, wait_points_above
from train_tiny import qa_rows, tiny_llama, write_dataset  # noqa: F401 - fixture

pytestmark = pytest.mark.browser

#: Enough steps that the run outlives the kill and is seen training with no UI; the job is
#: then frozen (SIGSTOP) while the new server starts and the pages attach, so speed does not matter.
MAX_STEPS, LOGGING_STEPS = 240, 4
POINTS = MAX_STEPS // LOGGING_STEPS


def _page(browser, url: str):
    """A page on ``url`` in its own context; requests to other hosts are aborted (no network)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(120_000)  # a shared 2-core box: generous, like conftest's pages
    host = urlparse(url).netloc
    context.route("**/*", lambda route: route.continue_() if urlparse(route.request.url).netloc == host
                  or urlparse(route.request.url).scheme in ("data", "blob") else route.abort())
    page = context.new_page()
    page.goto(url)
    page.get_by_role("tab").first.wait_for()
    return page


def _train_steps(run) -> list[int]:
    return [r["step"] for r in run.metrics() if "loss" in r]


def _wait_for(cond, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_ui_killed_and_restarted_while_a_run_trains(browser, tiny_llama, tmp_path, open_tab, shot):
    import psutil

    from engine import jobs
    from engine.runs import list_runs, pid_alive

    ws_dir = tmp_path / "ws"
    run, pid, paused = None, None, False
    try:
        # ---- UI #1: launch from the Train tab, watch it train, then SIGKILL the server ----
        with running_app(ws_dir, log_name="ui-restart-1.log") as app1:
            ws = app1.workspace
            shutil.copytree(tiny_llama, ws.root / "models" / "tiny-llama")
            write_dataset(ws.datasets / "tiny-qa", "text",
                          {"train": qa_rows(48), "validation": qa_rows(8, seed=1), "test": qa_rows(4, seed=2)})
            page = _page(browser, app1.url)
            open_tab(page, "Train")
            fill(page, "train-model-name", "models/tiny-llama", enter=True)
            fill(page, "train-data-dataset", "tiny-qa", enter=True)
            for field, value in {"train-train-max_steps": str(MAX_STEPS),
                                 "train-train-logging_steps": str(LOGGING_STEPS),
                                 "train-train-eval_steps": "0", "train-train-save_steps": "60",
                                 "train-train-batch_size": "4", "train-lora-r": "4"}.items():
                fill(page, field, value)
            page.locator("#train-name input, #train-name textarea").first.fill("ui-restart")
            page.locator("#train-launch").click()
            page.wait_for_function("() => /Run .*ui-restart running/.test("
                                   "document.querySelector('#train-status').innerText)", timeout=60_000)
            wait_points_above(page, 1)
            (run,) = list_runs(ws)
            st = run.status()
            pid, pid_started = st["pid"], st["pid_started"]
            assert psutil.Process(pid).ppid() == app1.proc.pid  # the UI process spawned the job
            os.kill(app1.proc.pid, signal.SIGKILL)
            app1.proc.wait(timeout=30)
            page.context.close()

        # ---- no UI at all: the job trains on, writing its run folder --------------------------
        at_kill = len(_train_steps(run))
        assert pid_alive(pid, pid_started), run.log_tail()
        _wait_for(lambda: len(_train_steps(run)) > at_kill, 240, "metrics.jsonl to grow with the UI dead")
        assert run.raw_status()["state"] == "running" and pid_alive(pid, pid_started)
        # Freeze the job while the new UI starts: it has been seen training with no UI, and a
        # fast box must not finish the run before the restarted pages attach to it.
        os.kill(pid, signal.SIGSTOP)
        paused = True

        # ---- UI #2 on the same workspace: three tabs re-attach and follow the run -----------
        with running_app(ws_dir, log_name="ui-restart-2.log") as app2:
            pages = [_page(browser, app2.url) for _ in range(3)]
            seen = []
            for p in pages:  # no run picked by hand: the tab selects the active one by itself
                open_tab(p, "Train")
                seen.append(wait_points_above(p, 0))
                assert run.id in p.locator("#train-progress").inner_text()
            assert run.status()["state"] == "running", run.status()
            shot(pages[0], "ui-restart-attached")
            os.kill(pid, signal.SIGCONT)
            paused = False
            for p, n in zip(pages, seen):  # every tab's chart and counter keep moving
                assert wait_points_above(p, n) > n
                p.locator("#train-chart .js-plotly-plot").first.wait_for(timeout=30_000)
            for p in pages:
                p.wait_for_function("() => document.querySelector('#train-progress-inner')?.dataset.state"
                                    " === 'completed'", timeout=600_000)
                assert points(p) == POINTS
            shot(pages[0], "ui-restart-completed")
            assert app2.proc.poll() is None
            for p in pages:
                p.context.close()

        st = run.status()
        assert st["state"] == "completed" and st["pid"] == pid  # the same job process, never restarted
        assert _train_steps(run) == list(range(LOGGING_STEPS, MAX_STEPS + 1, LOGGING_STEPS))
        assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    finally:  # jobs outlive the app by design: never leave one running (or frozen) after the test
        if paused:
            os.kill(pid, signal.SIGCONT)
        if run is not None and run.status().get("state") in ("queued", "running"):
            jobs.stop(run, force=True)
