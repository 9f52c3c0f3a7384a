"""engine.launch.slurm against a REAL single-node Slurm (tests/slurm_cluster.py): no mocks.

Each job takes the whole node, so the tests run one after another on an idle cluster; the
``submit`` fixture cancels whatever a test left and waits for the node to be idle again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.errors import MedtuneError
from engine.launch import slurm


def _script(tmp_path: Path, body: str, name: str = "job.sh") -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    return path


def _wait_for(job_id: str, ok, timeout: float = 60, what: str = "") -> slurm.SlurmJob:
    """Poll jobs() until ``ok(job)`` holds; fail with the last state seen."""
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        job = slurm.jobs([job_id]).get(job_id)
        if job is not None and ok(job):
            return job
        time.sleep(0.25)
    pytest.fail(f"job {job_id} not {what or 'as expected'} after {timeout:.0f} s: last seen {job}")


@pytest.fixture
def submit(slurm_cluster, tmp_path):
    """``submit(body, *extra_args)`` -> job id; every job is cancelled at the test's end."""
    ids: list[str] = []

    def _submit(body: str, *extra_args: str) -> str:
        job_id = slurm.submit(_script(tmp_path, body, f"job{len(ids)}.sh"), cwd=tmp_path, extra_args=list(extra_args))
        ids.append(job_id)
        return job_id

    slurm_cluster.wait_idle()
    yield _submit
    for job_id in ids:
        slurm.cancel(job_id)
    slurm_cluster.wait_idle()


def test_partitions_lists_default_and_other(slurm_cluster):
    parts = slurm.partitions()
    assert set(parts) == {"debug", "other"}
    debug, other = parts["debug"], parts["other"]
    assert debug == slurm.Partition(name="debug", default=True, available=True, nodes=1, max_time="UNLIMITED")
    assert other == slurm.Partition(name="other", default=False, available=True, nodes=1, max_time="1-00:00:00")
    assert slurm.missing_commands() == []


def test_running_then_pending_then_cancelled(slurm_cluster, submit):
    first = submit("sleep 20")
    running = _wait_for(first, lambda j: j.state == "RUNNING", what="RUNNING")
    assert running.nodes == slurm_cluster.node and running.reason == "" and not running.finished
    assert running.exit_code == "0:0" and running.restarts == 0

    second = submit("sleep 20")
    pending = _wait_for(second, lambda j: j.state == "PENDING" and j.reason in ("Resources", "Priority"),
                        what="PENDING for Resources/Priority")
    assert pending.nodes == "" and not pending.finished
    assert slurm.hold_reason_text(pending.reason) in ("waiting for resources", "other jobs first")
    both = slurm.jobs([first, second, first])  # one squeue call; duplicates collapse
    assert set(both) == {first, second} and both[first].state == "RUNNING"
    # A job that has not started has no process to signal: refused at once, not after a wait.
    started = time.monotonic()
    with pytest.raises(slurm.SlurmError, match="has not started"):
        slurm.cancel(second, signal="TERM", batch_only=True)
    assert time.monotonic() - started < 10

    slurm.cancel(second)
    slurm.cancel(first)
    for job_id in (first, second):
        done = _wait_for(job_id, lambda j: j.finished, what="finished")
        assert done.state == "CANCELLED"
        # The fallback for a job squeue no longer lists (scontrol show job) says the same.
        again = slurm._scontrol_job(job_id)
        assert again is not None and again.state == "CANCELLED" and again.finished
    assert slurm.jobs([first])[first].state == "CANCELLED"


def test_finished_jobs_report_state_and_exit_code(submit):
    ok = submit("true")
    done = _wait_for(ok, lambda j: j.finished, what="finished")
    assert (done.state, done.exit_code, done.reason) == ("COMPLETED", "0:0", "")
    bad = submit("exit 3")
    failed = _wait_for(bad, lambda j: j.finished, what="finished")
    assert (failed.state, failed.exit_code, failed.reason) == ("FAILED", "3:0", "NonZeroExitCode")
    # scontrol (the fallback) writes the exit code the same way as the squeue path.
    assert slurm._scontrol_job(bad) == failed
    # Ending a job that already ended is not an error, with or without a signal.
    slurm.cancel(ok)
    slurm.cancel(ok, signal="TERM", batch_only=True)
    slurm.cancel("999999")


def test_unknown_ids_are_absent(slurm_cluster):
    assert slurm.jobs(["999999"]) == {}
    assert slurm.jobs([]) == {}
    assert slurm._scontrol_job("999999") is None
    with pytest.raises(MedtuneError, match="not a Slurm job id"):
        slurm.jobs(["12; rm -rf /"])


def test_refused_submission_quotes_sbatch(slurm_cluster, tmp_path):
    with pytest.raises(MedtuneError) as err:
        slurm.submit(_script(tmp_path, "true"), cwd=tmp_path, extra_args=["--partition=nope"])
    assert "invalid partition" in str(err.value).lower()
    assert "nope" in err.value.message and "--partition=nope" in err.value.message
    assert slurm.jobs(["999999"]) == {}


def test_requeue_restarts_the_job(submit):
    job_id = submit("sleep 60")
    _wait_for(job_id, lambda j: j.state == "RUNNING", what="RUNNING")
    slurm.requeue(job_id)
    back = _wait_for(job_id, lambda j: j.state != "RUNNING", timeout=20, what="off the node")
    assert back.state in ("COMPLETING", "PENDING", "REQUEUED") and back.restarts == 1 and not back.finished
    # It pends (reason BeginTime) for the credential lifetime, then runs again.
    again = _wait_for(job_id, lambda j: j.state == "RUNNING", timeout=60, what="RUNNING again")
    assert again.restarts == 1
    slurm.cancel(job_id)
    assert _wait_for(job_id, lambda j: j.finished, what="finished").state == "CANCELLED"


def test_signal_reaches_a_batch_script_that_execs(submit, tmp_path):
    """``cancel(signal=..., batch_only=True)`` reaches the program a batch script ``exec``s
    (the run integration's graceful stop); the job then ends as its program does."""
    marker = tmp_path / "signals.txt"
    job_id = submit(
        "exec python3 -c '\n"
        "import signal, sys, time\n"
        f"out = open(\"{marker}\", \"a\", buffering=1)\n"
        "def h(sig, frame):\n"
        "    out.write(signal.Signals(sig).name + \"\\n\")\n"
        "    if sig == signal.SIGTERM: sys.exit(0)\n"
        "signal.signal(signal.SIGUSR1, h); signal.signal(signal.SIGTERM, h)\n"
        "out.write(\"ready\\n\")\n"
        "while True: time.sleep(0.1)\n'")
    _wait_for(job_id, lambda j: j.state == "RUNNING", what="RUNNING")
    deadline = time.monotonic() + 30
    while "ready" not in (marker.read_text() if marker.exists() else ""):
        assert time.monotonic() < deadline, "the job's program never started"
        time.sleep(0.1)
    slurm.cancel(job_id, signal="USR1", batch_only=True)
    slurm.cancel(job_id, signal="TERM", batch_only=True)
    done = _wait_for(job_id, lambda j: j.finished, what="finished")
    assert marker.read_text().split() == ["ready", "SIGUSR1", "SIGTERM"]
    assert (done.state, done.exit_code) == ("COMPLETED", "0:0")


def test_unreachable_slurm_names_slurm_conf(slurm_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "missing.conf"))
    with pytest.raises(MedtuneError, match="SLURM_CONF"):
        slurm.partitions()
    # A controller that is not there: a copy of the conf pointing at a port nobody listens on.
    dead = tmp_path / "dead.conf"
    port = slurm_cluster.conf.read_text().split("SlurmctldPort=", 1)[1].split()[0]
    dead.write_text(slurm_cluster.conf.read_text().replace(f"SlurmctldPort={port}", "SlurmctldPort=1"))
    monkeypatch.setenv("SLURM_CONF", str(dead))
    with pytest.raises(slurm.SlurmError) as err:
        slurm.partitions()
    assert str(dead) in err.value.message and err.value.hint and "SLURM_CONF" in err.value.hint


def test_missing_commands_give_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert slurm.missing_commands() == list(slurm.COMMANDS)
    with pytest.raises(slurm.SlurmError) as err:
        slurm.submit(tmp_path / "x.sh")
    assert "sbatch" in err.value.message and err.value.hint == slurm.INSTALL_HINT


def test_hold_reason_text():
    assert slurm.hold_reason_text("Resources") == "waiting for resources"
    assert slurm.hold_reason_text("Priority") == "other jobs first"
    assert "not available" in slurm.hold_reason_text("ReqNodeNotAvail, UnavailableNodes:n[1-2]")
    assert slurm.hold_reason_text("None") == ""
    assert slurm.hold_reason_text("QOSMaxJobsPerUserLimit").startswith("a limit of its QOS")
    assert slurm.hold_reason_text("SomethingNew") == "SomethingNew"
