"""Page helpers shared by the browser tests (conftest fixtures cannot be imported as functions).

Selectors are the app's own elem_ids: ``#train-progress .train-points`` is the Train tab's
count of train-loss points, which the tests watch to see a live run's chart grow.
"""

from __future__ import annotations

import os
import signal
import time


def wait_text(page, selector: str, pattern: str, timeout_ms: int = 300_000) -> str:
    """Wait until ``selector``'s text matches the regex ``pattern`` (case-insensitive); the text."""
    page.wait_for_function(
        """([sel, pat]) => { const el = document.querySelector(sel);
              return !!el && new RegExp(pat, 'i').test(el.innerText); }""",
        arg=[selector, pattern], timeout=timeout_ms)
    return page.locator(selector).first.inner_text()


def pick(page, elem_id: str, value: str) -> None:
    """Choose the option containing ``value`` in the Gradio dropdown ``#elem_id``."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    page.get_by_role("option").filter(has_text=value).first.click()
    box.blur()


def fill(page, elem_id: str, value: str, enter: bool = False) -> None:
    """Type ``value`` into the Gradio textbox/number ``#elem_id`` (Enter submits when asked)."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(value)
    if enter:
        box.press("Enter")
    box.blur()


def points(page) -> int:
    """Train-loss points in the Train tab's chart of the selected run."""
    loc = page.locator("#train-progress .train-points")
    return int(loc.first.inner_text()) if loc.count() else 0


def wait_points_above(page, n: int, timeout_ms: int = 180_000, run_id: str = "") -> int:
    """Wait until the chart has more than ``n`` train-loss points; the count. With ``run_id``,
    only once the tab shows that run (right after a launch it may still show the run it was
    watching, whose count would answer instead)."""
    page.wait_for_function(
        """([n, rid]) => { const box = document.querySelector('#train-progress');
                    const el = box && box.querySelector('.train-points');
                    return el && parseInt(el.innerText) > n && box.innerText.includes(rid); }""",
        arg=[n, run_id], timeout=timeout_ms)
    return points(page)


def _wait_stopped(pid: int, timeout_s: float = 10) -> None:
    """Until the process is really stopped (state T in /proc/PID/stat)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} did not stop within {timeout_s}s")


class JobPacer:
    """Holds a run's training job still (SIGSTOP) right after a chosen number of train-loss
    points, so a page check that needs the run *running* (the chart growing, a stop landing
    mid-run, a reload re-attaching) does not race the box's speed: a tiny run's steps take
    ~0.3 s here, under the page's poll interval. The job is the real one; only its pace is
    held, as a slow machine would. ``release()`` lets it go on (a signal sent while it was
    held, such as the graceful stop's SIGTERM, is delivered then)."""

    def __init__(self, run=None, kind: str = "train"):
        self.run, self.kind, self.pid = run, kind, None  # run: set once the job's run exists

    def loss_points(self) -> int:
        return sum(1 for r in self.run.metrics() if r.get("loss") is not None)

    def hold_after(self, n: int, timeout_s: float = 420) -> int:
        """Wait until the job has written more than ``n`` loss points, freeze it; the count."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = self.run.raw_status(self.kind)
            if st.get("state") == "running" and st.get("pid") and self.loss_points() > n:
                self.pid = int(st["pid"])
                os.kill(self.pid, signal.SIGSTOP)
                _wait_stopped(self.pid)  # the signal lands asynchronously: a line may still come
                return self.loss_points()  # lines written between the look and the stop count too
            if st.get("state") in ("completed", "failed", "stopped"):
                raise AssertionError(f"the job ended ({st.get('state')}) before point {n + 1}:\n"
                                     + self.run.log_tail(2000))
            time.sleep(0.02)
        raise AssertionError(f"no point {n + 1} within {timeout_s}s:\n" + self.run.log_tail(2000))

    def release(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.pid = None
