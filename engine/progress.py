"""One progress protocol for long work, so the CLI shows a tqdm bar and the UI a Gradio bar.

Engine functions take ``progress: Progress | None`` and call ``progress(fraction, message)``
with ``fraction`` in [0, 1] (or ``None`` when unknown).
"""

from __future__ import annotations

from typing import Callable, Optional

from tqdm import tqdm

Progress = Callable[[Optional[float], str], None]


def report(progress: Progress | None, fraction: float | None, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def tqdm_progress(desc: str = "") -> Progress:
    """A Progress that draws a tqdm bar on stderr (for the CLI)."""
    bar = tqdm(total=1000, desc=desc, unit="", bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}")

    def _update(fraction: float | None, message: str) -> None:
        if fraction is not None:
            bar.n = int(max(0.0, min(1.0, fraction)) * 1000)
        bar.set_postfix_str(message[:60], refresh=True)
        if fraction is not None and fraction >= 1.0:
            bar.close()

    return _update


def scaled(progress: Progress | None, start: float, end: float) -> Progress | None:
    """Map a sub-task's 0..1 onto ``start..end`` of the parent's bar."""
    if progress is None:
        return None

    def _inner(fraction: float | None, message: str) -> None:
        progress(None if fraction is None else start + (end - start) * fraction, message)

    return _inner
