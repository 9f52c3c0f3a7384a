"""Background training jobs end to end with a tiny real Llama: real child processes,
real signals, real checkpoints."""

from __future__ import annotations

import os
import signal

import pytest
from jobtools import TIMEOUT, stop_leftover_jobs, wait_for
from train_tiny import qa_dataset, tiny_llama, tiny_text_config  # noqa: F401 - fixtures

from engine import jobs
from engine.runs import get_run, list_runs


@pytest.fixture(autouse=True)
def _no_orphan_jobs(workspace):
    yield
    stop_leftover_jobs(workspace)


def _train_steps(run):
    return [r["step"] for r in run.metrics() if "loss" in r]


def test_run_completes_and_writes_a_valid_folder(workspace, tiny_llama, qa_dataset, capsys):
    from engine.cli import main

    cfg_path = workspace.root / "tiny.yaml"
    cfg_path.write_text(tiny_text_config(tiny_llama, qa_dataset).to_yaml())
    assert main(["--workspace", str(workspace.root), "train", str(cfg_path), "--name", "tiny"]) == 0
    (run,) = list_runs(workspace)
    st = run.status()
    assert st["state"] == "completed", run.log_tail()
    assert st["progress"] == 1.0 and st["ended"]
    assert run.config() == tiny_text_config(tiny_llama, qa_dataset)
    rows = run.metrics()
    assert _train_steps(run) == [1, 2, 3, 4, 5, 6]
    for r in (r for r in rows if "loss" in r):
        for key in ("epoch", "lr", "grad_norm", "tokens_per_s", "elapsed_s", "eta_s"):
            assert key in r
    evals = [r["step"] for r in rows if "eval_loss" in r]
    assert evals == [0, 3, 6]  # base model first, then every eval_steps
    assert (run.adapter_dir / "adapter_config.json").is_file()
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    assert run.latest_checkpoint().name == "checkpoint-6"
    assert "job completed" in run.log_tail(200)
    assert get_run(workspace, run.id) == run
    capsys.readouterr()
    assert main(["--workspace", str(workspace.root), "runs", "list"]) == 0
    assert run.id in capsys.readouterr().out and "completed" in run.summary()["state"]
    assert main(["--workspace", str(workspace.root), "runs", "logs", run.id, "-n", "5"]) == 0
    assert "job completed" in capsys.readouterr().out
    assert main(["--workspace", str(workspace.root), "runs", "resume", run.id]) == 2  # completed: refused


def test_sigkill_then_resume_gives_a_complete_step_sequence(workspace, tiny_llama, qa_dataset):
    cfg = tiny_text_config(tiny_llama, qa_dataset, **{"train.max_steps": 120, "train.save_steps": 20,
                                                       "train.eval_steps": 0, "eval.eval_at_start": False})
    run = jobs.launch(workspace, cfg, name="killme")
    wait_for(lambda: (run.latest_checkpoint() and int(run.latest_checkpoint().name.split("-")[1]) >= 40
                       and max(_train_steps(run), default=0) % 20 != 0), what="checkpoint-40")
    pid = run.status()["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: run.status()["state"] == "failed", what="killed state")
    assert run.status()["label"] == "failed (killed)"
    assert max(_train_steps(run)) > int(run.latest_checkpoint().name.split("-")[1])  # lines to drop exist
    jobs.resume(run)
    st = jobs.wait(run, timeout=TIMEOUT)
    assert st["state"] == "completed", run.log_tail()
    assert _train_steps(run) == list(range(1, 121))
    elapsed = [r["elapsed_s"] for r in run.metrics() if "loss" in r]
    assert elapsed == sorted(elapsed)  # elapsed time carries over the restart


def test_graceful_stop_checkpoints_then_resume(workspace, tiny_llama, qa_dataset):
    cfg = tiny_text_config(tiny_llama, qa_dataset, **{"train.max_steps": 150, "train.save_steps": 1000,
                                                       "train.eval_steps": 0, "eval.eval_at_start": False})
    run = jobs.launch(workspace, cfg, name="stopme")
    wait_for(lambda: len(_train_steps(run)) >= 3, what="first steps")
    jobs.stop(run)
    st = jobs.wait(run, timeout=TIMEOUT)
    assert st["state"] == "stopped" and st["label"] == "stopped", run.log_tail()
    last = max(_train_steps(run))
    assert last < 150
    assert run.latest_checkpoint().name == f"checkpoint-{last}"  # saved at the stop step
    assert not run.adapter_dir.exists()
    jobs.resume(run)
    assert jobs.wait(run, timeout=TIMEOUT)["state"] == "completed"
    assert _train_steps(run) == list(range(1, 151))


def test_second_launch_queues_then_starts_by_itself(workspace, tiny_llama, qa_dataset):
    first = jobs.launch(workspace, tiny_text_config(tiny_llama, qa_dataset, **{"train.max_steps": 40}), name="a")
    second = jobs.launch(workspace, tiny_text_config(tiny_llama, qa_dataset), name="b")
    assert first.status()["state"] == "running"
    assert second.status()["state"] == "queued"
    # no schedule() calls from here: the finishing job must start the queued one
    wait_for(lambda: second.status().get("state") in ("completed", "failed"), what="second run to finish")
    assert first.status()["state"] == "completed"
    assert second.status()["state"] == "completed", second.log_tail()
    assert second.status()["started"] >= first.status()["ended"]


def test_force_stop_and_queued_cancel(workspace, tiny_llama, qa_dataset):
    long = tiny_text_config(tiny_llama, qa_dataset, **{"train.max_steps": 5000, "train.eval_steps": 0})
    a = jobs.launch(workspace, long, name="a")
    b = jobs.launch(workspace, long, name="b")
    c = jobs.launch(workspace, tiny_text_config(tiny_llama, qa_dataset), name="c")
    jobs.stop(b)  # still queued: just cancelled
    assert b.status()["label"] == "stopped (cancelled)"
    wait_for(lambda: len(_train_steps(a)) >= 1, what="a to train")
    jobs.stop(a, force=True)
    assert a.status()["label"] == "stopped (forced)"
    assert jobs.wait(c, timeout=TIMEOUT)["state"] == "completed"  # the freed device went to c


def test_failures_have_actionable_reasons(workspace, tiny_llama, qa_dataset):
    cuda = jobs.launch(workspace, tiny_text_config(tiny_llama, qa_dataset, **{"train.precision": "bf16"}),
                       name="gpu-only")
    st = jobs.wait(cuda, timeout=TIMEOUT)
    assert st["state"] == "failed" and st["reason"] == "CUDA required"
    assert "precision" in st["error"] and st["hint"]
    bad = workspace.datasets / "tiny-qa" / "train.jsonl"
    bad.write_text(bad.read_text() + '{"id": "x", "prompt": "q?"}\n')
    data = jobs.launch(workspace, tiny_text_config(tiny_llama, qa_dataset), name="bad-data")
    st = jobs.wait(data, timeout=TIMEOUT)
    assert st["state"] == "failed" and st["reason"] == "data error", st
    assert "train.jsonl" in st["error"] and "49" in st["error"]


def test_4bit_qlora_run_on_cpu(workspace, tiny_llama, qa_dataset):
    from engine.runs import JobContext, create_run
    from engine.train import job

    pytest.importorskip("bitsandbytes")
    cfg = tiny_text_config(tiny_llama, qa_dataset, **{"model.quantization": "4bit"})
    run = create_run(workspace, cfg, "qlora")
    job.run(JobContext(run, {}, lambda f, m: None))  # in-process: same code the child runs
    assert _train_steps(run) == [1, 2, 3, 4, 5, 6]
    import json

    ac = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    assert ac["r"] == 4 and set(ac["target_modules"]) >= {"q_proj", "v_proj"}
    assert json.loads((run.adapter_dir / "medtune.json").read_text())["quantization"] == "4bit"


def test_auto_resume_after_kill(workspace, tiny_llama, qa_dataset, monkeypatch):
    monkeypatch.setattr(jobs.queue, "AUTO_RESUME_BASE_S", 0.5)
    cfg = tiny_text_config(tiny_llama, qa_dataset, **{"train.max_steps": 120, "train.save_steps": 20,
                                                       "train.eval_steps": 0, "train.auto_resume": 1,
                                                       "eval.eval_at_start": False})
    run = jobs.launch(workspace, cfg, name="auto")
    wait_for(lambda: run.latest_checkpoint() is not None, what="a checkpoint")
    os.kill(run.status()["pid"], signal.SIGKILL)
    wait_for(lambda: run.status()["state"] == "failed", what="killed state")
    jobs.schedule(workspace)  # any poll notices the dead job and queues the retry
    st = run.status()
    assert st["state"] == "queued" and st["auto_resumes"] == 1 and "auto-resume 1/1" in st["message"]
    assert jobs.wait(run, timeout=TIMEOUT)["state"] == "completed", run.log_tail()
    assert _train_steps(run) == list(range(1, 121))


def test_failure_classification():
    import torch

    from engine.errors import DataError, MissingDependency
    from engine.jobs.reasons import OOM_HINT, classify

    reason, msg, hint = classify(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert reason == "out of memory" and hint == OOM_HINT
    for knob in ("batch_size", "grad_accum", "4bit", "max_length"):
        assert knob in hint
    reason, msg, _ = classify(DataError("missing or empty text", file="train.jsonl", line=7, field="response"))
    assert reason == "data error" and "train.jsonl" in msg and "line 7" in msg
    reason, _, hint = classify(MissingDependency("bitsandbytes", "4bit quantization"))
    assert reason == "missing dependency" and "pip install bitsandbytes" in hint
    reason, _, hint = classify(ModuleNotFoundError("No module named 'tensorboard'", name="tensorboard"))
    assert reason == "missing dependency" and hint == "pip install tensorboard"
    reason, msg, hint = classify(ValueError("weird"))
    assert reason == "error" and "ValueError" in msg and "job.log" in hint


SECRETS = {"MEDTUNE_AUTH": "alice:pw-login-1", "HF_TOKEN": "hf_secret_token_2", "WANDB_API_KEY": "wandb-key-3",
           "AWS_SECRET_ACCESS_KEY": "aws-key-4", "OPENAI_API_KEY": "sk-key-5"}


def test_job_process_inherits_no_secrets(workspace, tiny_llama, qa_dataset, monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # not a secret: must still reach the job
    cfg = tiny_text_config(tiny_llama, qa_dataset, **{"train.max_steps": 200, "eval.eval_at_start": False})
    run = jobs.launch(workspace, cfg, name="env")
    pid = wait_for(lambda: run.status().get("state") == "running" and run.status().get("pid"), what="job pid")
    environ = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
    jobs.stop(run, force=True)
    names = {item.split("=", 1)[0] for item in environ.split("\0") if item}
    assert not names & set(SECRETS), names & set(SECRETS)
    assert not any(v in environ for v in SECRETS.values())
    assert "TOKENIZERS_PARALLELISM" in names and "PATH" in names


def test_job_gets_the_hub_token_or_wandb_key_only_when_its_run_needs_it(tiny_llama, qa_dataset):
    base = {**SECRETS, "PATH": "/bin"}
    local = tiny_text_config(tiny_llama, qa_dataset)
    assert jobs.job_environment(local, base) == {"PATH": "/bin"}  # local model, no W&B: no credential
    assert jobs.job_environment(None, base) == {"PATH": "/bin"}  # unreadable config: none either
    assert not jobs.queue._needs_hub_download("smollm2-135m-instruct")  # embedded: served from a package
    hub = tiny_text_config(tiny_llama, qa_dataset)
    hub.model.name = "microsoft/phi-2"  # weights come from the Hub: the job may need the token
    assert jobs.job_environment(hub, base) == {"PATH": "/bin", "HF_TOKEN": SECRETS["HF_TOKEN"]}
    hub.train.report_to = "wandb"
    assert jobs.job_environment(hub, base) == {"PATH": "/bin", "HF_TOKEN": SECRETS["HF_TOKEN"],
                                               "WANDB_API_KEY": SECRETS["WANDB_API_KEY"]}
