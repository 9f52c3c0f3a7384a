"""Faults injected into the REAL job child processes (issue #8): a disk that fills up while a
checkpoint or an export is written, memory that runs out in a training step, two launches at
the same instant. Each fault must end in a readable state (reason + hint, never a bare
"failed"), and nothing already saved may be lost.

How the faults are made, without root and without filling the CI machine's disk or RAM:

- Disk full: ``RLIMIT_FSIZE`` on the job process (``resource.prlimit`` on the pid that
  ``engine.jobs`` spawned). Python ignores SIGXFSZ, so a write past the limit fails with
  EFBIG exactly where ENOSPC would; torch and safetensors wrap it the same way. Where the
  host allows unprivileged user namespaces (``unshare -Urm``), the same run also goes on a
  private 16 MiB tmpfs that really fills up: ENOSPC for every write, status.json included.
- Out of memory: ``RLIMIT_DATA`` on the job process, set once the model is loaded to what it
  uses then plus a margin, so the first training batch cannot get its logits tensor.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from export_runs import make_run
from export_runs import tiny_llama as export_tiny_llama
from jobtools import wait_for
from train_tiny import WORDS, qa_dataset, tiny_llama, tiny_text_config, write_dataset  # noqa: F401 - fixtures

from engine import jobs
from engine.jobs.reasons import DISK_HINTS, OOM_HINT, classify
from engine.runs import Run, checkpoint_complete, list_runs

TIMEOUT = 300  # generous: CI boxes are shared; the tests assert outcomes, not speed
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_orphan_jobs(workspace):
    """Jobs outlive their launcher by design; a failing test must not leave one running."""
    yield
    for run in list_runs(workspace):
        for kind in ("train", "export"):
            if run.status(kind).get("state") in ("queued", "running"):
                with contextlib.suppress(Exception):
                    jobs.stop(run, force=True, kind=kind)


def _wait_for(cond, timeout=TIMEOUT, what="condition", poll=0.02):
    return wait_for(cond, timeout, what, poll)


def _train_steps(run: Run) -> list[int]:
    return [r["step"] for r in run.metrics() if "loss" in r]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _limits_line(pid: int, name: str) -> str:
    return next(line for line in Path(f"/proc/{pid}/limits").read_text().splitlines() if line.startswith(name))


@contextlib.contextmanager
def _own_fsize_limit(n: int):
    """RLIMIT_FSIZE on this process for the block (soft limit only, restored after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (n, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


# ---- classification of the real exceptions ----------------------------------------------------
def test_disk_full_errors_as_torch_safetensors_and_the_os_raise_them(tmp_path):
    """The exceptions are produced for real (a file-size limit on this process, /dev/full),
    not constructed: torch.save loses the errno on the way through C++."""
    import torch
    from safetensors.torch import save_file

    t = {"w": torch.zeros(64 * 1024)}  # 256 KiB
    caught: dict[str, BaseException] = {}
    with _own_fsize_limit(64 * 1024):
        for name, write in {
            "torch.save": lambda: torch.save(t, tmp_path / "x.pt"),
            "safetensors": lambda: save_file(t, str(tmp_path / "x.safetensors")),
            "open().write": lambda: (tmp_path / "x.bin").write_bytes(b"\0" * 256 * 1024),
        }.items():
            with pytest.raises(Exception) as err:
                write()
            caught[name] = err.value
    if Path("/dev/full").is_char_device():  # a real ENOSPC, from the kernel (where the device exists)
        fd = os.open("/dev/full", os.O_WRONLY)
        try:
            with pytest.raises(OSError) as err:
                os.write(fd, b"x")
        finally:
            os.close(fd)
        caught["/dev/full"] = err.value
        assert err.value.errno == errno.ENOSPC
    assert isinstance(caught["open().write"], OSError) and caught["open().write"].errno == errno.EFBIG
    assert "File too large" in str(caught["safetensors"])
    for name, exc in caught.items():
        reason, msg, hint = classify(exc)
        assert reason == "disk full", (name, repr(exc), msg)
        assert msg.startswith("The disk is full (or a file-size/quota limit was reached)"), msg
        assert hint == DISK_HINTS["train"], hint
    # wrapped, as a library re-raising it would: the errno is found down the chain
    try:
        try:
            caught["open().write"].__traceback__ = None
            raise caught["open().write"]
        except OSError as inner:
            raise RuntimeError("could not save the checkpoint") from inner
    except RuntimeError as outer:
        reason, msg, _ = classify(outer)
        assert reason == "disk full" and "EFBIG: File too large" in msg, msg
    # the hint follows the job kind; other OS errors stay plain errors
    assert classify(caught["safetensors"], "export")[2] == DISK_HINTS["export"]
    for knob in ("Free disk space", "save_total_limit", "MEDTUNE_WORKSPACE", "Resume"):
        assert knob in DISK_HINTS["train"]
    assert classify(PermissionError(errno.EACCES, "Permission denied", "/x"))[0] == "error"


def test_resume_removes_cut_off_checkpoints_and_says_so(workspace, tiny_llama, qa_dataset):
    """A save cut off mid-way leaves checkpoint-N/ without a complete trainer_state.json (a
    full disk can even truncate that file): resume skips and deletes such folders."""
    from engine.runs import create_run
    from engine.train.resume import resume_point

    run = create_run(workspace, tiny_text_config(tiny_llama, qa_dataset), "cut")
    for step, state in ((10, json.dumps({"global_step": 10})), (20, '{"global_step": 2'), (30, None)):
        d = run.checkpoints_dir / f"checkpoint-{step}"
        d.mkdir(parents=True)
        (d / "adapter_model.safetensors").write_bytes(b"\0" * 100)
        if state is not None:
            (d / "trainer_state.json").write_text(state)
    run.metrics_path.write_text("".join(json.dumps({"step": s, "loss": 1.0, "elapsed_s": s / 10}) + "\n"
                                        for s in range(1, 26)))
    assert run.latest_checkpoint().name == "checkpoint-10"  # what the UI/CLI show, too
    said: list[str] = []
    rp = resume_point(run, True, said.append)
    assert rp.checkpoint.name == "checkpoint-10" and rp.start_step == 10
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["checkpoint-10"]
    assert [s.split(" (")[0] for s in said[:2]] == ["removed incomplete checkpoint folder checkpoints/checkpoint-20",
                                                    "removed incomplete checkpoint folder checkpoints/checkpoint-30"]
    assert _train_steps(run) == list(range(1, 11)) and rp.elapsed_s == 1.0


# ---- disk full while the training job writes a checkpoint -------------------------------------
def test_disk_full_during_checkpoint_keeps_the_previous_one(workspace, tiny_llama, qa_dataset):
    cfg = tiny_text_config(tiny_llama, qa_dataset, **{"train.max_steps": 18, "train.save_steps": 6,
                                                       "train.eval_steps": 0, "eval.eval_at_start": False,
                                                       "train.auto_resume": 1})
    run = jobs.launch(workspace, cfg, name="disk-full")
    first = run.checkpoints_dir / "checkpoint-6"
    _wait_for(lambda: checkpoint_complete(first), what="checkpoint-6")
    pid = run.status()["pid"]
    # The limit lies between every small file (metrics, status, log + room for a traceback;
    # the adapter and tokenizer files of a checkpoint) and the checkpoint's largest file
    # (optimizer.pt): the next save gets half-way, then the disk is "full".
    sizes = {f.name: f.stat().st_size for f in first.iterdir()}
    small = max([v for k, v in sizes.items() if k != "optimizer.pt"]
                + [run.log_path.stat().st_size, run.metrics_path.stat().st_size]) + 32 * 1024
    assert small < sizes["optimizer.pt"], f"test premise: checkpoint files {sizes}"
    limit = (small + sizes["optimizer.pt"]) // 2
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, limit))
    assert str(limit) in _limits_line(pid, "Max file size")
    kept = _digest(first)

    st = jobs.wait(run, timeout=TIMEOUT)
    assert st["state"] == "failed" and st["reason"] == "disk full", (st, run.log_tail())
    assert st["label"] == "failed (disk full)"
    assert st["error"].startswith("The disk is full (or a file-size/quota limit was reached) while writing "
                                  "checkpoints/checkpoint-12"), st["error"]
    assert st["hint"] == DISK_HINTS["train"]
    assert 6 < max(_train_steps(run)) <= 12  # it trained on, then failed at the next save
    # the previous checkpoint is untouched; the half-written one was removed by the failing job
    assert _digest(first) == kept and checkpoint_complete(first)
    log = run.log_tail(200)
    assert "PytorchStreamWriter" in log or "inline_container" in log  # torch.save of optimizer.pt broke off
    removed = log.index("removed incomplete checkpoint folder checkpoints/checkpoint-12")
    assert removed < log.index("train job failed (disk full)")
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["checkpoint-6"]
    assert run.latest_checkpoint() == first
    assert not run.adapter_dir.exists()
    jobs.schedule(workspace)
    assert run.status()["state"] == "failed"  # auto_resume is on, but a retry cannot make room

    jobs.resume(run)  # the limit went with the failed process: "space was freed"
    st = jobs.wait(run, timeout=TIMEOUT)
    assert st["state"] == "completed", run.log_tail()
    assert "training from checkpoint-6" in run.log_tail(400)
    assert _train_steps(run) == list(range(1, 19))  # complete and strictly increasing
    elapsed = [r["elapsed_s"] for r in run.metrics() if "loss" in r]
    assert elapsed == sorted(elapsed)
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["checkpoint-12", "checkpoint-18"]
    assert all(checkpoint_complete(p) for p in run.checkpoints_dir.iterdir())
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()


# ---- a real full disk (ENOSPC) where the system allows a private tmpfs --------------------------
NAMESPACE_DRIVER = r"""
import hashlib, json, os, subprocess, sys, time
from pathlib import Path

mnt, model, out, tests, scenario = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], sys.argv[5]
sys.path.insert(0, tests)


def mount(opts):
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)], check=True)


def used():
    st = os.statvfs(mnt)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def steps(run):
    return [r["step"] for r in run.metrics() if "loss" in r]


mount("size=16m")
from engine import jobs
from engine.runs import checkpoint_complete
from engine.workspace import Workspace
from train_tiny import qa_rows, tiny_text_config, write_dataset

ws = Workspace.open(mnt / "ws")
write_dataset(ws.datasets / "tiny-qa", "text", {"train": qa_rows(48), "validation": qa_rows(8, seed=1)})
cfg = tiny_text_config(model, "tiny-qa", **{"train.max_steps": 18, "train.save_steps": 6, "train.eval_steps": 0,
                                             "eval.eval_at_start": False})
run = jobs.launch(ws, cfg, name="enospc")
first = run.checkpoints_dir / "checkpoint-6"
end = time.time() + 300
while not checkpoint_complete(first):
    assert time.time() < end and run.status().get("state") == "running", run.log_tail()
    time.sleep(0.02)
report = {}
if scenario == "checkpoint":  # the disk has room for half of one more checkpoint
    size_kb = (used() + sum(p.stat().st_size for p in first.iterdir()) // 2) // 1024
    mount(f"remount,size={size_kb}k")
else:  # "other": another program takes every free byte while the job trains
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    report["free_when_filled"] = os.statvfs(mnt).f_bavail
kept = digest(first)
report["failed"] = jobs.wait(run, timeout=300)
report["raw_failed"] = run.raw_status()
report["kept"] = digest(first) == kept and checkpoint_complete(first)
report["after_failure"] = sorted(p.name for p in run.checkpoints_dir.iterdir())
report["log_failed"] = run.log_tail(80)
report["steps_failed"] = steps(run)
if scenario == "checkpoint":
    report["free_after_failure"] = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
    mount("remount,size=16m")  # space freed
    jobs.resume(run)
    report["resumed"] = jobs.wait(run, timeout=300)
    report["steps"] = steps(run)
    report["after_resume"] = sorted(p.name for p in run.checkpoints_dir.iterdir())
    report["complete"] = all(checkpoint_complete(p) for p in run.checkpoints_dir.iterdir())
    report["log"] = run.log_tail(200)
out.write_text(json.dumps(report))
"""


def _private_tmpfs_possible(tmp_path: Path) -> bool:
    """A user + mount namespace (``unshare -Urm``) where a size-limited tmpfs can be mounted
    without privileges; absent on hosts that forbid unprivileged user namespaces."""
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        return subprocess.run(["unshare", "-Urm", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _on_a_full_disk(scenario: str, tiny_llama: Path, tmp_path: Path) -> dict:
    """Run NAMESPACE_DRIVER (a training job on a private 16 MiB tmpfs that then fills up)."""
    if not _private_tmpfs_possible(tmp_path):
        pytest.skip("needs `unshare -Urm` (unprivileged user + mount namespaces) to mount a small tmpfs")
    mnt, out = tmp_path / "disk", tmp_path / "report.json"
    mnt.mkdir()
    proc = subprocess.run(["unshare", "-Urm", sys.executable, "-c", NAMESPACE_DRIVER, str(mnt), str(tiny_llama),
                           str(out), str(Path(__file__).parent), scenario],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert proc.returncode == 0 and out.is_file(), proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(out.read_text())


def test_real_full_disk_during_checkpoint_is_recorded_and_resumable(tiny_llama, tmp_path):
    """The checkpoint fault on a real file system that runs out of space (ENOSPC for every
    write, not one file's size limit): status.json and job.log need room too, so the failing
    job first removes the checkpoint it half-wrote, then records "disk full"; the previous
    checkpoint is kept, and the run resumes once space is back."""
    r = _on_a_full_disk("checkpoint", tiny_llama, tmp_path)
    st = r["failed"]
    assert st["state"] == "failed" and st["reason"] == "disk full", (st, r["log_failed"])
    assert st["error"].startswith("The disk is full (or a file-size/quota limit was reached) while writing "
                                  "checkpoints/checkpoint-12"), st["error"]
    assert st["hint"] == DISK_HINTS["train"]
    assert "train job failed (disk full)" in r["log_failed"]
    assert r["kept"] and r["after_failure"] == ["checkpoint-6"]
    assert r["free_after_failure"] > 0  # the half-written checkpoint gave its bytes back
    assert 6 < max(r["steps_failed"]) <= 12
    assert r["resumed"]["state"] == "completed", r["log"]
    assert "training from checkpoint-6" in r["log"]
    assert r["steps"] == list(range(1, 19))
    assert r["after_resume"] == ["checkpoint-12", "checkpoint-18"] and r["complete"]


def test_real_full_disk_filled_by_another_program(tiny_llama, tmp_path):
    """Another program takes every free byte mid-run: the job fails at its next small write
    (a status or metrics update), has nothing of its own to delete, and must still record the
    failure (status.json is then rewritten in place) instead of vanishing as "killed"."""
    r = _on_a_full_disk("other", tiny_llama, tmp_path)
    assert r["free_when_filled"] == 0
    st = r["failed"]
    assert st["state"] == "failed" and st["reason"] == "disk full", (st, r["log_failed"])
    assert st["label"] == "failed (disk full)" and st["ended"]  # recorded by the job, not inferred
    assert st["error"].startswith("The disk is full (or a file-size/quota limit was reached)"), st["error"]
    assert st["hint"] == DISK_HINTS["train"]
    assert r["raw_failed"]["reason"] == "disk full"
    assert r["kept"] and r["after_failure"] == ["checkpoint-6"]
    assert max(r["steps_failed"]) >= 6


# ---- disk full while the export job writes the merged model -------------------------------------
def test_disk_full_during_export_leaves_no_partial_export(workspace, tmp_path):
    from engine.export.job import ExportOptions

    base = export_tiny_llama(tmp_path / "base")
    run = Run(make_run(workspace, base, name="export-full"))
    adapter = _digest(run.adapter_dir)
    train_status = run.raw_status("train")
    weights = (base / "model.safetensors").stat().st_size  # the merged copy is as big (float32)
    limit = weights // 2
    assert limit > 64 * 1024, f"test premise: {weights} bytes of weights"
    jobs.submit(run, "export", ExportOptions(merged=True, adapter_zip=True).to_params())
    pid = run.status("export")["pid"]
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, limit))
    assert not run.export_dir.exists(), "the export started writing before the limit was set"

    st = jobs.wait(run, "export", timeout=TIMEOUT)
    assert st["state"] == "failed" and st["reason"] == "disk full", (st, run.log_tail())
    assert st["error"].startswith("The disk is full (or a file-size/quota limit was reached) while writing "
                                  "export/merged"), st["error"]
    assert st["hint"] == DISK_HINTS["export"]
    assert sorted(p.name for p in run.export_dir.iterdir()) == []  # no merged/, no .partial-*, no zip
    assert _digest(run.adapter_dir) == adapter
    assert run.raw_status("train") == train_status

    jobs.submit(run, "export", ExportOptions(merged=True, adapter_zip=True).to_params())
    st = jobs.wait(run, "export", timeout=TIMEOUT)
    assert st["state"] == "completed", run.log_tail()
    assert (run.export_dir / "merged" / "model.safetensors").stat().st_size >= weights * 0.9
    assert (run.export_dir / "adapter.zip").is_file()
    assert _digest(run.adapter_dir) == adapter


# ---- out of memory in a training step --------------------------------------------------------------
def _wide_vocab_llama(tiny: Path, out: Path, vocab: int) -> Path:
    """The tiny Llama with a 64k-row vocabulary (as big models have): its logits for one
    batch of 8 x 512 tokens are one 1 GiB tensor, requested late in a cheap forward pass."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    cfg = AutoConfig.from_pretrained(tiny)
    cfg.vocab_size = vocab
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(out)
    return out


def _vm_data_mb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def test_out_of_memory_in_a_training_step(workspace, tiny_llama, tmp_path, monkeypatch):
    # Two compute threads whatever the host: each thread's stack counts as private memory,
    # and a 64-core runner would otherwise spend the margin below on its thread pool.
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    model = _wide_vocab_llama(tiny_llama, tmp_path / "wide-llama", vocab=65536)
    rng = random.Random(0)
    rows = [{"id": f"l{i}", "prompt": " ".join(rng.choice(WORDS) for _ in range(300)) + "?",
             "response": "Plan: rest.", "meta": {}} for i in range(16)]
    write_dataset(workspace.datasets / "long-qa", "text", {"train": rows, "validation": [], "test": []})
    cfg = tiny_text_config(model, "long-qa", **{"train.batch_size": 8, "train.max_length": 512,
                                                 "train.max_steps": 20, "train.eval_steps": 0,
                                                 "eval.eval_at_start": False, "train.auto_resume": 1})
    mine = resource.getrlimit(resource.RLIMIT_DATA)
    run = jobs.launch(workspace, cfg, name="oom")
    pid = run.status()["pid"]
    training = re.compile(r"^\[medtune\] [\d:]+ training$", re.M)
    # Follow the child's private memory until it starts training; the limit is what it used
    # then (model loaded, Trainer built) plus 512 MiB: enough for the step's small tensors,
    # not for the ~1 GiB logits. Taken from the sample before the line appeared, so it holds
    # even if this poll comes late and the first step is already under way.
    before = None

    def started_training():
        nonlocal before
        now = _vm_data_mb(pid)
        if training.search(run.log_path.read_text(errors="replace")):
            return before or now
        assert run.status().get("state") == "running", (run.status(), run.log_tail())
        before = now or before
        return None

    used = _wait_for(started_training, what="the job to start training")
    limit = (used + 512) << 20
    resource.prlimit(pid, resource.RLIMIT_DATA, (limit, resource.prlimit(pid, resource.RLIMIT_DATA)[1]))

    st = jobs.wait(run, timeout=TIMEOUT)
    assert st["state"] == "failed" and st["reason"] == "out of memory", (st, run.log_tail())
    assert st["label"] == "failed (out of memory)"
    assert re.fullmatch(r"Ran out of memory: could not allocate [\d.]+ (MiB|GiB) of RAM \(DefaultCPUAllocator\)\.",
                        st["error"]), st["error"]
    assert st["hint"] == OOM_HINT
    for knob in ("batch_size", "grad_accum", "4bit", "max_length"):
        assert knob in st["hint"]
    assert len(_train_steps(run)) <= 1, "the step should not fit"  # (1 only if the limit came late)
    assert not run.adapter_dir.exists()
    # the job records "failed" first and frees its device slot as its last act (then starts the
    # next queued job): wait for the slot rather than race the exiting process
    _wait_for(lambda: not list((workspace.runs / ".jobs").glob("active-*.json")), what="the device slot to be freed")
    jobs.schedule(workspace)
    assert run.status()["state"] == "failed"  # auto_resume is on, but the same batch would not fit
    assert not list((workspace.runs / ".jobs").glob("active-*.json"))
    # The launcher (here: this process, as the UI's launch button) is untouched: its own limit
    # is unchanged, and the Train tab's view of the run shows the reason and the hint.
    assert resource.getrlimit(resource.RLIMIT_DATA) == mine
    from ui.tabs.train import progress_html

    view = progress_html(run)
    assert "failed (out of memory)" in view and "Hint: Lower train.batch_size" in view


# ---- two launches at the same instant -------------------------------------------------------------
LAUNCHER = """
import sys, time
from pathlib import Path
import torch  # noqa: F401 - the device probe's import, done before the start line
from engine.cli import main
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.001)
sys.exit(main(sys.argv[3:]))
"""


def test_two_launches_at_the_same_instant_one_runs_one_queues(workspace, tiny_llama, qa_dataset, tmp_path):
    """Two processes (say the UI and the CLI) launch at the same instant: one runs, the other
    queues; never both at once on the one device."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text(tiny_text_config(tiny_llama, qa_dataset, **{
        "train.max_steps": 4, "train.save_steps": 4, "train.eval_steps": 0, "eval.eval_at_start": False}).to_yaml())
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    procs = [subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tmp_path / f"ready-{n}"), str(go),
                               "--workspace", str(workspace.root), "train", str(cfg), "--name", n, "--detach"],
                              cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for n in ("ui", "cli")]
    _wait_for(lambda: all((tmp_path / f"ready-{n}").exists() for n in ("ui", "cli")), timeout=120,
              what="both launchers to be ready")
    go.touch()
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = list_runs(workspace)
    assert len(runs) == 2
    by_state = {r.status()["state"]: r for r in runs}
    assert sorted(by_state) == ["queued", "running"], {r.id: r.status()["state"] for r in runs}
    running, queued = by_state["running"], by_state["queued"]
    slots = list((workspace.runs / ".jobs").glob("active-*.json"))
    assert [json.loads(p.read_text())["run"] for p in slots] == [running.id]
    entries = [json.loads(p.read_text()) for p in (workspace.runs / ".jobs" / "queue").glob("*.json")]
    assert [(e["run"], e["kind"]) for e in entries] == [(queued.id, "train")]
    # The queued one is a real entry: freeing the device starts it (that the queue then
    # drains by itself is test_runs_jobs.py::test_second_launch_queues_then_starts_by_itself).
    jobs.stop(running, force=True)
    assert running.status()["label"] == "stopped (forced)"
    assert queued.status()["state"] == "running" and queued.status()["started"] >= running.status()["ended"]
