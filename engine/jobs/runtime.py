"""The job process, ``python -m engine.jobs RUN_DIR --kind K``: run one job, record how it ended.

The kind's entry point (``JOB_KINDS``) gets a :class:`engine.runs.JobContext`. Returning
means "completed"; raising :class:`JobStopped` means "stopped"; any other exception means
"failed" with a reason from :func:`engine.jobs.reasons.classify`. From the hand-over on, this
process alone writes the job's status: progress, and how it ended.

A stop request is the file ``Run.stop_path(kind)`` and then SIGTERM (engine.jobs.queue.stop);
``ctx.should_stop()`` sees either, and SIGTERM interrupts an entry point that never asks.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psutil

from engine.jobs.queue import JOB_KINDS, locked, maybe_auto_resume, read_json, schedule
from engine.jobs.reasons import DISK_ERRNOS, classify
from engine.progress import Progress
from engine.runs import LOG, JobContext, JobStopped, Reason, Run, now_iso


def _log_to_stdout() -> None:
    """job.log is this process's stdout: every job log line goes there as "[medtune] HH:MM:SS ..."
    (logging swallows a write that fails, so a full disk cannot make logging a second failure)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[medtune] %(asctime)s %(message)s", "%H:%M:%S"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False


def _stop_requests(run: Run, kind: str) -> Callable[[], bool]:
    """Install the SIGTERM handler and return the job's ``should_stop``."""
    signalled, asked = threading.Event(), threading.Event()

    def should_stop() -> bool:
        asked.set()  # the entry point polls: from now on it ends the job at a safe point itself
        return signalled.is_set() or run.stop_path(kind).exists()

    def on_sigterm(signum, frame) -> None:  # noqa: ARG001
        signalled.set()
        if not asked.is_set():
            raise JobStopped("stop requested")

    signal.signal(signal.SIGTERM, on_sigterm)
    return should_stop


def _progress_writer(run: Run, kind: str) -> Progress:
    last = [0.0]

    def progress(fraction: float | None, message: str) -> None:
        t = time.time()
        if t - last[0] < 1.0 and not (fraction is not None and fraction >= 1.0):
            return  # status.json is rewritten at most once a second
        last[0] = t
        fields: dict[str, Any] = {"message": message}
        if fraction is not None:
            fields["progress"] = round(max(0.0, min(1.0, fraction)), 4)
        run.write_status(kind, **fields)

    return progress


def write_failed_status(run: Run, kind: str, **fields: Any) -> dict[str, Any]:
    """``run.write_status`` that still works on a full disk: when the atomic write (a new temp
    file) gets no space, status.json is rewritten in place, in the blocks it already owns."""
    try:
        return run.write_status(kind, **fields)
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            raise
    st = {**run.raw_status(kind), **fields}
    st = {k: v for k, v in st.items() if v is not None}
    st["updated"] = now_iso()
    data = (json.dumps(st, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
    with open(run.status_path(kind), "r+b") as f:
        f.truncate(0)  # frees the file's blocks, which the write below takes back
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return st


def _entry(kind: str) -> Callable[[JobContext], None]:
    mod, _, fn = JOB_KINDS[kind].partition(":")
    return getattr(importlib.import_module(mod), fn)


def run_job(run_dir: str | Path, kind: str) -> int:
    """Run one job and record how it ended; returns the exit code (1: failed)."""
    _log_to_stdout()
    run = Run(Path(run_dir).resolve())
    should_stop = _stop_requests(run, kind)
    params = read_json(run.path / "jobs" / f"{kind}.params.json")
    if os.environ.get("RANK", "0") != "0":
        # a non-zero rank under `accelerate launch -m engine.jobs RUN_DIR`: train, but leave
        # the run folder's status and queue to rank 0
        _entry(kind)(JobContext(run, params, should_stop=should_stop))
        return 0
    code = 0
    try:
        with locked(run.workspace):
            pass  # schedule() records the hand-over (running, pid) under the lock: let it go first
        run.write_status(kind, state="running", pid=os.getpid(), pid_started=psutil.Process().create_time(),
                         started=now_iso(), kind=kind, ended=None, error=None, hint=None, reason=None)
        LOG.info(f"{kind} job started for {run.id} (pid {os.getpid()}, {now_iso()})")
        _entry(kind)(JobContext(run, params, _progress_writer(run, kind), LOG.info, should_stop))
        run.write_status(kind, state="completed", progress=1.0, ended=now_iso(), message="completed")
        LOG.info(f"{kind} job completed")
    except JobStopped:
        run.write_status(kind, state="stopped", ended=now_iso(), message="stopped",
                         hint="Resume continues from the last checkpoint." if kind == "train" else None)
        LOG.info(f"{kind} job stopped")
    except BaseException as exc:  # noqa: BLE001 - every failure must end in a readable state
        reason, error, hint = classify(exc, kind)
        if reason == Reason.DISK and kind == "train":
            # drop the half-written checkpoint, so that the failure can be recorded (an export
            # builds under .partial-* names that engine.atomic removes by itself)
            with contextlib.suppress(Exception):
                run.remove_incomplete_checkpoints(LOG.info)
        write_failed_status(run, kind, state="failed", reason=reason, error=error, hint=hint, ended=now_iso(),
                            message="failed")
        LOG.error(f"{kind} job failed ({reason}): {error}", exc_info=exc)
        code = 1
        if kind == "train":
            with contextlib.suppress(Exception), locked(run.workspace) as d:
                if maybe_auto_resume(d, run, reason):
                    LOG.info(run.raw_status().get("message"))
    finally:
        with locked(run.workspace) as d:
            for slot in d.glob("active-*.json"):
                if read_json(slot).get("pid") == os.getpid():
                    slot.unlink(missing_ok=True)
        run.stop_path(kind).unlink(missing_ok=True)  # answered
        with contextlib.suppress(Exception):
            schedule(run.workspace)
    return code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.jobs", description="Run one MedTune job (internal).")
    ap.add_argument("run_dir")
    ap.add_argument("--kind", default="train", choices=sorted(JOB_KINDS))
    args = ap.parse_args(argv)
    return run_job(args.run_dir, args.kind)
