"""The batch script of a Slurm run: ``<run>/launch/job.sbatch``.

The script holds the run's resource options (``launch.*``) and one command: the training job's
supervisor, ``python -m engine.jobs RUN --kind train``, exec'd so that it, not a shell, gets
Slurm's signals. The supervisor then starts one ``accelerate launch`` per node through ``srun``
(engine.launch.processes), with the rendezvous taken from the allocation (head node, a free port).

- ``--signal=B:USR1@GRACE``: shortly before the time limit Slurm warns the supervisor, which has
  the ranks checkpoint and requeues the job (engine.jobs.runtime); ``--requeue`` lets Slurm put a
  preempted job back too. A restarted job (``SLURM_RESTART_COUNT`` > 0) resumes the run.
- Paths and names go on sbatch's command line (:func:`sbatch_args`), not in ``#SBATCH`` lines,
  where sbatch would split them at spaces; every line written here comes from a validated field.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from engine import atomic
from engine.config import RunConfig
from engine.runs import Run
from engine.workspace import REPO_ROOT

#: Seconds before the time limit at which the job is told to checkpoint and requeue itself: a
#: checkpoint of LoRA weights plus optimizer state takes seconds; a full fine-tune of a 7-8B
#: model can take a minute or two on a network filesystem.
GRACE_S = 180


def limit_seconds(time_limit: str) -> int | None:
    """Slurm's --time value in seconds (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS);
    None when empty (the partition's limit)."""
    if not time_limit.strip():
        return None
    days, _, rest = time_limit.strip().rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # D-HH[:MM[:SS]]
        h, m, s = (parts + [0, 0])[:3]
        return ((int(days) * 24 + h) * 60 + m) * 60 + s
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return (parts[0] * 60 + parts[1]) * 60 + parts[2]


def script(run: Run, cfg: RunConfig) -> str:
    lc = cfg.launch
    lines = ["#!/bin/bash", f"# MedTune run {run.id}: training on Slurm. Submitted by the app or `medtune train`;",
             "# `medtune runs resume` submits it again on the same run folder.",
             f"#SBATCH --nodes={lc.nodes}", "#SBATCH --ntasks-per-node=1"]
    if lc.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={lc.gpus_per_node}")
    else:  # CPU training: the processes share the node's cores (one job per node)
        lines.append("#SBATCH --exclusive")
    if lc.partition:
        lines.append(f"#SBATCH --partition={lc.partition}")
    if lc.account:
        lines.append(f"#SBATCH --account={lc.account}")
    if lc.time_limit:
        lines.append(f"#SBATCH --time={lc.time_limit}")
    if lc.requeue:
        lines += [f"#SBATCH --signal=B:USR1@{GRACE_S}", "#SBATCH --requeue"]
    else:
        lines.append("#SBATCH --no-requeue")
    lines += [ln.strip() for ln in lc.sbatch_extra.splitlines() if ln.strip()]
    repo = shlex.quote(str(REPO_ROOT))
    lines += ["", f"export PYTHONPATH={repo}${{PYTHONPATH:+:$PYTHONPATH}}", "export PYTHONUNBUFFERED=1",
              f"exec {shlex.quote(sys.executable)} -m engine.jobs {shlex.quote(str(run.path))} --kind train", ""]
    return "\n".join(lines)


def sbatch_args(run: Run) -> list[str]:
    """The options that hold paths and names: on sbatch's command line."""
    return [f"--job-name=medtune-{run.id}", f"--output={run.log_path}", "--open-mode=append",
            f"--chdir={REPO_ROOT}"]


def write(run: Run, cfg: RunConfig) -> Path:
    path = run.path / "launch" / "job.sbatch"
    atomic.write_text(path, script(run, cfg))
    path.chmod(0o755)
    return path
