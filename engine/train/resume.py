"""Where a (re)started training job picks up, shared by the transformers and NeMo backends.

Both backends continue the same run folder after a stop or crash: start from the newest
complete checkpoint, drop metrics lines written after it (those steps are recomputed, so the
step sequence stays strictly increasing), and keep counting elapsed time across sessions.

Checkpoint folders are written in place (``checkpoints/checkpoint-N/``, ``trainer_state.json``
last), so a save cut off by a kill or a full disk leaves a folder without a readable
``trainer_state.json`` (or a truncated one). Such folders are removed, with a line in job.log
(``Run.remove_incomplete_checkpoints``), when a run resumes, and by the failing job itself
after a disk-full error (engine.jobs.runtime): they are no resume point, they hold the very
bytes a full disk needs back, and the Trainer's ``save_total_limit`` rotation would count
them, deleting a good checkpoint in their place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.runs import Run


class Clock:
    """Elapsed time of the whole run across resumes, and an ETA from this session's pace."""

    def __init__(self, offset: float, start_step: int):
        self.t0 = time.time()
        self.offset = offset
        self.start_step = start_step

    def elapsed(self) -> float:
        return self.offset + time.time() - self.t0

    def eta(self, step: int, max_steps: int) -> float | None:
        done = step - self.start_step
        if done <= 0 or max_steps <= 0:
            return None
        return (time.time() - self.t0) / done * max(0, max_steps - step)


@dataclass
class ResumePoint:
    checkpoint: Path | None  # None: start from scratch
    start_step: int
    elapsed_s: float         # wall time already spent by earlier sessions of this run

    def clock(self) -> Clock:
        return Clock(self.elapsed_s, self.start_step)


def resume_point(run: Run, resume: bool, log: Callable[[str], None], writer: bool = True) -> ResumePoint:
    """``writer``: this process tidies the run folder (one of several ranks: rank 0 alone; the
    others only read, and skip incomplete checkpoints as well)."""
    if resume and writer:
        run.remove_incomplete_checkpoints(log)
    ckpt = run.latest_checkpoint() if resume else None
    if resume and ckpt is None:
        log("no complete checkpoint yet: starting from the beginning")
    start_step = int(ckpt.name.split("-")[1]) if ckpt else 0
    if writer:
        dropped = run.truncate_metrics(start_step if ckpt else -1)
        if dropped:
            log(f"dropped {dropped} metrics line(s) past step {start_step} (they will be recomputed)")
    prev = [r for r in run.metrics() if r.get("elapsed_s") is not None and r.get("step", 0) <= start_step]
    return ResumePoint(ckpt, start_step, float(prev[-1]["elapsed_s"]) if prev else 0.0)
