"""The queue: one detached process per job, one job per device, no daemon.

``launch``/``submit``/``resume`` write a queue entry and call :func:`schedule`, which starts
the oldest queued job for every idle device as ``python -m engine.jobs RUN_DIR --kind K`` in
its own session (so it survives the UI or the CLI that started it). A finishing job calls
:func:`schedule` again, so the queue drains by itself. The device slots are files guarded by
an ``flock``; a slot whose pid is gone (SIGKILL, reboot) is reclaimed by the next
:func:`schedule` call (any launch, the CLI's ``runs list``, the UI's poll), so a crash cannot
wedge the queue.

The queue writes a job's status only where no job process is there to: queueing it, handing
it to its new process (under the lock, which that process waits for before its own first
write), cancelling it while queued, and recording it dead or force-killed (under the lock
too). Everything else, a graceful stop included, the job process records itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import psutil

from engine import atomic, preflight
from engine.errors import MedtuneError
from engine.jobs import cluster
from engine.jobs.reasons import NO_RETRY
from engine.launch.processes import describe
from engine.models.loader import pick_device
from engine.models.registry import resolve_model
from engine.plan import LIVE_MEMORY_ENV
from engine.runs import ACTIVE, Reason, Run, create_run, now_iso, pid_alive, rehearsal_words
from engine.workspace import REPO_ROOT, Workspace

#: Each kind's entry point, ``run(ctx: engine.runs.JobContext)``, by name: the queue imports
#: no job code; the job process imports the one entry point it runs (engine.jobs.runtime).
JOB_KINDS = {
    "train": "engine.train.job:run",
    "evaluate": "engine.eval.job:run",
    "export": "engine.export.job:run",
}
#: First auto-resume waits this long; each further attempt waits twice as long.
AUTO_RESUME_BASE_S = 10.0


# ---- queue files ----------------------------------------------------------------------------
@contextlib.contextmanager
def locked(workspace: Workspace) -> Iterator[Path]:
    """Hold the queue's lock; yields the queue folder. Not re-entrant: one holder per process."""
    d = workspace.runs / ".jobs"
    (d / "queue").mkdir(parents=True, exist_ok=True)
    with open(d / "lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released by the kernel if the holder dies
        try:
            yield d
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


_DEVICE: str | None = None


def _device_of(run: Run) -> str:
    """The device slot a run's jobs occupy: 'cuda' or 'cpu' (one job at a time on each)."""
    global _DEVICE
    try:
        want = run.config().train.device
    except MedtuneError:
        want = "auto"
    if want != "auto":
        return want
    if _DEVICE is None:
        try:
            _DEVICE = pick_device("auto")  # imports torch: only when a run leaves the device open
        except Exception:  # noqa: BLE001 - no torch: the job itself will report it
            _DEVICE = "cpu"
    return _DEVICE


def _queued(d: Path, run: Run, kind: str) -> list[Path]:
    """The queue entries of ``run``'s ``kind`` job (the caller holds the lock)."""
    entries = ((q, read_json(q)) for q in (d / "queue").glob("*.json"))
    return [q for q, e in entries if (e.get("run"), e.get("kind")) == (run.id, kind)]


def _where(run: Run, kind: str) -> str:
    """Where the job will run, in words for the runs table (engine.launch.processes.describe)."""
    try:
        cfg = run.config()
    except MedtuneError:
        return "this machine"
    if kind != "train":
        return "this machine"
    spec = run.rehearsal()
    return describe(cfg) + (f" ({rehearsal_words(spec)})" if spec else "")


def _enqueue(run: Run, kind: str, params: dict[str, Any]) -> None:
    if kind not in JOB_KINDS:
        raise MedtuneError(f"Unknown job kind '{kind}' (known: {', '.join(JOB_KINDS)}).")
    with locked(run.workspace) as d:
        _enqueue_locked(d, run, kind, params)


def _enqueue_locked(d: Path, run: Run, kind: str, params: dict[str, Any], not_before: float = 0.0,
                    **status: Any) -> None:
    """Queue a job (the caller holds the lock). ``not_before`` delays it (auto-resume back-off)."""
    if _queued(d, run, kind):
        raise MedtuneError(f"A {kind} job for {run.id} is already queued.")
    st = run.status(kind)
    if st.get("state") == "running":
        raise MedtuneError(f"A {kind} job for {run.id} is already running.",
                           hint="Stop it first, or wait for it to finish.")
    atomic.write_json(run.path / "jobs" / f"{kind}.params.json", params)
    run.stop_path(kind).unlink(missing_ok=True)  # a request that came after the last job ended
    fields = dict(state="queued", queued=now_iso(), kind=kind, pid=None, pid_started=None, reason=None,
                  error=None, hint=None, ended=None, message="queued", where=_where(run, kind))
    fields.update(status)
    run.write_status(kind, **fields)
    entry = {"run": run.id, "kind": kind, "device": _device_of(run), "queued": time.time(),
             "not_before": not_before}
    atomic.write_json(d / "queue" / f"{time.time_ns()}-{run.id}-{kind}.json", entry)


def maybe_auto_resume(d: Path, run: Run, reason: Reason) -> bool:
    """After a crash, re-queue the training job with exponential back-off when the run's
    config asks for it (train.auto_resume = max attempts). Caller holds the lock."""
    if reason in NO_RETRY:
        return False
    try:
        limit = run.config().train.auto_resume
    except MedtuneError:
        return False
    st = run.raw_status("train")
    done = int(st.get("auto_resumes", 0))
    if done >= limit:
        return False
    delay = AUTO_RESUME_BASE_S * 2 ** done
    _enqueue_locked(d, run, "train", {"resume": True}, not_before=time.time() + delay, auto_resumes=done + 1,
                    message=f"auto-resume {done + 1}/{limit} in {delay:.0f}s after: {st.get('error', reason)}")
    return True


def schedule(workspace: Workspace) -> list[Run]:
    """Reclaim slots of dead jobs, then start the oldest queued job on every idle device.

    Safe to call often and from anywhere (UI poll, CLI, finishing job); returns the runs
    it started.
    """
    started: list[Run] = []
    with locked(workspace) as d:
        cluster.poll(d, workspace.runs)
        busy = set()
        for slot in d.glob("active-*.json"):
            info = read_json(slot)
            if pid_alive(info.get("pid"), info.get("pid_started")):
                busy.add(info.get("device"))
                continue
            slot.unlink(missing_ok=True)
            run = Run(workspace.runs / str(info.get("run", "")))
            kind = info.get("kind", "train")
            raw = run.raw_status(kind)
            if raw.get("state") == "running" and raw.get("pid") == info.get("pid"):
                # persist what Run.status() already shows, so the record survives
                run.write_status(kind, **{k: v for k, v in run.status(kind).items() if k != "label"},
                                 ended=now_iso())
                if kind == "train":
                    maybe_auto_resume(d, run, Reason.KILLED)
            if kind == "export":  # a killed export's half-written folders: nothing reads them
                atomic.sweep_leftovers(run.export_dir)
        for q in sorted((d / "queue").glob("*.json")):
            entry = read_json(q)
            run = Run(workspace.runs / str(entry.get("run", "")))
            if not entry or not run.config_path.is_file():
                q.unlink(missing_ok=True)
                continue
            device = entry.get("device", "cpu")
            if device in busy or float(entry.get("not_before") or 0) > time.time():
                continue
            q.unlink()
            pid, pid_started = _spawn(run, entry["kind"])
            atomic.write_json(d / f"active-{device}.json", {
                "run": run.id, "kind": entry["kind"], "device": device, "pid": pid, "pid_started": pid_started})
            run.write_status(entry["kind"], state="running", pid=pid, pid_started=pid_started, started=now_iso())
            busy.add(device)
            started.append(run)
    return started


# Environment variables that hold credentials: a job gets none of them unless it needs it.
# (TOKENIZERS_PARALLELISM must pass: the words are matched whole, between underscores.)
_SECRET_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|CREDENTIALS?|AUTH)(_|$)", re.I)
_HUB_TOKENS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_WANDB_KEYS = ("WANDB_API_KEY",)


def _needs_hub_download(model: str) -> bool:
    """A model named as a Hub id (owner/name) that is neither a registry entry served from a
    package nor a local folder: its job may have to download (gated) weights."""
    try:
        spec = resolve_model(model)
    except MedtuneError:
        return False
    return not (spec.embedded or spec.local)


def job_environment(cfg, base: dict[str, str] | None = None) -> dict[str, str]:
    """What the job of the run config ``cfg`` inherits: the caller's environment (``base``)
    less every credential, except the Hub token for a model that comes from the Hub and the
    W&B key for a run reporting there. The login list (MEDTUNE_AUTH) never reaches a job;
    ``cfg`` None (a config the job will refuse by itself) gets no credential at all."""
    src = os.environ if base is None else base
    env = {k: v for k, v in src.items() if not _SECRET_NAME.search(k)}
    if cfg is not None:
        keep = (_HUB_TOKENS if _needs_hub_download(cfg.model.name) else ()) + (
            _WANDB_KEYS if cfg.train.report_to == "wandb" else ())
        env.update({k: src[k] for k in keep if k in src})
    return env


def _spawn(run: Run, kind: str) -> tuple[int, float]:
    try:
        cfg = run.config()
    except (MedtuneError, OSError):
        cfg = None
    env = job_environment(cfg)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if kind == "train" and run.rehearsal_path.is_file():
        # a rehearsal measures memory: glibc then returns freed memory at once, so the resident
        # size is the live tensors the planner predicts, not the heap's leftovers (engine.plan)
        env.update(LIVE_MEMORY_ENV)
    log = open(run.log_path, "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.jobs", str(run.path), "--kind", kind],
            cwd=str(REPO_ROOT), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: survives the UI, killable as a group
        )
    finally:
        log.close()
    # Reap it when it ends, so a long-lived UI process keeps no zombies around.
    threading.Thread(target=proc.wait, daemon=True).start()
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        created = time.time()
    return proc.pid, created


# ---- public API ---------------------------------------------------------------------------
def launch(workspace: Workspace, cfg, name: str | None = None, *, rehearsal: dict[str, Any] | None = None) -> Run:
    """Create a run folder for ``cfg`` and start (or queue) its training job; a run with
    ``launch.where: slurm`` is submitted to Slurm instead of this machine's queue.
    ``rehearsal``: the spec of a rehearsal (random weights at the model's real shapes,
    engine.train.rehearsal), written into the run before its job starts."""
    preflight.check(cfg, workspace)
    run = create_run(workspace, cfg, name)
    if rehearsal is not None:
        atomic.write_json(run.rehearsal_path, rehearsal)
    try:
        _start(run, "train", {"resume": False})
    except BaseException as err:
        run.write_status("train", state="failed", reason=Reason.ERROR, error=f"could not queue the job: {err}")
        raise
    schedule(workspace)
    return run


def _start(run: Run, kind: str, params: dict[str, Any]) -> None:
    """Queue the job here, or submit it to Slurm when the run trains there."""
    if kind == "train" and run.config().launch.where == "slurm":
        env = job_environment(run.config())
        with locked(run.workspace) as d:
            # (a job that recorded its end may still be finishing in Slurm: that one is no obstacle)
            state = run.status(kind).get("state")
            if state == "running" or (state == "queued" and cluster.submitted(d, run, kind)):
                raise MedtuneError(f"A {kind} job for {run.id} is already in Slurm's queue or running.",
                                   hint="Stop it first, or wait for it to finish.")
            cluster.submit(d, run, kind, params, env)
        return
    _enqueue(run, kind, params)


def submit(run: Run, kind: str, params: dict | None = None) -> None:
    """Queue an evaluate/export (or train) job on an existing run, on the same device queue."""
    _enqueue(run, kind, dict(params or {}))
    schedule(run.workspace)


def resume(run: Run) -> None:
    """Continue a stopped or failed training run from its latest checkpoint."""
    st = run.status("train")
    if st.get("state") in ACTIVE:
        raise MedtuneError(f"{run.id} is {st['state']}; only a stopped or failed run can be resumed.")
    if st.get("state") == "completed":
        raise MedtuneError(f"{run.id} already completed.")
    _start(run, "train", {"resume": True})
    schedule(run.workspace)


def stop(run: Run, force: bool = False, kind: str = "train") -> None:
    """Stop a queued or running job.

    Graceful: a request, ``Run.stop_path(kind)`` then SIGTERM, that the job answers itself
    (training finishes its step, saves a checkpoint and records "stopped"). A queued job is
    cancelled, and force SIGKILLs the job's process group; both are recorded here, since no
    job process is left to do it, and under the lock, so that a schedule() meanwhile neither
    starts the cancelled job nor takes the killed one for a crash (and auto-resumes it).
    """
    if kind == "train" and cluster.is_slurm(run) and run.status(kind).get("state") in ACTIVE:
        with locked(run.workspace):
            cluster.stop(run, kind, force)
        return
    with locked(run.workspace) as d:
        queued = _queued(d, run, kind)
        for q in queued:
            q.unlink(missing_ok=True)
        st = run.status(kind)
        if queued or st.get("state") == "queued":
            run.write_status(kind, state="stopped", reason=Reason.CANCELLED, ended=now_iso())
            return
        if st.get("state") != "running":
            raise MedtuneError(f"{run.id} is not running (state: {st.get('label', 'unknown')}).")
        pid = int(st["pid"])
        if not force:
            atomic.write_json(run.stop_path(kind), {"requested": now_iso()})
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.time() + 10
        while pid_alive(pid, st.get("pid_started")) and time.time() < deadline:
            time.sleep(0.05)
        run.write_status(kind, state="stopped", reason=Reason.FORCED, ended=now_iso(),
                         hint="Resume continues from the last checkpoint.")
    schedule(run.workspace)


def wait(run: Run, kind: str = "train", timeout: float | None = None, poll: float = 0.5) -> dict[str, Any]:
    """Block until the job is no longer queued/running (also drives the queue); returns status."""
    end = None if timeout is None else time.time() + timeout
    while True:
        st = run.status(kind)
        if st.get("state") not in ACTIVE:
            return st
        if end is not None and time.time() > end:
            raise TimeoutError(f"{run.id} still {st.get('state')} after {timeout}s")
        if st.get("state") == "queued" or st.get("slurm_job_id"):
            schedule(run.workspace)  # starts queued jobs; merges Slurm's view of a Slurm run
        time.sleep(poll)
