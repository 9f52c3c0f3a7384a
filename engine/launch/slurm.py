"""Thin, typed wrappers over Slurm's own commands: sbatch, squeue, scancel, scontrol, sinfo.

Why the commands and not a library: a cluster's login node is only sure to have the client
commands plus a ``slurm.conf`` (or ``SLURM_CONF``) that points them at the controller; there is
no pyslurm and often no REST daemon. Every call here has a timeout, and every failure becomes a
:class:`SlurmError` carrying the command's own stderr, so the UI can show Slurm's words as they
are instead of a traceback.

Formats checked against Slurm 22.05 (Debian 12) and its man pages:

* ``squeue -O`` (not ``-o``: only ``--Format`` has the exit code and the restart count), each
  field ``Name:0<US>`` (width 0 = unpadded, the suffix is an ASCII unit separator that cannot
  occur in a field). ``exit_code`` there is the raw wait status (768 for ``exit 3``, 9 for
  SIGKILL); it is returned as scontrol writes it, ``exit:signal`` (``3:0``, ``0:9``).
* ``squeue -t all`` lists finished jobs too while the controller remembers them (``MinJobAge``),
  so one call answers for most ids; ``scontrol show job -o`` is asked about the rest.
* ``squeue -j`` fails with "Invalid job id specified" only when *none* of the ids is known;
  ``scontrol`` and ``scancel --signal`` fail with the same words for a forgotten job.
* ``scancel --signal=SIG`` without ``--batch`` signals the job's steps (srun), *not* the batch
  script: a script that ``exec``s its program needs ``batch_only=True`` to be reached.
* ``scancel --signal`` on a job that has not started blocks until it starts (then signals
  its first process, usually killing the shell); :func:`cancel` refuses that up front.
* A missing ``SLURM_CONF`` file makes every command retry for 60 s; it is refused up front.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import MedtuneError

COMMANDS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")

INSTALL_HINT = (
    "Run MedTune on a machine that can submit to the cluster (usually its login node, where "
    "sbatch/squeue/scancel/scontrol/sinfo are on PATH), or install Slurm's client commands "
    "(Debian/Ubuntu: `sudo apt-get install slurm-client`, plus the cluster's slurm.conf and munge key) "
    "and point SLURM_CONF at the cluster's slurm.conf."
)

#: Seconds any one Slurm command may take; the controller answers in well under a second.
TIMEOUT_S = 30.0

#: Job states after which the job will still (or again) run; any other state is final.
ACTIVE_STATES = frozenset({
    "PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
    "REQUEUE_FED", "RESIZING", "STOPPED", "SIGNALING", "STAGE_OUT", "SPECIAL_EXIT", "POWER_UP_NODE",
    "RESV_DEL_HOLD", "UPDATE_DB",
})

# States in which a job has no process on a node to signal.
_NOT_STARTED = frozenset({"PENDING", "REQUEUE_HOLD", "REQUEUE_FED", "SPECIAL_EXIT", "RESV_DEL_HOLD"})
# What Slurm answers about a job it does not know (never had, or forgot after MinJobAge).
_UNKNOWN_JOB = "Invalid job id specified"
# What scancel answers about a job that already ended; not an error for cancel().
_ALREADY_ENDED = (_UNKNOWN_JOB, "already completing or completed", "Job/step already completing")
# The field separator for squeue/sinfo output: ASCII "unit separator", never in a name or state.
_SEP = "\x1f"
_SQUEUE_FIELDS = ("JobID", "State", "Reason", "NodeList", "exit_code", "RestartCnt")
# A job id as Slurm prints it: 123, an array element 123_4, a heterogeneous component 123+1.
_JOB_ID = re.compile(r"\d+(?:[_+]\d+)?")
# Words in stderr that mean "no controller answered" rather than "the controller said no".
_UNREACHABLE = ("Unable to contact slurm controller", "Zero Bytes were transmitted", "Connection refused",
                "Unable to establish controller", "Communication connection failure",
                "Socket timed out", "Unable to process configuration file", "authentication")


class SlurmError(MedtuneError):
    """Slurm refused, failed or could not be reached; the message quotes the command's stderr."""

    kind = "slurm"


@dataclass(frozen=True)
class Partition:
    """One partition as ``sinfo`` sees it."""

    name: str
    default: bool
    available: bool  # state "up": jobs may start there
    nodes: int
    max_time: str  # as sinfo reports it ("1-00:00:00"), with sinfo's "infinite" written "UNLIMITED"


@dataclass(frozen=True)
class SlurmJob:
    """One job's state as squeue (or scontrol, once squeue no longer lists it) reports it."""

    id: str
    state: str  # upper-case base state: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    reason: str  # why it pends or ended (Resources, Priority, NonZeroExitCode, ...); "" for none
    nodes: str  # node list, "" while pending
    exit_code: str  # "exit:signal", e.g. "0:0", "3:0", "0:9"
    restarts: int  # times Slurm requeued it (scontrol requeue, node failure, preemption)

    @property
    def finished(self) -> bool:
        """True when the job will not run any more (any state but pending, running & co.)."""
        return self.state not in ACTIVE_STATES


def missing_commands() -> list[str]:
    """Which of Slurm's client commands (:data:`COMMANDS`) are not on PATH."""
    return [c for c in COMMANDS if shutil.which(c) is None]


def _conf_note(env: Mapping[str, str] | None = None) -> str:
    conf = (env if env is not None else os.environ).get("SLURM_CONF")
    return f" (SLURM_CONF={conf})" if conf else " (Slurm's default slurm.conf; SLURM_CONF is not set)"


def _unreachable_hint(env: Mapping[str, str] | None = None) -> str:
    conf = (env if env is not None else os.environ).get("SLURM_CONF")
    where = f"SLURM_CONF={conf}" if conf else "the default slurm.conf (set SLURM_CONF to use another)"
    return (f"Check that the Slurm controller named in {where} is up and reachable from here "
            "(`sinfo` should list partitions) and that munge is running with the cluster's key.")


def _shown(args: Sequence[str]) -> str:
    """A command line for a message, the invisible field separator spelt out."""
    return " ".join(args).replace(_SEP, "\\x1f")


def _run(args: Sequence[str], *, what: str, cwd: Path | None = None,
         env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one Slurm command with a timeout; a command that cannot run at all raises SlurmError.

    A non-zero exit is returned, not raised: callers decide which refusals are answers."""
    if shutil.which(args[0], path=(env or os.environ).get("PATH")) is None:
        raise SlurmError(f"{what}: Slurm's `{args[0]}` command is not installed here.", hint=INSTALL_HINT)
    conf = (env if env is not None else os.environ).get("SLURM_CONF")
    if conf and not Path(conf).is_file():
        # Slurm's commands would retry for a minute before saying so.
        raise SlurmError(f"{what}: SLURM_CONF points at {conf}, which is not a file.",
                         hint="Point SLURM_CONF at the cluster's slurm.conf, or unset it to use Slurm's default.")
    try:
        return subprocess.run(list(args), cwd=cwd, env=None if env is None else dict(env), capture_output=True,
                              text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise SlurmError(f"{what}: `{_shown(args)}` did not answer within {TIMEOUT_S:.0f} s"
                         f"{_conf_note(env)}.{(chr(10) + err.strip()) if err.strip() else ''}",
                         hint=_unreachable_hint(env)) from None
    except OSError as e:  # e.g. a cwd that does not exist
        raise SlurmError(f"{what}: could not run `{_shown(args)}`: {e}") from None


def _failure(what: str, args: Sequence[str], proc: subprocess.CompletedProcess[str],
             env: Mapping[str, str] | None = None) -> SlurmError:
    """The error for a command that said no: its own words first, then where it looked."""
    said = (proc.stderr or "").strip() or (proc.stdout or "").strip() or "(no output)"
    unreachable = any(w.lower() in said.lower() for w in _UNREACHABLE)
    return SlurmError(f"{what}: `{_shown(args)}` failed (exit {proc.returncode}){_conf_note(env)}:\n{said}",
                      hint=_unreachable_hint(env) if unreachable else None)


def _check_id(job_id: str) -> str:
    job_id = str(job_id).strip()
    if not _JOB_ID.fullmatch(job_id):
        raise SlurmError(f"{job_id!r} is not a Slurm job id (expected digits, e.g. 1234 or 1234_5).")
    return job_id


def partitions() -> dict[str, Partition]:
    """The partitions this user can submit to, by name (``sinfo``); raises SlurmError when
    Slurm cannot be reached, naming SLURM_CONF when it is set."""
    fields = ("%R", "%P", "%a", "%D", "%l")
    args = ["sinfo", "-h", "-o", _SEP.join(fields)]
    proc = _run(args, what="Listing Slurm partitions")
    if proc.returncode != 0:
        raise _failure("Listing Slurm partitions", args, proc)
    found: dict[str, Partition] = {}
    # sinfo prints one line per partition *and node state*: add the node counts up.
    for line in proc.stdout.splitlines():
        parts = line.split(_SEP)
        if len(parts) != len(fields):
            continue
        name, tagged, avail, count, limit = (p.strip() for p in parts)
        nodes = int(count) if count.isdigit() else 0
        prev = found.get(name)
        found[name] = Partition(
            name=name,
            default=tagged.endswith("*") or bool(prev and prev.default),
            available=avail.lower() == "up",
            nodes=nodes + (prev.nodes if prev else 0),
            max_time="UNLIMITED" if limit.lower() in ("infinite", "unlimited") else limit,
        )
    return found


def submit(script: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None,
           extra_args: Sequence[str] = ()) -> str:
    """Submit ``script`` with ``sbatch --parsable [extra_args] script`` and return the job id.

    ``env`` is layered over this process's environment (sbatch hands its whole environment to
    the job unless ``--export`` says otherwise); ``cwd`` is sbatch's working directory, which is
    also the job's unless ``--chdir`` is given, and where ``slurm-<id>.out`` lands by default.
    A refusal (bad partition, time limit too long, ...) raises SlurmError with sbatch's words."""
    args = ["sbatch", "--parsable", *extra_args, str(script)]
    full_env = {**os.environ, **env} if env else None
    proc = _run(args, what="Submitting to Slurm", cwd=cwd, env=full_env)
    if proc.returncode != 0:
        raise _failure("Slurm refused the job", args, proc, full_env)
    # --parsable prints "<id>" or "<id>;<cluster>"; anything else on stdout comes before it.
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    job_id = lines[-1].split(";", 1)[0].strip() if lines else ""
    if not _JOB_ID.fullmatch(job_id):
        raise SlurmError(f"sbatch accepted the job but printed no job id: {proc.stdout.strip()!r}"
                         f"{chr(10) + proc.stderr.strip() if proc.stderr.strip() else ''}")
    return job_id


def _base_state(state: str) -> str:
    # "CANCELLED by 0" (sacct), "COMPLETING+" or "RUNNING,REQUEUED" (flags) -> the base state.
    return re.split(r"[\s+,]", state.strip().upper(), maxsplit=1)[0] if state.strip() else ""


def _reason(reason: str) -> str:
    reason = reason.strip()
    return "" if reason in ("None", "(null)") else reason


def _exit_code(value: str) -> str:
    """scontrol's "exit:signal" from squeue's raw wait status (or pass "3:0" through)."""
    value = value.strip()
    if ":" in value or not value.isdigit():
        return value
    status = int(value)
    if status > 0xFFFF:  # NO_VAL & co.: nothing recorded yet
        return "0:0"
    return f"{(status >> 8) & 0xFF}:{status & 0x7F}"


def _scontrol_job(job_id: str) -> SlurmJob | None:
    """One job from ``scontrol show job -o``; None when Slurm does not know the id."""
    args = ["scontrol", "show", "job", "-o", job_id]
    proc = _run(args, what="Asking Slurm about a job")
    if proc.returncode != 0:
        if _UNKNOWN_JOB in proc.stderr or _UNKNOWN_JOB in proc.stdout:
            return None
        raise _failure("Asking Slurm about a job", args, proc)
    for line in proc.stdout.splitlines():  # an array's or a het job's parts come one line each

        def field(key: str, line: str = line) -> str:
            m = re.search(rf"(?:^|\s){key}=(\S*)", line)
            return m.group(1) if m else ""

        if job_id not in (field("JobId"), f"{field('ArrayJobId')}_{field('ArrayTaskId')}",
                          f"{field('HetJobId')}+{field('HetJobOffset')}"):
            continue
        nodes = field("NodeList")
        restarts = field("Restarts")
        return SlurmJob(id=job_id, state=_base_state(field("JobState")), reason=_reason(field("Reason")),
                        nodes="" if nodes == "(null)" else nodes, exit_code=field("ExitCode") or "0:0",
                        restarts=int(restarts) if restarts.isdigit() else 0)
    return None


def jobs(ids: Iterable[str]) -> dict[str, SlurmJob]:
    """The jobs Slurm knows among ``ids``, by id: one ``squeue`` call for all of them, then one
    ``scontrol show job`` for each id squeue did not list. Ids that neither knows (never
    submitted, or forgotten after MinJobAge) are absent from the result; that is no error."""
    wanted = list(dict.fromkeys(_check_id(i) for i in ids))
    if not wanted:
        return {}
    fmt = ",".join(f"{f}:0{_SEP}" for f in _SQUEUE_FIELDS[:-1]) + f",{_SQUEUE_FIELDS[-1]}:0"
    args = ["squeue", "-h", "-t", "all", "-j", ",".join(wanted), "-O", fmt]
    proc = _run(args, what="Asking Slurm about jobs")
    found: dict[str, SlurmJob] = {}
    if proc.returncode != 0 and _UNKNOWN_JOB not in proc.stderr:
        raise _failure("Asking Slurm about jobs", args, proc)
    if proc.returncode == 0:
        for line in proc.stdout.splitlines():
            parts = [p.strip() for p in line.split(_SEP)]
            if len(parts) != len(_SQUEUE_FIELDS) or parts[0] not in wanted:
                continue
            job_id, state, reason, nodes, code, restarts = parts
            found[job_id] = SlurmJob(id=job_id, state=_base_state(state), reason=_reason(reason),
                                     nodes="" if nodes == "(null)" else nodes, exit_code=_exit_code(code),
                                     restarts=int(restarts) if restarts.isdigit() else 0)
    for job_id in wanted:
        if job_id not in found:
            job = _scontrol_job(job_id)
            if job is not None:
                found[job_id] = job
    return found


def cancel(job_id: str, *, signal: str | None = None, batch_only: bool = False) -> None:
    """``scancel [--signal=SIG] [--batch] ID``: end the job, or only send it ``signal``.

    With ``signal``, Slurm signals the job's steps but *not* the batch script unless
    ``batch_only`` (``--batch``) is set; a script that ``exec``s its program needs it. A job
    that already ended (or that Slurm forgot) is not an error. Signalling a job that has not
    started raises SlurmError at once: there is no process to signal yet, and scancel would
    otherwise wait (retrying "Job is in transitional state") until the job starts."""
    job_id = _check_id(job_id)
    if signal:
        job = jobs([job_id]).get(job_id)
        if job is None or job.finished:
            return
        if job.state in _NOT_STARTED:
            raise SlurmError(f"Slurm job {job_id} has not started ({job.state}"
                             f"{', ' + hold_reason_text(job.reason) if job.reason else ''}): "
                             f"there is no process to send {signal} to yet.",
                             hint="Cancel it without a signal to take it out of the queue.")
    args = ["scancel"]
    if signal:
        args.append(f"--signal={signal}")
    if batch_only:
        args.append("--batch")
    args.append(job_id)
    proc = _run(args, what="Cancelling a Slurm job")
    if proc.returncode != 0 and not any(w in proc.stderr for w in _ALREADY_ENDED):
        raise _failure(f"Slurm did not {'signal' if signal else 'cancel'} job {job_id}", args, proc)


def requeue(job_id: str) -> None:
    """``scontrol requeue ID``: stop the job and put it back in the queue (its restart count
    goes up; it pends with reason BeginTime for the credential lifetime before it runs again).
    Slurm also requeues a batch job that already finished."""
    args = ["scontrol", "requeue", _check_id(job_id)]
    proc = _run(args, what="Requeueing a Slurm job")
    if proc.returncode != 0:
        raise _failure(f"Slurm did not requeue job {job_id}", args, proc)


_REASONS = {
    "Resources": "waiting for resources",
    "Priority": "other jobs first",
    "ReqNodeNotAvail": "the nodes it needs are not available (down, drained or reserved)",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "PartitionConfig": "the request does not fit the partition",
    "PartitionTimeLimit": "its time limit is above the partition's",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows",
    "BeginTime": "waiting for its start time",
    "Dependency": "waiting for the jobs it depends on",
    "DependencyNeverSatisfied": "the jobs it depends on can never let it start",
    "JobHeldUser": "held by its user (scontrol release)",
    "JobHeldAdmin": "held by an administrator",
    "launch failed requeued held": "its launch failed; requeued and held",
    "Reservation": "waiting for its reservation",
    "NodeDown": "a node it needs is down",
    "BadConstraints": "its constraints cannot be met",
    "Licenses": "waiting for licenses",
    "Cleaning": "cleaning up after its last run",
    "Prolog": "running the prolog",
    "WaitingForScheduling": "waiting for the scheduler",
    "InvalidAccount": "its account is invalid",
    "InvalidQOS": "its QOS is invalid",
    "JobArrayTaskLimit": "at the array's task limit",
    "FrontEndDown": "no front end node is available",
    "SystemFailure": "a Slurm failure",
}


def hold_reason_text(reason: str) -> str:
    """A short human text for a pending job's reason code; an unknown reason comes back as is."""
    reason = _reason(reason)
    if not reason:
        return ""
    if reason in _REASONS:
        return _REASONS[reason]
    key = re.split(r"[,\s]", reason, maxsplit=1)[0]  # "ReqNodeNotAvail, UnavailableNodes:n1"
    if key in _REASONS:
        return _REASONS[key]
    if key.startswith("QOS"):
        return f"a limit of its QOS ({key})"
    if key.startswith("Assoc"):
        return f"a limit of its account ({key})"
    return reason
