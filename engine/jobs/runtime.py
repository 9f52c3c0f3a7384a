"""The job process, ``python -m engine.jobs RUN_DIR --kind K``: run one job, record how it ended.

The kind's entry point (``JOB_KINDS``) gets a :class:`engine.runs.JobContext`. Returning
means "completed"; raising :class:`JobStopped` means "stopped"; any other exception means
"failed" with a reason from :func:`engine.jobs.reasons.classify`. From the hand-over on, this
process alone writes the job's status: progress, and how it ended.

A stop request is the file ``Run.stop_path(kind)`` and then SIGTERM (engine.jobs.queue.stop);
``ctx.should_stop()`` sees either, and SIGTERM interrupts an entry point that never asks. Inside a
Slurm job, SIGUSR1 (sent before the time limit, engine.launch.sbatch) stops the same way and then
requeues the job, which resumes the run when Slurm starts it again.

``--worker``: one rank of a multi-process launch (engine.launch.processes supervises them). A
worker trains its share and reports its outcome in ``jobs/ranks/<rank>.json``; the supervisor,
itself the job process above, writes the run's status. A worker's SIGTERM comes from its
launcher tearing the launch down, so it ends the worker at once.
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

from engine.errors import MedtuneError
from engine.jobs.queue import JOB_KINDS, locked, maybe_auto_resume, read_json, schedule
from engine.jobs.reasons import DISK_ERRNOS, classify
from engine.launch import ranks, slurm
from engine.launch.processes import describe
from engine.progress import Progress
from engine.runs import HOST, LOG, JobContext, JobStopped, Reason, Run, now_iso


def _log_to_stdout(tag: str = "medtune") -> None:
    """job.log is this process's stdout: every job log line goes there as "[medtune] HH:MM:SS ..."
    (logging swallows a write that fails, so a full disk cannot make logging a second failure)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"[{tag}] %(asctime)s %(message)s", "%H:%M:%S"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False


class _Signals:
    """The stop requests that come as signals: SIGTERM (a stop), and inside a Slurm job SIGUSR1,
    which the batch script asks for shortly before the time limit (engine.launch.sbatch): stop at
    a checkpoint, then go back in Slurm's queue (``requeue``)."""

    def __init__(self) -> None:
        self.signalled, self.asked, self.requeue = threading.Event(), threading.Event(), threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        if os.environ.get("SLURM_JOB_ID"):
            signal.signal(signal.SIGUSR1, self._on_signal)

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        if signum == getattr(signal, "SIGUSR1", None):
            self.requeue.set()
        self.signalled.set()
        if not self.asked.is_set():
            raise JobStopped("stop requested")


def _stop_requests(run: Run, kind: str, signals: _Signals) -> Callable[[], bool]:
    """Install the signal handlers and return the job's ``should_stop``."""
    signals.install()

    def should_stop() -> bool:
        signals.asked.set()  # the entry point polls: from now on it ends the job at a safe point itself
        return signals.signalled.is_set() or run.stop_path(kind).exists()

    return should_stop


class _Terminated(Exception):
    """A worker got SIGTERM: its launcher is bringing the launch down (another rank failed, or
    Slurm ended the job). A stop the user asked for comes as the stop file instead."""


def _read_params(run: Run, kind: str) -> dict[str, Any]:
    params = read_json(run.path / "jobs" / f"{kind}.params.json")
    if kind == "train" and int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0:
        params["resume"] = True  # Slurm requeued the job (preemption, time limit): continue the run
    return params


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


def run_worker(run_dir: str | Path, kind: str) -> int:
    """One rank of a multi-process launch (``--worker``, started by engine.launch): train its
    share, report its outcome in ``jobs/ranks/<rank>.json``; the supervisor writes the status."""
    rank, world = int(os.environ.get("RANK") or 0), int(os.environ.get("WORLD_SIZE") or 1)
    _log_to_stdout(f"medtune rank {rank}")
    run = Run(Path(run_dir).resolve())
    ranks.report(run, rank, host=HOST, pid=os.getpid(), pid_started=psutil.Process().create_time(),
                 started=now_iso(), outcome=None)

    def on_sigterm(signum, frame) -> None:  # noqa: ARG001
        raise _Terminated("terminated by the launcher")

    signal.signal(signal.SIGTERM, on_sigterm)
    ctx = JobContext(run, _read_params(run, kind),
                     _progress_writer(run, kind) if rank == 0 else (lambda fraction, message: None),
                     LOG.info if rank == 0 else (lambda message: None),
                     lambda: run.stop_path(kind).exists(), worker=True, rank=rank, world_size=world)
    try:
        _entry(kind)(ctx)
        ranks.report(run, rank, outcome="completed", ended=now_iso())
        return 0
    except JobStopped:
        ranks.report(run, rank, outcome="stopped", ended=now_iso())
        return 0
    except _Terminated:
        ranks.report(run, rank, outcome="terminated", ended=now_iso())
        LOG.info("terminated by the launcher")
        return 143
    except BaseException as exc:  # noqa: BLE001 - the supervisor reads the reason
        reason, error, hint = classify(exc, kind)
        ranks.report(run, rank, outcome="failed", reason=reason, error=error, hint=hint, ended=now_iso(),
                     peer_lost=ranks.peer_lost(f"{type(exc).__name__}: {exc}"))
        LOG.error(f"rank {rank} failed ({reason}): {error}", exc_info=exc)
        return 1


def run_job(run_dir: str | Path, kind: str) -> int:
    """Run one job and record how it ended; returns the exit code (1: failed)."""
    _log_to_stdout()
    run = Run(Path(run_dir).resolve())
    signals = _Signals()
    should_stop = _stop_requests(run, kind, signals)
    params = _read_params(run, kind)
    code = 0
    try:
        with locked(run.workspace):
            pass  # schedule() records the hand-over (running, pid) under the lock: let it go first
        slurm_job = os.environ.get("SLURM_JOB_ID")
        run.write_status(kind, state="running", pid=os.getpid(), pid_started=psutil.Process().create_time(),
                         host=HOST, started=now_iso(), kind=kind, ended=None, error=None, hint=None, reason=None,
                         **(_slurm_fields(run, slurm_job) if slurm_job else {}))
        LOG.info(f"{kind} job started for {run.id} (pid {os.getpid()} on {HOST}"
                 f"{f', Slurm job {slurm_job}' if slurm_job else ''}, {now_iso()})")
        _entry(kind)(JobContext(run, params, _progress_writer(run, kind), LOG.info, should_stop))
        run.write_status(kind, state="completed", progress=1.0, ended=now_iso(), message="completed")
        LOG.info(f"{kind} job completed")
    except JobStopped:
        if signals.requeue.is_set() and kind == "train" and _requeue(run):
            return 0
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


def _slurm_fields(run: Run, job_id: str) -> dict[str, Any]:
    """What a job started by Slurm adds to its status: the nodes it got, in the runs table's words."""
    nodes = os.environ.get("SLURM_JOB_NODELIST")
    try:
        where = describe(run.config(), job_id, nodes)
    except MedtuneError:
        where = None
    return {"slurm_nodes": nodes, "slurm_reason": None, "where": where}


def _requeue(run: Run) -> bool:
    """Slurm warned of the time limit and the run checkpointed: put the job back in Slurm's queue
    (it resumes from that checkpoint when it runs again). False when the run does not want it."""
    try:
        wanted = run.config().launch.requeue
    except MedtuneError:
        wanted = False
    if not wanted:
        return False
    run.write_status("train", state="queued", message="checkpointed before the Slurm time limit; back in the queue",
                     pid=None, pid_started=None, host=None)
    # answered now: requeue ends this process, and a request left behind would stop the next start
    run.stop_path("train").unlink(missing_ok=True)
    LOG.info("checkpointed before the time limit: requeueing the Slurm job")
    slurm.requeue(os.environ["SLURM_JOB_ID"])
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.jobs", description="Run one MedTune job (internal).")
    ap.add_argument("run_dir")
    ap.add_argument("--kind", default="train", choices=sorted(JOB_KINDS))
    ap.add_argument("--worker", action="store_true",
                    help="one rank of a multi-process launch (engine.launch starts these)")
    args = ap.parse_args(argv)
    return (run_worker if args.worker else run_job)(args.run_dir, args.kind)
