"""Runs on a Slurm cluster: submit, follow, stop. Slurm is the scheduler here; this module only
talks to it (engine.launch.slurm) and keeps the run folder's status in step with it.

A submitted job has a slot file, ``runs/.jobs/slurm-<run>-<kind>.json`` (job id), until it ends.
Each :func:`engine.jobs.queue.schedule` call (the UI's poll, the CLI's ``runs list``, ``wait``)
asks Slurm about every slotted job at once and merges its answer into the run's status, where
no job process can write it: *pending* with Slurm's reason while it waits, and the end of a job
that ended without its supervisor recording one (cancelled while pending, killed at the time
limit, a node that failed). While the supervisor runs, it alone writes the status, as on this
machine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from engine import atomic
from engine.errors import MedtuneError
from engine.launch import sbatch, slurm
from engine.launch.processes import describe
from engine.runs import ACTIVE, Reason, Run, now_iso

#: Slurm's end states, as the run records them: (state, reason, what happened).
_ENDS: dict[str, tuple[str, Reason, str]] = {
    "CANCELLED": ("stopped", Reason.CANCELLED, "Slurm cancelled the job (scancel) before it could report"),
    "TIMEOUT": ("failed", Reason.KILLED, "Slurm ended the job at its time limit (launch.time_limit)"),
    "NODE_FAIL": ("failed", Reason.KILLED, "a node of the job failed"),
    "OUT_OF_MEMORY": ("failed", Reason.MEMORY, "Slurm killed the job for using more memory than it asked for"),
    "PREEMPTED": ("failed", Reason.KILLED, "the job was preempted and not requeued"),
    "BOOT_FAIL": ("failed", Reason.KILLED, "a node of the job did not boot"),
    "DEADLINE": ("failed", Reason.KILLED, "the job reached its deadline"),
    "FAILED": ("failed", Reason.KILLED, "the batch script failed before the job could report"),
    "COMPLETED": ("failed", Reason.KILLED, "the batch script ended without the job reporting"),
}


def _slot(d: Path, run: Run, kind: str) -> Path:
    return d / f"slurm-{run.id}-{kind}.json"


def submit(d: Path, run: Run, kind: str, params: dict[str, Any], env: dict[str, str]) -> str:
    """sbatch the run's job (the caller holds the queue lock and checked the run is not active);
    returns Slurm's job id. A refusal (a partition gone since preflight) fails the submit, with
    sbatch's words."""
    cfg = run.config()
    script = sbatch.write(run, cfg)
    atomic.write_json(run.path / "jobs" / f"{kind}.params.json", params)
    run.stop_path(kind).unlink(missing_ok=True)
    # an app that itself runs inside a Slurm job must not hand that job's variables to the new one
    env = {k: v for k, v in env.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    job_id = slurm.submit(script, cwd=run.path, env=env, extra_args=sbatch.sbatch_args(run))
    run.write_status(kind, state="queued", queued=now_iso(), kind=kind, pid=None, pid_started=None, host=None,
                     reason=None, error=None, hint=None, ended=None, message="submitted to Slurm",
                     slurm_job_id=job_id, slurm_reason=None, slurm_nodes=None, where=describe(cfg, job_id))
    atomic.write_json(_slot(d, run, kind), {"run": run.id, "kind": kind, "job_id": job_id, "submitted": time.time()})
    return job_id


def submitted(d: Path, run: Run, kind: str) -> bool:
    """Whether a Slurm job of this run's ``kind`` is still in Slurm's hands (its slot is there)."""
    return _slot(d, run, kind).exists()


def is_slurm(run: Run, kind: str = "train") -> bool:
    return bool(run.raw_status(kind).get("slurm_job_id"))


def poll(d: Path, runs_dir: Path) -> None:
    """Merge Slurm's view of every slotted job into its run's status (caller holds the lock)."""
    slots = [(p, _read(p)) for p in d.glob("slurm-*.json")]
    slots = [(p, s) for p, s in slots if s.get("job_id")]
    if not slots:
        return
    try:
        known = slurm.jobs(s["job_id"] for _, s in slots)
    except MedtuneError:
        return  # Slurm unreachable now: the statuses stand until it answers again
    for path, s in slots:
        run = Run(runs_dir / str(s.get("run", "")))
        kind = s.get("kind", "train")
        st = run.raw_status(kind)
        if st.get("slurm_job_id") != s["job_id"]:
            path.unlink(missing_ok=True)  # resubmitted since: a newer slot follows it
            continue
        job = known.get(s["job_id"])
        if job is None:
            if time.time() - float(s.get("submitted") or 0) < 30:
                continue  # just submitted: squeue may not list it for a moment
            _ended(run, kind, st, "FORGOTTEN")
            path.unlink(missing_ok=True)
            continue
        if not job.finished:
            if job.state == "PENDING" and st.get("state") == "queued":
                why = slurm.hold_reason_text(job.reason) if job.reason else "waiting"
                if st.get("slurm_reason") != why:
                    run.write_status(kind, slurm_reason=why, message=f"pending (Slurm: {why})")
            if job.nodes and st.get("slurm_nodes") != job.nodes:
                try:
                    where = describe(run.config(), job.id, job.nodes)
                except MedtuneError:
                    where = None
                run.write_status(kind, slurm_nodes=job.nodes, where=where)
            continue
        _ended(run, kind, st, job.state)
        path.unlink(missing_ok=True)


def _ended(run: Run, kind: str, st: dict[str, Any], slurm_state: str) -> None:
    """The job is over in Slurm's eyes; record an end if its supervisor recorded none."""
    if st.get("state") not in ACTIVE:
        return
    state, reason, what = _ENDS.get(slurm_state, ("failed", Reason.KILLED,
                                                  f"Slurm no longer knows the job ({slurm_state.lower()})"))
    if state == "stopped" and st.get("state") == "running":
        reason = Reason.FORCED
    run.write_status(kind, state=state, reason=reason, ended=now_iso(), message=state,
                     error=None if state == "stopped" else f"Slurm job {st.get('slurm_job_id')}: {what}.",
                     hint="Resume continues from the last checkpoint." if kind == "train" else None)


def stop(run: Run, kind: str, force: bool) -> None:
    """Stop a Slurm run: a pending job is cancelled; a running one gets the stop file and SIGTERM
    on its batch step (its supervisor, which has every rank checkpoint and end); ``force``
    cancels it outright. The job records "stopped" itself, except where nothing runs to."""
    st = run.raw_status(kind)
    job_id = st.get("slurm_job_id")
    if st.get("state") == "queued" or force:
        slurm.cancel(job_id)
        run.write_status(kind, state="stopped", reason=Reason.CANCELLED if st.get("state") == "queued" else
                         Reason.FORCED, ended=now_iso(), message="stopped",
                         hint="Resume continues from the last checkpoint." if kind == "train" else None)
        return
    atomic.write_json(run.stop_path(kind), {"requested": now_iso()})
    slurm.cancel(job_id, signal="TERM", batch_only=True)


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
