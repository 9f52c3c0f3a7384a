"""Background jobs: one detached process per job, one job per device, a queue without a daemon.

``launch``/``submit``/``resume`` write a queue entry and call :func:`schedule`, which starts
the oldest queued job for every idle device as ``python -m engine.jobs RUN_DIR --kind K`` in
its own session (so it survives the UI or the CLI that started it). A finishing job calls
:func:`schedule` again, so the queue drains by itself. The device slots are files guarded by
an ``flock``; a slot whose pid is gone (SIGKILL, reboot) is reclaimed by the next
:func:`schedule` call (any launch, the CLI's ``runs list``, the UI's poll), so a crash cannot
wedge the queue.

A job entry point (``JOB_KINDS``) has the signature::

    def run(run: engine.runs.Run, params: dict, progress: engine.progress.Progress) -> None

It writes only inside ``run.path``. Returning means "completed"; raising
:class:`JobStopped` means "stopped"; any other exception means "failed" with a reason from
:func:`engine.train.failures.classify`. SIGTERM (graceful stop) raises JobStopped at once
unless the entry point called :func:`handles_stop` and polls :func:`stop_requested`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

from engine import atomic
from engine.errors import MedtuneError
from engine.models.registry import resolve_model
from engine.runs import Run, create_run, now_iso, pid_alive
from engine.workspace import REPO_ROOT, Workspace

JOB_KINDS = {
    "train": "engine.train.job:run",
    "evaluate": "engine.eval.job:run",
    "export": "engine.export.job:run",
}


class JobStopped(Exception):
    """Raised inside a job when a graceful stop was requested."""


# ---- queue files ----------------------------------------------------------------------------
def _jobs_dir(workspace: Workspace) -> Path:
    d = workspace.runs / ".jobs"
    (d / "queue").mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def _locked(workspace: Workspace) -> Iterator[Path]:
    d = _jobs_dir(workspace)
    with open(d / "lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released by the kernel if the holder dies
        try:
            yield d
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
            import torch

            _DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
        except Exception:  # noqa: BLE001 - no torch: the job itself will report it
            _DEVICE = "cpu"
    return _DEVICE


def _enqueue(run: Run, kind: str, params: dict[str, Any]) -> None:
    if kind not in JOB_KINDS:
        raise MedtuneError(f"Unknown job kind '{kind}' (known: {', '.join(JOB_KINDS)}).")
    with _locked(Workspace(run.path.parent.parent)) as d:
        _enqueue_locked(d, run, kind, params)


def _enqueue_locked(d: Path, run: Run, kind: str, params: dict[str, Any], not_before: float = 0.0,
                    **status: Any) -> None:
    """Queue a job (the caller holds the lock). ``not_before`` delays it (auto-resume back-off)."""
    for q in (d / "queue").glob("*.json"):
        entry = _read(q)
        if entry.get("run") == run.id and entry.get("kind") == kind:
            raise MedtuneError(f"A {kind} job for {run.id} is already queued.")
    st = run.status(kind)
    if st.get("state") == "running":
        raise MedtuneError(f"A {kind} job for {run.id} is already running.",
                           hint="Stop it first, or wait for it to finish.")
    atomic.write_json(run.path / "jobs" / f"{kind}.params.json", params)
    fields = dict(state="queued", queued=now_iso(), kind=kind, pid=None, pid_started=None, reason=None,
                  error=None, hint=None, ended=None, stop_requested=None, message="queued")
    fields.update(status)
    run.write_status(kind, **fields)
    entry = {"run": run.id, "kind": kind, "device": _device_of(run), "queued": time.time(),
             "not_before": not_before}
    atomic.write_json(d / "queue" / f"{time.time_ns()}-{run.id}-{kind}.json", entry)


#: First auto-resume waits this long; each further attempt waits twice as long.
AUTO_RESUME_BASE_S = 10.0
#: Failures that a retry cannot fix: auto-resume leaves these alone.
_NO_RETRY = {"config error", "data error", "missing dependency", "CUDA required", "out of memory",
             "model error", "path error", "disk full"}


def _maybe_auto_resume(d: Path, run: Run, reason: str) -> bool:
    """After a crash, re-queue the training job with exponential back-off when the run's
    config asks for it (train.auto_resume = max attempts). Caller holds the lock."""
    if reason in _NO_RETRY:
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


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def schedule(workspace: Workspace) -> list[Run]:
    """Reclaim slots of dead jobs, then start the oldest queued job on every idle device.

    Safe to call often and from anywhere (UI poll, CLI, finishing job); returns the runs
    it started.
    """
    started: list[Run] = []
    with _locked(workspace) as d:
        busy = set()
        for slot in d.glob("active-*.json"):
            info = _read(slot)
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
                    _maybe_auto_resume(d, run, "killed")
            if kind == "export":  # a killed export's half-written folders: nothing reads them
                atomic.sweep_leftovers(run.export_dir)
        for q in sorted((d / "queue").glob("*.json")):
            entry = _read(q)
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
    import psutil

    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        created = time.time()
    return proc.pid, created


# ---- public API ---------------------------------------------------------------------------
def launch(workspace: Workspace, cfg, name: str | None = None) -> Run:
    """Create a run folder for ``cfg`` and start (or queue) its training job."""
    cfg.check(workspace)
    run = create_run(workspace, cfg, name)
    try:
        _enqueue(run, "train", {"resume": False})
    except BaseException as err:
        run.write_status("train", state="failed", reason="error", error=f"could not queue the job: {err}")
        raise
    schedule(workspace)
    return run


def submit(run: Run, kind: str, params: dict | None = None) -> None:
    """Queue an evaluate/export (or train) job on an existing run, on the same device queue."""
    _enqueue(run, kind, dict(params or {}))
    schedule(Workspace(run.path.parent.parent))


def resume(run: Run) -> None:
    """Continue a stopped or failed training run from its latest checkpoint."""
    st = run.status("train")
    if st.get("state") in ("queued", "running"):
        raise MedtuneError(f"{run.id} is {st['state']}; only a stopped or failed run can be resumed.")
    if st.get("state") == "completed":
        raise MedtuneError(f"{run.id} already completed.")
    _enqueue(run, "train", {"resume": True})
    schedule(Workspace(run.path.parent.parent))


def stop(run: Run, force: bool = False, kind: str = "train") -> None:
    """Stop a queued or running job. Graceful: the job finishes its step, saves a checkpoint
    and ends "stopped". Force: SIGKILL the job's process group; ends "stopped (forced)"."""
    workspace = Workspace(run.path.parent.parent)
    st = run.status(kind)
    state = st.get("state")
    if state == "queued":
        with _locked(workspace) as d:
            for q in (d / "queue").glob("*.json"):
                e = _read(q)
                if e.get("run") == run.id and e.get("kind") == kind:
                    q.unlink(missing_ok=True)
            run.write_status(kind, state="stopped", reason="cancelled", ended=now_iso())
        return
    if state != "running":
        raise MedtuneError(f"{run.id} is not running (state: {st.get('label', 'unknown')}).")
    pid = int(st["pid"])
    if not force:
        run.write_status(kind, stop_requested=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.time() + 10
    while pid_alive(pid, st.get("pid_started")) and time.time() < deadline:
        time.sleep(0.05)
    run.write_status(kind, state="stopped", reason="forced", ended=now_iso(),
                     hint="Resume continues from the last checkpoint.")
    schedule(workspace)


def wait(run: Run, kind: str = "train", timeout: float | None = None, poll: float = 0.5) -> dict[str, Any]:
    """Block until the job is no longer queued/running (also drives the queue); returns status."""
    workspace = Workspace(run.path.parent.parent)
    end = None if timeout is None else time.time() + timeout
    while True:
        st = run.status(kind)
        if st.get("state") not in ("queued", "running"):
            return st
        if end is not None and time.time() > end:
            raise TimeoutError(f"{run.id} still {st.get('state')} after {timeout}s")
        if st.get("state") == "queued":
            schedule(workspace)
        time.sleep(poll)


# ---- inside the job process ------------------------------------------------------------------
_STOP = threading.Event()
_HANDLES_STOP = False


def stop_requested() -> bool:
    """True once a graceful stop (SIGTERM) has been asked for."""
    return _STOP.is_set()


def handles_stop() -> None:
    """Called by an entry point that polls stop_requested() and stops cleanly by itself."""
    global _HANDLES_STOP
    _HANDLES_STOP = True


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001
    _STOP.set()
    if not _HANDLES_STOP:
        raise JobStopped("stop requested")


def _progress_writer(run: Run, kind: str):
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


def _say(msg: str) -> None:
    """A [medtune] line in job.log; a full disk must not turn logging into a second failure."""
    with contextlib.suppress(OSError):
        print(f"[medtune] {msg}", flush=True)


def _resolve(kind: str):
    mod, _, fn = JOB_KINDS[kind].partition(":")
    return getattr(importlib.import_module(mod), fn)


def run_job(run_dir: str | Path, kind: str) -> int:
    """Body of ``python -m engine.jobs``: run one job and record how it ended."""
    from engine.train.failures import classify, make_room, write_failed_status

    run = Run(Path(run_dir).resolve())
    workspace = Workspace(run.path.parent.parent)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if os.environ.get("RANK", "0") != "0":
        # a non-zero rank under `accelerate launch -m engine.jobs RUN_DIR`: train, but leave
        # the run folder's status and queue to rank 0
        _resolve(kind)(run, _read(run.path / "jobs" / f"{kind}.params.json"), lambda f, m: None)
        return 0
    import psutil

    me = psutil.Process()
    run.write_status(kind, state="running", pid=os.getpid(), pid_started=me.create_time(),
                     started=now_iso(), kind=kind, ended=None, error=None, hint=None, reason=None)
    print(f"[medtune] {now_iso()} {kind} job started for {run.id} (pid {os.getpid()})", flush=True)
    params = _read(run.path / "jobs" / f"{kind}.params.json")
    code = 0
    try:
        _resolve(kind)(run, params, _progress_writer(run, kind))
        run.write_status(kind, state="completed", progress=1.0, ended=now_iso(), stop_requested=None,
                         message="completed")
        print(f"[medtune] {now_iso()} {kind} job completed", flush=True)
    except JobStopped:
        run.write_status(kind, state="stopped", ended=now_iso(), stop_requested=None, message="stopped",
                         hint="Resume continues from the last checkpoint." if kind == "train" else None)
        print(f"[medtune] {now_iso()} {kind} job stopped", flush=True)
    except BaseException as exc:  # noqa: BLE001 - every failure must end in a readable state
        with contextlib.suppress(OSError):  # a full disk refuses job.log too
            traceback.print_exc()
        reason, error, hint = classify(exc, kind)
        if reason == "disk full":  # drop what was half-written, so the failure can be recorded
            with contextlib.suppress(Exception):
                make_room(run, kind, lambda m: _say(f"{now_iso()} {m}"))
        write_failed_status(run, kind, state="failed", reason=reason, error=error, hint=hint, ended=now_iso(),
                            message="failed")
        _say(f"{now_iso()} {kind} job failed ({reason}): {error}")
        code = 1
        if kind == "train":
            with contextlib.suppress(Exception), _locked(workspace) as d:
                if _maybe_auto_resume(d, run, reason):
                    print(f"[medtune] {run.raw_status().get('message')}", flush=True)
    finally:
        with _locked(workspace) as d:
            for slot in d.glob("active-*.json"):
                if _read(slot).get("pid") == os.getpid():
                    slot.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            schedule(workspace)
    return code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.jobs", description="Run one MedTune job (internal).")
    ap.add_argument("run_dir")
    ap.add_argument("--kind", default="train", choices=sorted(JOB_KINDS))
    args = ap.parse_args(argv)
    return run_job(args.run_dir, args.kind)


if __name__ == "__main__":
    # Run through the importable module, not this __main__ copy: job code imports
    # engine.jobs, and the stop flag and JobStopped must be the same objects for both.
    from engine.jobs import main as _main

    sys.exit(_main())
