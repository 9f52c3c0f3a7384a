"""A run is a folder; this module reads it (and writes its status atomically).

Layout (see DESIGN.md)::

    <workspace>/runs/<run-id>/
      config.yaml     resolved RunConfig, written before any job starts
      status.json     the training job's state: queued|running|completed|failed|stopped, pid, ...
      jobs/<kind>.json  the same for other job kinds on this run (evaluate, export)
      metrics.jsonl   one JSON object per log step / evaluation
      job.log         the job processes' stdout+stderr
      checkpoints/    Trainer checkpoints (resume points)
      adapter/        final PEFT adapter;  model/ for a full fine-tune
      eval/  export/  written by the evaluate / export jobs
      jobs/<kind>.stop  a stop request for the running job (see engine.jobs.queue.stop)
      rehearsal.json  marks a rehearsal (random weights at real shapes) and holds its result
      jobs/ranks/<rank>.json  each training process's host, pid and outcome (several processes)
      launch/         accelerate.yaml and job.sbatch of a multi-process or Slurm run (engine.launch)

A running job's status has one writer, its process (engine.jobs.queue says where the queue
writes instead); the UI and CLI read the folder and ask for a stop, which is what lets a page
reload or a UI restart re-attach to a running job. :class:`JobContext`, :class:`JobStopped`
and :class:`Reason` live here, below both engine.jobs and the backends that share them.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Callable

import psutil
import yaml

from engine import atomic
from engine.config import RunConfig, load_config
from engine.errors import MedtuneError, PathError
from engine.progress import Progress
from engine.workspace import Workspace

#: The jobs' states that still hold (or wait for) a device.
ACTIVE = ("queued", "running")
#: This machine's name, as a job records it in its status ("host").
HOST = socket.gethostname()
#: The job log: engine.jobs.runtime sends it to stdout, which is job.log.
LOG = logging.getLogger("medtune.job")


class Reason(str, Enum):
    """Why a job ended failed or stopped: status.json's "reason", shown as "failed (disk full)".
    engine.jobs.reasons maps exceptions onto these (a MedtuneError onto the member named after
    its ``kind``, upper-cased) and says which a retry cannot fix."""

    __str__ = str.__str__  # the text itself in messages, on every Python version

    ERROR = "error"
    CONFIG = "config error"
    DATA = "data error"
    DEPENDENCY = "missing dependency"
    MODEL = "model error"
    PATH = "path error"
    CUDA = "CUDA required"
    DISK = "disk full"
    MEMORY = "out of memory"
    EXPORT = "export"  # an export's own check (engine.export.checks.ExportError)
    INTERRUPTED = "interrupted"
    KILLED = "killed"  # the process vanished without reporting (SIGKILL, OOM killer, reboot)
    CANCELLED = "cancelled"  # stopped while queued
    FORCED = "forced"  # stopped by SIGKILL


class JobStopped(Exception):
    """Raised inside a job when a graceful stop was requested; the job then ends "stopped"."""


@dataclass
class JobContext:
    """What a job's entry point (``engine.jobs.JOB_KINDS``, a training backend) gets: the run,
    its params, ``progress`` (the status), ``log`` (job.log) and ``should_stop``. An entry
    point that never asks should_stop() is stopped where it is (SIGTERM raises JobStopped);
    once it asks, it stops itself at a safe point by raising JobStopped. The defaults suit a
    call in-process (tests, notebooks): no status, no stop.

    ``worker``: this process is one rank of a launch of ``world_size`` processes
    (engine.launch): it trains its share and leaves the run's status to the supervisor; the
    ranks agree on a stop at a step end, never one alone before the loop."""

    run: Run
    params: dict[str, Any] = field(default_factory=dict)
    progress: Progress = lambda fraction, message: None
    log: Callable[[str], None] = LOG.info
    should_stop: Callable[[], bool] = lambda: False
    worker: bool = False
    rank: int = 0
    world_size: int = 1

    @property
    def workspace(self) -> Workspace:
        return self.run.workspace


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pid_alive(pid: int | None, started: float | None = None) -> bool:
    """True while ``pid`` is a live (non-zombie) process; with ``started`` (its create time)
    a recycled pid belonging to some other process counts as dead."""
    if not pid:
        return False
    try:
        p = psutil.Process(int(pid))
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        if started is not None and abs(p.create_time() - float(started)) > 2.0:
            return False
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


class Run:
    """One run folder. Cheap to construct; every accessor re-reads the files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.id = self.path.name

    def __repr__(self) -> str:
        return f"Run({self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    # ---- files ---------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def log_path(self) -> Path:
        return self.path / "job.log"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def model_dir(self) -> Path:
        """Full fine-tunes save the whole model here instead of adapter/."""
        return self.path / "model"

    @property
    def rehearsal_path(self) -> Path:
        """A rehearsal's spec and result (engine.train.rehearsal); its presence marks the run."""
        return self.path / "rehearsal.json"

    def has_trained_weights(self) -> bool:
        """A saved adapter (or full model) worth comparing, evaluating or exporting: a rehearsal's
        random weights are not (they measure memory and speed only)."""
        saved = (self.adapter_dir / "adapter_config.json").is_file() or (self.model_dir / "config.json").is_file()
        return saved and not self.rehearsal_path.is_file()

    def rehearsal(self) -> dict[str, Any]:
        """The rehearsal spec (with its result once done), {} for an ordinary run."""
        try:
            return json.loads(self.rehearsal_path.read_text())
        except (OSError, ValueError):
            return {}

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    @property
    def workspace(self) -> Workspace:  # the run folder is <workspace>/runs/<id>
        return Workspace(self.path.parent.parent)

    def status_path(self, kind: str = "train") -> Path:
        return self.path / "status.json" if kind == "train" else self.path / "jobs" / f"{kind}.json"

    def stop_path(self, kind: str = "train") -> Path:
        """The stop request for the ``kind`` job (engine.jobs.queue.stop writes it, the job reads it)."""
        return self.path / "jobs" / f"{kind}.stop"

    # ---- reading -------------------------------------------------------------------------
    def config(self):
        return load_config(self.config_path)

    def raw_status(self, kind: str = "train") -> dict[str, Any]:
        try:
            return json.loads(self.status_path(kind).read_text())
        except FileNotFoundError:
            return {}
        except ValueError:  # written atomically, so only a foreign edit gets here
            return {"state": "failed", "error": f"{self.status_path(kind)} is not valid JSON"}

    def status(self, kind: str = "train") -> dict[str, Any]:
        """The job's status, with a running job whose process is gone shown as failed (killed).

        Keys: state, label (state plus reason, for display), pid, started, ended, error, hint,
        kind, progress (0..1), step, max_steps, eta_s.
        """
        st = self.raw_status(kind)
        if not st:
            return {}
        # a job on another machine (a Slurm node) is checked by engine.jobs.slurm, not by its pid here
        if st.get("state") == "running" and st.get("host", HOST) == HOST \
                and not pid_alive(st.get("pid"), st.get("pid_started")):
            st = dict(st, state="failed", reason=Reason.KILLED,
                      error="The job process ended without reporting back (killed, or the machine restarted).",
                      hint="Resume the run: it continues from its last checkpoint.")
        st.setdefault("kind", kind)
        reason = st.get("reason")
        st["label"] = f"{st.get('state', '?')} ({reason})" if reason else st.get("state", "?")
        if st.get("state") == "queued" and st.get("slurm_reason"):  # waiting in Slurm's queue, and why
            st["label"] = f"pending (Slurm: {st['slurm_reason']})"
        return st

    def write_status(self, kind: str = "train", /, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the status file (atomic replace; None deletes a key)."""
        st = self.raw_status(kind)
        st.update(fields)
        st = {k: v for k, v in st.items() if v is not None}
        st["updated"] = now_iso()
        atomic.write_json(self.status_path(kind), st)
        return st

    def metrics(self) -> list[dict[str, Any]]:
        """Parsed metrics.jsonl; a torn last line (a write in flight) is skipped."""
        out = []
        try:
            text = self.metrics_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def truncate_metrics(self, last_step: int) -> int:
        """Drop metrics lines past ``last_step`` (resume point); returns lines dropped."""
        rows = self.metrics()
        keep = [r for r in rows if int(r.get("step", 0)) <= last_step]
        if len(keep) != len(rows) or self.metrics_path.exists():
            atomic.write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep))
        return len(rows) - len(keep)

    def log_tail(self, n: int = 50) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 200 * n - 4096))
                data = f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(data.splitlines()[-n:])

    def latest_checkpoint(self) -> Path | None:
        """Newest *complete* checkpoint (see :func:`checkpoint_complete`)."""
        best, best_step = None, -1
        for p in self.checkpoints_dir.glob("checkpoint-*"):
            m = re.fullmatch(r"checkpoint-(\d+)", p.name)
            if m and int(m.group(1)) > best_step and checkpoint_complete(p):
                best, best_step = p, int(m.group(1))
        return best

    def remove_incomplete_checkpoints(self, log: Callable[[str], None]) -> list[str]:
        """Delete checkpoint-N folders whose save never finished (a resume, and a training job
        failing on a full disk, see engine.train.resume); returns their names."""
        removed = []
        for p in sorted(self.checkpoints_dir.glob("checkpoint-*")):
            if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name) and not checkpoint_complete(p):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
                log(f"removed incomplete checkpoint folder checkpoints/{p.name} (its save was cut off: "
                    f"no complete trainer_state.json); it is not a resume point")
        return removed

    def summary(self) -> dict[str, Any]:
        """One row for run tables (`medtune runs list`, the Train tab): name, model, data,
        state, progress, best eval. Reads the head of config.yaml only (:func:`config_head`)."""
        st = self.status()
        head = config_head(self.config_path, SUMMARY_FIELDS)
        rows = self.metrics()
        evals = [r["eval_loss"] for r in rows if r.get("eval_loss") is not None]
        wers = [r["wer"] for r in rows if r.get("wer") is not None]
        return {
            "run": self.id,
            "model": head.get(("model", "name"), ""),
            "data": head.get(("data", "dataset"), ""),
            "state": st.get("label", ""),
            "where": st.get("where") or "this machine",
            "progress": round(float(st.get("progress") or 0.0), 3),
            "best_eval_loss": round(min(evals), 4) if evals else None,
            "best_wer": round(min(wers), 4) if wers else None,
            "created": st.get("created", ""),
        }


#: The config fields a run table shows, as (section, key).
SUMMARY_FIELDS = (("model", "name"), ("data", "dataset"))
#: How much of config.yaml a run listing reads. The file create_run writes starts with
#: model.name and data.dataset, so they lie in the first few hundred bytes; a run whose
#: config grew huge (an old run with a 50 MB system prompt) then lists as fast as any other.
SUMMARY_READ_BYTES = 64 * 1024


def config_head(path: Path, wanted: tuple[tuple[str, str], ...]) -> dict[tuple[str, str], str]:
    """``{(section, key): text}`` for the ``wanted`` section keys found in the first
    :data:`SUMMARY_READ_BYTES` of the YAML file ``path``. PyYAML's event parser reads lazily, so
    it stops once all are found and never reaches what lies beyond (a cut-off tail is never
    parsed); a key not in the head, or a file that is not YAML, is simply missing."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SUMMARY_READ_BYTES).decode("utf-8-sig", errors="ignore")
    except OSError:
        return {}
    found: dict[tuple[str, str], str] = {}
    # One frame per open collection: [is_mapping, key_or_None (None = expecting a key)].
    stack: list[list[Any]] = []
    try:
        for event in yaml.parse(head, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                stack.append([isinstance(event, yaml.MappingStartEvent), None])
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                stack.pop()
                if stack and stack[-1][0]:
                    stack[-1][1] = None  # the collection was a value: the parent expects a key again
            elif isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)) and stack and stack[-1][0]:
                frame = stack[-1]
                if frame[1] is None:
                    frame[1] = getattr(event, "value", None)
                    continue
                if len(stack) == 2 and stack[0][1] is not None and isinstance(event, yaml.ScalarEvent):
                    key = (stack[0][1], frame[1])
                    if key in wanted:
                        found[key] = event.value
                        if len(found) == len(wanted):
                            break
                frame[1] = None
    except yaml.YAMLError:  # the read stopped mid-value, or the file is not YAML
        pass
    return found


def rehearsal_words(spec: dict[str, Any]) -> str:
    """'rehearsal, 2 of 32 layers, random weights': a rehearsal run in the runs table's words."""
    of = spec.get("of_layers") or {}
    total = max(of.values(), default=None)
    layers = spec.get("layers")
    depth = f"{layers} of {total} layers" if layers and total and layers < total else "full depth"
    return f"rehearsal, {depth}, random weights"


def list_runs(workspace) -> list[Run]:
    """Runs in the workspace, newest first. Ordered by when config.yaml was written (once,
    at creation) rather than by id: ids given by hand or by other tools need not sort by time."""
    if not workspace.runs.is_dir():
        return []
    runs = [Run(p) for p in workspace.runs.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "config.yaml").is_file()]
    return sorted(runs, key=lambda r: (r.config_path.stat().st_mtime, r.id), reverse=True)


def get_run(workspace, run_id: str) -> Run:
    """The run called ``run_id`` (a folder name under runs/); PathError when unknown."""
    rid = str(run_id).strip()
    if not rid or "/" in rid or "\\" in rid or rid.startswith("."):
        raise PathError(f"'{run_id}' is not a run id.")
    run = Run(workspace.runs / rid)
    if not run.config_path.is_file():
        known = ", ".join(r.id for r in list_runs(workspace)[:10]) or "none yet"
        raise PathError(f"No run called '{rid}' in {workspace.runs}.", hint=f"Known runs: {known}")
    return run


def new_run_id(workspace, name: str | None) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", (name or "run").lower()).strip("-")[:40] or "run"
    base = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{slug}"
    rid, i = base, 2
    while (workspace.runs / rid).exists():
        rid, i = f"{base}-{i}", i + 1
    return rid


def create_run(workspace, cfg, name: str | None = None) -> Run:
    """Make the run folder and write its resolved config before anything else happens."""
    if not isinstance(cfg, RunConfig):
        raise MedtuneError("create_run needs a RunConfig")
    rid = new_run_id(workspace, name or _default_name(cfg))
    path = workspace.runs / rid
    path.mkdir(parents=True)
    atomic.write_text(path / "config.yaml", cfg.to_yaml(f"# run {rid}\n# resume: medtune runs resume {rid}"))
    run = Run(path)
    run.write_status("train", state="queued", created=now_iso(), name=name or rid, progress=0.0)
    return run


def _default_name(cfg) -> str:
    model = Path(cfg.model.name).name.replace("/", "-")
    data = Path(cfg.data.dataset).name
    return f"{model}-{data}"


def checkpoint_complete(folder: Path) -> bool:
    """A checkpoint folder whose save finished. Both backends write trainer_state.json last
    (the Trainer; engine.train.nemo_callbacks), so a folder cut off mid-save (SIGKILL, full disk)
    has none, or a torn one: it must parse and name the folder's step."""
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    m = re.fullmatch(r"checkpoint-(\d+)", folder.name)
    return bool(m) and isinstance(state, dict) and state.get("global_step") == int(m.group(1))
