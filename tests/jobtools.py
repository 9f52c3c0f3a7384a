"""Helpers for the tests that start real background jobs (queue, several processes, Slurm)."""

from __future__ import annotations

import time

from engine import jobs
from engine.runs import list_runs

#: Generous: CI boxes are shared; the tests assert outcomes, not speed.
TIMEOUT = 600


def stop_leftover_jobs(workspace) -> None:
    """Jobs outlive their launcher by design; a failing test must not leave one running."""
    for run in list_runs(workspace):
        if run.status().get("state") in ("queued", "running"):
            try:
                jobs.stop(run, force=True)
            except Exception:  # noqa: BLE001 - it may have ended in between
                pass


def wait_for(cond, timeout: float = TIMEOUT, what: str = "condition", poll: float = 0.05):
    """``cond()``'s first truthy value, or AssertionError after ``timeout`` seconds."""
    end = time.time() + timeout
    while time.time() < end:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")
