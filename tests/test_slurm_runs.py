"""Training runs on a real Slurm: a single-node cluster (slurmctld + slurmd from Debian's
slurm-wlm, munge) started by the ``slurm_cluster`` fixture; sbatch, squeue, scancel and scontrol
for real, with the run's supervisor and its ranks inside the allocation."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import jobtools
import pytest
from jobtools import TIMEOUT, stop_leftover_jobs
from train_tiny import qa_dataset, tiny_llama, tiny_text_config  # noqa: F401 - fixtures

from engine import jobs
from engine.errors import ConfigError
from engine.launch import ranks, slurm
from engine.runs import list_runs

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_orphan_jobs(workspace, slurm_cluster):
    yield
    stop_leftover_jobs(workspace)
    slurm_cluster.wait_idle(120)


def wait_for(cond, timeout=TIMEOUT, what="condition"):
    return jobtools.wait_for(cond, timeout, what, poll=0.3)  # each poll asks squeue: not 20 times a second


def _steps(run):
    return [r["step"] for r in run.metrics() if "loss" in r]


def _status(run):
    """The run's status as the UI's poll sees it: schedule() first merges Slurm's view."""
    jobs.schedule(run.workspace)
    return run.status()


def _slurm_cfg(tiny_llama, qa_dataset, **overrides):
    base = {"train.max_steps": 8, "train.save_steps": 4, "train.eval_steps": 4, "train.batch_size": 2,
            "train.device": "cpu", "launch.where": "slurm", "launch.processes": 1}
    base.update(overrides)
    return tiny_text_config(tiny_llama, qa_dataset, **base)


def test_cli_submits_a_two_process_run_that_completes(workspace, slurm_cluster, tiny_llama, qa_dataset, capsys):
    from engine.cli import main

    cfg_path = workspace.root / "slurm.yaml"
    cfg_path.write_text(_slurm_cfg(tiny_llama, qa_dataset, **{"launch.processes": 2}).to_yaml())
    assert main(["--workspace", str(workspace.root), "train", str(cfg_path), "--name", "on-slurm"]) == 0
    (run,) = list_runs(workspace)
    st = run.status()
    assert st["state"] == "completed", run.log_tail(80)
    job_id = st["slurm_job_id"]
    assert st["where"] == f"Slurm job {job_id} on {slurm_cluster.node}, 1 node x 2 processes (DDP)"
    assert _steps(run) == list(range(1, 9))
    assert [r["step"] for r in run.metrics() if "eval_loss" in r] == [0, 4, 8]
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    reps = ranks.reports(run)
    assert sorted(reps) == [0, 1] and {x["outcome"] for x in reps.values()} == {"completed"}
    log = run.log_path.read_text()
    assert f"Slurm job {job_id}" in log and "srun --overlap" in log  # the supervisor ran inside the allocation
    script = (run.path / "launch" / "job.sbatch").read_text()
    assert "#SBATCH --nodes=1" in script and "#SBATCH --requeue" in script and "exec " in script
    # the job recorded its end; Slurm finishes the batch step a moment later
    wait_for(lambda: slurm.jobs([job_id])[job_id].state == "COMPLETED", timeout=60, what="Slurm: COMPLETED")
    capsys.readouterr()
    assert main(["--workspace", str(workspace.root), "runs", "list"]) == 0
    assert f"Slurm job {job_id}" in capsys.readouterr().out


def test_pending_behind_another_job_cancel_stop_and_resume(workspace, slurm_cluster, tiny_llama, qa_dataset):
    long = _slurm_cfg(tiny_llama, qa_dataset, **{"train.max_steps": 400, "train.save_steps": 10,
                                                 "train.eval_steps": 0, "eval.eval_at_start": False})
    first = jobs.launch(workspace, long, name="first")
    wait_for(lambda: _status(first)["state"] == "running" and len(_steps(first)) >= 2, what="first running")
    second = jobs.launch(workspace, long, name="second")
    st = wait_for(lambda: (s := _status(second)).get("slurm_reason") and s, what="second pending")
    assert st["state"] == "queued" and st["label"].startswith("pending (Slurm: "), st
    assert slurm.jobs([st["slurm_job_id"]])[st["slurm_job_id"]].state == "PENDING"

    jobs.stop(second)  # pending: cancelled in Slurm, recorded at once
    assert _status(second)["label"] == "stopped (cancelled)"
    wait_for(lambda: slurm.jobs([st["slurm_job_id"]]).get(st["slurm_job_id"]) is None
              or slurm.jobs([st["slurm_job_id"]])[st["slurm_job_id"]].state == "CANCELLED", what="cancelled")

    wait_for(lambda: first.latest_checkpoint() is not None, what="a first checkpoint")
    jobs.stop(first)  # running: the stop request + TERM to the batch step; the job checkpoints itself
    st = wait_for(lambda: (s := _status(first))["state"] not in ("queued", "running") and s, what="stopped")
    assert st["label"] == "stopped", first.log_tail(60)
    stopped_at = max(_steps(first))
    assert first.latest_checkpoint().name == f"checkpoint-{stopped_at}"
    old_job = st["slurm_job_id"]

    jobs.resume(first)  # a new submission on the same folder
    st = _status(first)
    assert st["slurm_job_id"] != old_job
    st = wait_for(lambda: (s := _status(first))["state"] not in ("queued", "running") and s, timeout=900,
                   what="resumed run to finish")
    assert st["state"] == "completed", first.log_tail(60)
    assert _steps(first) == list(range(1, 401))  # no step missing or doubled across the two jobs


def test_time_limit_warning_checkpoints_and_requeues_then_resumes(workspace, slurm_cluster, tiny_llama, qa_dataset):
    """The USR1 that ``--signal=B:USR1@...`` sends before the time limit, delivered now by hand
    (waiting for a real limit would take minutes): the job checkpoints, requeues itself, and
    the same Slurm job runs again and resumes the run to completion."""
    cfg = _slurm_cfg(tiny_llama, qa_dataset, **{"train.max_steps": 300, "train.save_steps": 1000,
                                                "train.eval_steps": 0, "eval.eval_at_start": False})
    run = jobs.launch(workspace, cfg, name="requeue")
    wait_for(lambda: _status(run)["state"] == "running" and len(_steps(run)) >= 3, what="running")
    job_id = run.status()["slurm_job_id"]
    slurm.cancel(job_id, signal="USR1", batch_only=True)
    wait_for(lambda: slurm.jobs([job_id])[job_id].restarts >= 1, timeout=180, what="the job requeued")
    assert run.latest_checkpoint() is not None  # saved at the warning, though save_steps is 1000
    st = wait_for(lambda: (s := _status(run))["state"] not in ("queued", "running") and s, timeout=900,
                   what="the requeued job to finish")
    assert st["state"] == "completed" and st["slurm_job_id"] == job_id, run.log_tail(60)
    assert _steps(run) == list(range(1, 301))
    assert "requeueing the Slurm job" in run.log_path.read_text()


def test_a_killed_supervisor_reads_as_failed_from_slurms_state(workspace, slurm_cluster, tiny_llama, qa_dataset):
    cfg = _slurm_cfg(tiny_llama, qa_dataset, **{"train.max_steps": 400, "train.eval_steps": 0,
                                                "eval.eval_at_start": False, "launch.requeue": False})
    run = jobs.launch(workspace, cfg, name="killed")
    wait_for(lambda: _status(run)["state"] == "running" and len(_steps(run)) >= 2, what="running")
    os.kill(run.status()["pid"], signal.SIGKILL)
    st = wait_for(lambda: (s := _status(run))["state"] == "failed" and s, timeout=120, what="failed")
    assert st["reason"] == "killed", st


def test_bad_slurm_settings_are_refused_before_submitting(workspace, slurm_cluster, tiny_llama, qa_dataset):
    def refused(**kw):
        with pytest.raises(ConfigError) as err:
            jobs.launch(workspace, _slurm_cfg(tiny_llama, qa_dataset, **kw))
        return err.value.problems

    assert refused(**{"launch.partition": "nope"}) == [
        "launch.partition: no partition 'nope' on this cluster (known: debug, other)"]
    assert refused(**{"launch.nodes": 2}) == ["launch.nodes: 2 nodes, but partition 'debug' has 1"]
    assert refused(**{"launch.time_limit": "5"})[0].startswith("launch.time_limit: 5 leaves no time to train")
    assert refused(**{"launch.partition": "other", "launch.time_limit": "2-00:00:00"}) == [
        "launch.time_limit: 2-00:00:00 is longer than partition 'other' allows (1-00:00:00)"]
    assert list_runs(workspace) == []  # nothing was created, nothing submitted
    assert slurm_cluster.queued() == []


def test_a_workspace_the_nodes_cannot_share_is_refused(tmp_path, slurm_cluster, tiny_llama, qa_dataset):
    import shutil
    import tempfile

    from engine import preflight
    from engine.workspace import Workspace

    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        ws = Workspace.open(shm / "ws")
        (msg,) = [p for p in preflight.validate(_slurm_cfg(tiny_llama, qa_dataset), ws) if p.startswith("launch.")]
        assert msg.startswith(f"launch.where: the workspace's runs folder {ws.runs} is on tmpfs"), msg
    finally:
        shutil.rmtree(shm, ignore_errors=True)
