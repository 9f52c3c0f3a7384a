"""The supervisor of a multi-process training run: launch the workers, watch them, say how it ended.

For ``launch.where: processes`` (and inside a Slurm allocation, ``slurm``) the training job
process does not train itself. It starts the workers with the engines people already use:
``accelerate launch`` on this machine, ``srun`` + ``accelerate launch`` on each node of a Slurm
job, and stays the one writer of the run's status (engine.jobs.runtime): running when the
launch starts, then completed, stopped, or failed naming the rank that brought it down.

- A stop is the run's stop file, which every rank reads at each step end; the ranks agree on it
  (engine.train.callbacks.StopCallback) so they checkpoint the same step and end together. A
  stop that reaches the supervisor only as a signal (Slurm's ``scancel --signal=TERM``) is
  turned into that file here.
- A rank that dies takes the launch down: torch elastic terminates the others. Should the
  launcher hang instead, it is killed :data:`TEARDOWN_S` after the first death was seen, so a
  dead rank never leaves a run "running".
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import psutil

from engine import atomic
from engine.config import RunConfig
from engine.errors import MedtuneError
from engine.launch import accelerate, ranks
from engine.runs import HOST, JobContext, JobStopped, Reason, Run, now_iso, pid_alive
from engine.workspace import REPO_ROOT

#: Seconds the launcher gets to bring the other ranks down after one died.
TEARDOWN_S = 60.0
POLL_S = 0.5


class RankFailed(MedtuneError):
    """A launch ended because one rank failed; ``kind`` is that rank's reason (engine.jobs.reasons
    maps it back onto :class:`Reason`), so a rank's out-of-memory reads as the run's."""

    def __init__(self, cause: ranks.Cause):
        super().__init__(cause.error, hint=cause.hint)
        self.kind = cause.reason.name.lower()
        self.rank = cause.rank


def describe(cfg: RunConfig, slurm_job: str | None = None, nodes: str | None = None) -> str:
    """Where a run trains, for the runs table: 'this machine', '2 processes (DDP)', 'Slurm job 12 on n1'."""
    lc = cfg.launch
    if lc.where == "local":
        return "this machine"
    procs = f"{lc.processes} process{'es' if lc.processes > 1 else ''} ({accelerate.STRATEGY_WORDS[lc.strategy]})"
    if lc.where == "processes":
        return procs
    job = f"Slurm job {slurm_job}" if slurm_job else "Slurm"
    per = f"{lc.nodes} node{'s' if lc.nodes > 1 else ''} x {procs}"
    return f"{job} on {nodes}, {per}" if nodes else f"{job}, {per}"


def worker_command(run: Run, cfg: RunConfig) -> list[str]:
    """How this supervisor starts the workers, for the run's ``launch.where``."""
    if cfg.launch.where == "processes":
        return accelerate.command(run, accelerate.write_config(run, cfg), cfg, port=accelerate.free_port())
    if cfg.launch.where == "slurm":
        if not os.environ.get("SLURM_JOB_ID"):
            raise MedtuneError("This run is configured for Slurm (launch.where: slurm) but its job is not running "
                               "inside a Slurm allocation.", hint="Start it from the app or `medtune train`, which "
                               "submit it with sbatch.")
        nodes = int(os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES") or 1)
        accelerate.write_config(run, cfg, nodes=nodes)
        # one task per node; each runs accelerate launch for its machine rank (engine.launch.node)
        # --overlap: the step shares the allocation with the batch step (this supervisor), which
        # otherwise holds its CPUs and leaves srun waiting for them
        return ["srun", "--overlap", f"--nodes={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
                sys.executable, "-m", "engine.launch.node", str(run.path), "--port", str(accelerate.free_port()),
                "--head", HOST]
    raise ValueError(f"not a multi-process launch: {cfg.launch.where!r}")


def supervise(ctx: JobContext, cfg: RunConfig) -> None:
    """Run the workers to the end: return when they completed, raise JobStopped when they
    stopped on request, RankFailed naming the rank otherwise."""
    run = ctx.run
    ranks.clear(run)
    cmd = worker_command(run, cfg)
    world = cfg.launch.processes * (int(os.environ.get("SLURM_JOB_NUM_NODES") or 1)
                                    if cfg.launch.where == "slurm" else 1)
    ctx.log(f"launching {world} training process(es): {shlex.join(cmd)}")
    ctx.progress(0.0, f"starting {world} processes")
    # stdout stays job.log (inherited); same process group, so a forced stop kills the workers too
    proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL)
    vanished: set[int] = set()
    trouble_since = None
    while proc.poll() is None:
        if ctx.should_stop() and not run.stop_path("train").exists():
            atomic.write_json(run.stop_path("train"), {"requested": now_iso(), "by": "signal"})
        reps = ranks.reports(run)
        for r, x in reps.items():
            if x.get("outcome") is None and x.get("host") == HOST and x.get("pid") \
                    and not pid_alive(x["pid"], x.get("pid_started")):
                vanished.add(r)
        if trouble_since is None and (vanished or any(x.get("outcome") == "failed" for x in reps.values())):
            trouble_since = time.time()
        if trouble_since is not None and time.time() - trouble_since > TEARDOWN_S:
            ctx.log(f"the launcher did not end within {TEARDOWN_S:.0f}s of a rank's failure: killing it")
            _kill_tree(proc.pid)
            break
        time.sleep(POLL_S)
    code = proc.wait()
    reps = ranks.reports(run)
    outcomes = {x.get("outcome") for x in reps.values()}
    if code == 0 and "stopped" in outcomes:
        raise JobStopped()
    if code == 0 and len(reps) >= world and outcomes <= {"completed"}:
        return
    cause = ranks.root_cause(reps, vanished, world)
    if cause is None:
        cause = ranks.Cause(0, Reason.ERROR, f"the launcher exited with code {code} before the ranks reported "
                            "an outcome; see job.log for its output", None)
    raise RankFailed(cause)


def _kill_tree(pid: int) -> None:
    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def node_main(argv: list[str] | None = None) -> None:
    """``python -m engine.launch.node RUN --port P --head HOST``: one node's share of a Slurm
    launch (srun starts it once per node): ``accelerate launch`` for this node's machine rank."""
    ap = argparse.ArgumentParser(prog="python -m engine.launch.node")
    ap.add_argument("run_dir")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--head", required=True)
    args = ap.parse_args(argv)
    run = Run(Path(args.run_dir))
    cfg = run.config()
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES") or 1)
    rank = int(os.environ.get("SLURM_NODEID") or 0)
    cmd = accelerate.command(run, run.path / "launch" / "accelerate.yaml", cfg, port=args.port, nodes=nodes,
                             machine_rank=rank, main_ip=args.head)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)
