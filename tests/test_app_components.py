"""ui/components.py: engine errors become readable messages, never tracebacks."""

from __future__ import annotations

import logging
import os
import time

import gradio as gr
import psutil
import pytest

from engine.config import RunConfig
from engine.errors import DataError, ModelError
from engine.runs import create_run, list_runs
from ui.components import (
    banner,
    error_banner,
    error_text,
    friendly_error,
    gradio_progress,
    status_errors,
    ui_errors,
    user_errors,
)
from ui.tabs.train import run_to_watch


def test_engine_error_keeps_message_and_hint():
    err = DataError("cannot decode audio", file="clip.wav", hint="Use WAV or FLAC")
    g = friendly_error(err)
    assert isinstance(g, gr.Error)
    assert "clip.wav: cannot decode audio" in g.message and "Hint: Use WAV or FLAC" in g.message


def test_bug_becomes_one_line_and_html_is_escaped():
    assert error_text(KeyError("x")).startswith("Unexpected error (KeyError)")
    assert "<script>" not in friendly_error(ModelError("<script>alert(1)</script>")).message
    assert "&lt;script&gt;" in banner("<script>", "error")
    with pytest.raises(ValueError):
        banner("x", "loud")


def test_user_errors_and_decorator_plain_and_generator():
    with pytest.raises(gr.Error, match="bad model"):
        with user_errors():
            raise ModelError("bad model")

    @ui_errors
    def plain(x):
        raise ModelError(f"no {x}")

    @ui_errors
    def gen(x):
        yield 1
        raise ModelError(f"no {x}")

    with pytest.raises(gr.Error, match="no a"):
        plain("a")
    it = gen("b")
    assert next(it) == 1
    with pytest.raises(gr.Error, match="no b"):
        next(it)
    import inspect
    assert inspect.isgeneratorfunction(gen) and not inspect.isgeneratorfunction(plain)


def test_status_errors_reports_in_first_output():
    @status_errors(3)
    def handler(x):
        raise DataError("broken", file="f.jsonl", line=3)

    @status_errors(2)
    def streaming(x):
        yield "ok", "partial"
        raise ModelError("gone")

    status, a, b = handler(1)
    assert "medtune-banner-error" in status and "f.jsonl, line 3: broken" in status
    assert a == gr.update() and b == gr.update()
    out = list(streaming(1))
    assert out[0] == ("ok", "partial") and "gone" in out[1][0]


def test_errors_raised_on_purpose_log_one_line_and_bugs_a_traceback(caplog):
    caplog.set_level(logging.INFO, logger="medtune.ui")

    @status_errors(1)
    def banner_handler(x):
        raise gr.Error("Load a dataset first.")

    @ui_errors
    def toast_handler(x):
        raise gr.Error("Pick a run first.")

    assert "Load a dataset first." in banner_handler(1)
    with pytest.raises(gr.Error) as err:
        toast_handler(1)
    assert err.value.print_exception is False  # Gradio would print its traceback otherwise
    error_banner(DataError("broken", file="f.jsonl", line=3))
    refused = [r for r in caplog.records if r.getMessage().startswith("refused in a UI handler")]
    assert len(refused) == 3 and not any(r.exc_info for r in refused)
    assert not [r for r in caplog.records if "unexpected" in r.getMessage()]
    error_banner(KeyError("x"))  # a bug: the full traceback, flagged as unexpected
    bug = caplog.records[-1]
    assert bug.levelno == logging.ERROR and "unexpected" in bug.getMessage() and bug.exc_info


def test_gradio_progress_adapter_keeps_last_fraction():
    calls = []

    def bar(fraction, desc=None):
        calls.append((fraction, desc))

    p = gradio_progress(bar)
    p(0.5, "half")
    p(None, "still working")
    p(2.0, "done")
    assert calls == [(0.5, "half"), (0.5, "still working"), (1.0, "done")]
    assert gradio_progress(None) is None


def test_train_tab_watches_the_running_run_first_after_a_restart(workspace):
    me = psutil.Process(os.getpid())
    running = create_run(workspace, RunConfig(), "running")  # oldest: started before the others were queued
    running.write_status(state="running", pid=me.pid, pid_started=me.create_time())
    time.sleep(0.05)  # list_runs orders by creation time
    queued = create_run(workspace, RunConfig(), "queued")
    queued.write_status(state="queued")
    time.sleep(0.05)
    done = create_run(workspace, RunConfig(), "done")
    done.write_status(state="completed")
    runs = list_runs(workspace)
    assert [r.id for r in runs] == [done.id, queued.id, running.id]
    assert run_to_watch(runs) == running  # not the newer queued run
    running.write_status(state="completed")
    assert run_to_watch(list_runs(workspace)) == queued  # it starts next
    queued.write_status(state="stopped")
    assert run_to_watch(list_runs(workspace)) == done
