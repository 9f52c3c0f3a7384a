"""ui/components.py: engine errors become readable messages, never tracebacks."""

from __future__ import annotations

import gradio as gr
import pytest

from engine.errors import DataError, ModelError
from ui.components import (banner, error_text, friendly_error, gradio_progress, status_errors,
                           ui_errors, user_errors)


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
