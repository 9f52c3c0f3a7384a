"""Small pieces every tab shares: friendly errors, status banners, a progress adapter.

The rule they enforce: a user never sees a traceback. An engine error (:class:`MedtuneError`)
reaches the page as its own message (and hint); anything else is a bug, logged with its
traceback on the server and shown in the page as one short line.
"""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import logging
import threading
from typing import Any, Callable, Iterator

import gradio as gr

from engine.errors import MedtuneError
from engine.progress import Progress

log = logging.getLogger("medtune.ui")

#: Seconds an error toast stays up; None would need a click, which hides the next error.
ERROR_SECONDS = 15


def error_text(err: BaseException) -> str:
    """Plain text for an error: the engine's message (with hint), or a one-line summary."""
    if isinstance(err, MedtuneError):
        return str(err)
    if isinstance(err, gr.Error):
        return str(err.message)
    if isinstance(err, MemoryError):
        return "Out of memory. Try a smaller model, 4-/8-bit loading, or shorter inputs."
    if isinstance(err, FileNotFoundError):
        return f"File not found: {getattr(err, 'filename', None) or err}"
    return f"Unexpected error ({type(err).__name__}): {str(err)[:300]}"


def _log(err: BaseException) -> None:
    """Bugs get the traceback; errors raised on purpose (engine refusals, a handler's own
    gr.Error) are the user's business and get one line."""
    if isinstance(err, (MedtuneError, gr.Error)):
        first = error_text(err).splitlines()[0] if error_text(err) else type(err).__name__
        log.info("refused in a UI handler: %s", first[:300])
    else:
        log.error("unexpected error in a UI handler", exc_info=err)


def friendly_error(err: BaseException) -> gr.Error:
    """A ``gr.Error`` (shown as a toast in the page) for ``err``; bugs are logged in full."""
    _log(err)
    if isinstance(err, gr.Error):
        err.print_exception = False  # logged above as one line: Gradio need not print a traceback
        return err
    text = html.escape(error_text(err)).replace("\n", "<br>")
    # print_exception=False: the server log gets the traceback above only for real bugs.
    return gr.Error(text, duration=ERROR_SECONDS, print_exception=False)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """``with user_errors(): ...`` inside a handler turns any exception into a friendly gr.Error."""
    try:
        yield
    except gr.Error as err:
        raise friendly_error(err)  # noqa: B904 - the same error, logged as one line
    except Exception as err:  # noqa: BLE001 - the point is to catch everything
        raise friendly_error(err) from err


def ui_errors(fn: Callable) -> Callable:
    """Decorator for a Gradio handler (plain or generator): errors become friendly gr.Error.

    The wrapper keeps the signature (Gradio reads it for ``gr.Progress`` defaults) and stays a
    generator function when ``fn`` is one (Gradio streams only from generator functions).
    """
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any):
            with user_errors():
                yield from fn(*args, **kwargs)
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        with user_errors():
            return fn(*args, **kwargs)
    return wrapper


def status_errors(n_outputs: int = 1) -> Callable[[Callable], Callable]:
    """Decorator for a handler whose FIRST output is a status banner (gr.HTML): an error is
    shown there, persistently and in red, and the other outputs are left as they were.

    Use it where the user must be able to read the error after the toast is gone (a failed
    load, a bad file). Works for plain and generator handlers, keeps the signature.
    """
    def _fail(err: BaseException):
        rest = [gr.update() for _ in range(n_outputs - 1)]
        return (error_banner(err), *rest) if rest else error_banner(err)

    def deco(fn: Callable) -> Callable:
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any):
                try:
                    yield from fn(*args, **kwargs)
                except Exception as err:  # noqa: BLE001 - reported in the page
                    yield _fail(err)
            return gen_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any):
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - reported in the page
                return _fail(err)
        return wrapper
    return deco


def banner(message: str, kind: str = "info") -> str:
    """HTML for a status line (``kind`` is "info", "ok" or "error"); the text is escaped."""
    if kind not in ("info", "ok", "error"):
        raise ValueError(f"banner kind must be info, ok or error, not {kind!r}")
    body = html.escape(str(message)).replace("\n", "<br>")
    return f'<div class="medtune-banner-{kind}" role="status">{body}</div>'


def error_banner(err: BaseException) -> str:
    """A red banner for ``err`` (for handlers that report into the page instead of raising)."""
    _log(err)
    return banner(error_text(err), "error")


def gradio_progress(progress: "gr.Progress | None") -> Progress | None:
    """Adapt a handler's ``gr.Progress`` to the engine's ``progress(fraction, message)``.

    An unknown fraction (None) keeps the bar where it was and only updates the message.
    Thread-safe: engine code may report from worker threads.
    """
    if progress is None:
        return None
    state = {"fraction": 0.0}
    lock = threading.Lock()

    def _report(fraction: float | None, message: str) -> None:
        with lock:
            if fraction is not None:
                state["fraction"] = max(0.0, min(1.0, float(fraction)))
            progress(state["fraction"], desc=message)

    return _report
