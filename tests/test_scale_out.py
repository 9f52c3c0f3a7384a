"""Scale-out on this machine with the real engines: ``accelerate launch`` starting real training
processes that talk over gloo on the CPU, real SIGKILLs, real stop requests; and the shipped
strategy files parsed by accelerate itself."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from jobtools import TIMEOUT, stop_leftover_jobs, wait_for
from train_tiny import qa_dataset, tiny_llama, tiny_text_config  # noqa: F401 - fixtures

from engine import jobs, preflight
from engine.config import RunConfig
from engine.launch import accelerate as acc
from engine.launch import ranks
from engine.runs import Run, list_runs


@pytest.fixture(autouse=True)
def _no_orphan_jobs(workspace):
    yield
    stop_leftover_jobs(workspace)


def _train_rows(run):
    return [r for r in run.metrics() if "loss" in r]


def _smollm2(**overrides) -> RunConfig:
    """The SmolLM2 recipe, cut to a few steps. No LoRA dropout: with it each process would draw
    its own masks, and the comparison below would measure dropout noise, not the launch."""
    base = {"model.name": "smollm2-135m-instruct", "data.dataset": "med-qa", "data.max_train_samples": 32,
            "data.max_eval_samples": 8, "train.max_steps": 4, "train.logging_steps": 1, "train.eval_steps": 0,
            "train.save_steps": 2, "train.max_length": 128, "lora.dropout": 0.0, "eval.eval_at_start": False,
            "train.device": "cpu"}
    base.update(overrides)
    return RunConfig().with_overrides(base)


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch(workspace, smollm2_dir):
    """2 ranks x batch 2 against 1 process x batch 2 x 2 accumulation steps: the same 4
    examples per optimizer step, in the same order (accelerate gives rank r every other batch of
    the one sampler), so the two runs compute the same gradients. Only the order of float
    additions differs (the all-reduce sums two halves that one process accumulates in turn),
    an error of ~1e-7 relative per step in float32; 1e-4 leaves room for that to compound over
    a few Adam steps while any real difference (a missing or doubled batch, a wrong loss scale)
    shows up at 1e-2 or more."""
    one = jobs.launch(workspace, _smollm2(**{"train.batch_size": 2, "train.grad_accum": 2}), name="one")
    assert jobs.wait(one, timeout=TIMEOUT)["state"] == "completed", one.log_tail()
    two = jobs.launch(workspace, _smollm2(**{"train.batch_size": 2, "train.grad_accum": 1,
                                             "launch.where": "processes", "launch.processes": 2}), name="two")
    assert two.status()["where"] == "2 processes (DDP)"
    st = jobs.wait(two, timeout=TIMEOUT)
    assert st["state"] == "completed", two.log_tail(80)

    a, b = _train_rows(one), _train_rows(two)
    assert [r["step"] for r in b] == [1, 2, 3, 4]  # one strictly increasing sequence: rank 0 alone writes
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-4), (a, b)
        assert rb["grad_norm"] == pytest.approx(ra["grad_norm"], rel=1e-3), (a, b)
    reps = ranks.reports(two)
    assert sorted(reps) == [0, 1] and {x["outcome"] for x in reps.values()} == {"completed"}
    assert len({x["pid"] for x in reps.values()}) == 2  # two real processes
    assert "--num_processes 2" in two.log_tail(400)
    summary = {r["run"]: r for r in (x.summary() for x in list_runs(workspace))}
    assert summary[two.id]["where"] == "2 processes (DDP)" and summary[one.id]["where"] == "this machine"

    # the adapter: saved once, by rank 0, and it loads
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert (two.adapter_dir / "adapter_model.safetensors").is_file()
    assert two.log_path.read_text().count("saved adapter/") == 1
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(smollm2_dir), str(two.adapter_dir))
    assert any("lora_A" in n for n, _ in model.named_parameters())
    assert json.loads((two.adapter_dir / "medtune.json").read_text())["steps"] == 4


@pytest.mark.slow
def test_a_killed_rank_fails_the_run_naming_it_then_stop_and_resume_finish_it(workspace, tiny_llama, qa_dataset):
    cfg = tiny_text_config(tiny_llama, qa_dataset, **{
        "train.max_steps": 60, "train.save_steps": 10, "train.eval_steps": 0, "eval.eval_at_start": False,
        "train.batch_size": 2, "launch.where": "processes", "launch.processes": 2, "train.device": "cpu"})
    run = jobs.launch(workspace, cfg, name="ranks")
    wait_for(lambda: run.latest_checkpoint() and int(run.latest_checkpoint().name.split("-")[1]) >= 20,
              what="checkpoint-20")
    victim = ranks.reports(run)[1]
    os.kill(victim["pid"], signal.SIGKILL)
    t0 = time.time()
    wait_for(lambda: run.status()["state"] == "failed", timeout=120, what="the run to fail")
    took = time.time() - t0
    st = run.status()
    assert st["label"] == "failed (killed)", st
    assert st["error"].startswith("rank 1 (") and "ended without reporting" in st["error"], st["error"]
    assert took < 90, f"{took:.0f}s from the kill to a failed run"
    assert not any(p.status() != "zombie" for p in _children_of(st["pid"]))  # no rank left behind

    jobs.resume(run)
    wait_for(lambda: run.status()["state"] == "running" and len(_train_rows(run)) > 0
              and max(r["step"] for r in _train_rows(run)) > 35, what="training past step 35 again")
    jobs.stop(run)
    st = jobs.wait(run, timeout=TIMEOUT)
    assert st["state"] == "stopped", run.log_tail(60)
    stopped_at = max(r["step"] for r in _train_rows(run))
    assert run.latest_checkpoint().name == f"checkpoint-{stopped_at}"  # every rank stopped at one step
    assert {x["outcome"] for x in ranks.reports(run).values()} == {"stopped"}

    jobs.resume(run)
    assert jobs.wait(run, timeout=TIMEOUT)["state"] == "completed", run.log_tail(60)
    assert [r["step"] for r in _train_rows(run)] == list(range(1, 61))  # no step missing or doubled
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()


def _children_of(pid):
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_root_cause_prefers_a_rank_that_failed_on_its_own_over_the_ones_it_took_down():
    reps = {0: {"outcome": "failed", "reason": "error", "error": "RuntimeError: Connection closed by peer",
                "peer_lost": True, "host": "a", "ended": "2026-01-01T00:00:02Z"},
            1: {"outcome": "failed", "reason": "out of memory", "error": "Ran out of memory", "host": "b",
                "ended": "2026-01-01T00:00:03Z"},
            2: {"outcome": "terminated", "host": "a"}}
    cause = ranks.root_cause(reps, vanished=set(), world_size=3)
    assert (cause.rank, cause.reason) == (1, jobs.Reason.MEMORY) and cause.error.startswith("rank 1 (b)")
    reps[1] = {"host": "b", "pid": 7}  # rank 1 vanished instead: SIGKILL, no word
    cause = ranks.root_cause(reps, vanished={1}, world_size=3)
    assert (cause.rank, cause.reason) == (1, jobs.Reason.KILLED)
    cause = ranks.root_cause({0: reps[0]}, vanished=set(), world_size=2)
    assert cause.rank == 1 and "never started" in cause.error  # a node that never came up
    assert ranks.peer_lost("DistBackendError: [../gloo/transport/tcp/pair.cc] Connection closed by peer")


@pytest.mark.parametrize("strategy", acc.STRATEGIES)
def test_strategy_files_parse_with_accelerate_and_reach_the_launched_processes(tmp_path, strategy):
    """accelerate's own parser and launcher preparation read the file a run is launched with;
    the strategy's settings are in the environment the workers would get."""
    import accelerate.commands.launch as launch
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    cfg = RunConfig().with_overrides({"launch.where": "processes", "launch.strategy": strategy,
                                      "launch.processes": 4, "train.grad_accum": 3, "train.max_grad_norm": 0.5})
    run = Run(tmp_path / "ws" / "runs" / "r")
    cmd = acc.command(run, acc.write_config(run, cfg), cfg, port=29555)
    assert cmd[-5:] == ["engine.jobs", str(run.path), "--kind", "train", "--worker"]
    args = launch.launch_command_parser().parse_args(cmd[cmd.index("accelerate.commands.launch") + 1:])
    args, defaults, _ = launch._validate_launch_command(args)
    assert (args.num_processes, args.num_machines, args.max_restarts) == (4, 1, 0)
    if strategy.startswith("zero"):
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
        assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
        assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == strategy[-1]
        assert env["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] == "3"  # the run's, so DeepSpeed and the Trainer agree
        assert env["ACCELERATE_GRADIENT_CLIPPING"] == "0.5"
    else:
        env = prepare_multi_gpu_env(args)
        assert env["WORLD_SIZE"] if "WORLD_SIZE" in env else True
        if strategy == "fsdp":
            assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
            assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
            assert env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD"
        else:
            assert "ACCELERATE_USE_FSDP" not in env and "ACCELERATE_USE_DEEPSPEED" not in env


def test_launch_settings_are_checked_before_anything_starts(workspace, monkeypatch):
    def problems(**kw):
        return [p for p in preflight.validate(RunConfig().with_overrides(kw), workspace) if p.startswith("launch.")]

    assert problems(**{"launch.where": "processes", "launch.processes": (os.cpu_count() or 1) + 1,
                       "train.device": "cpu"})[0].startswith("launch.processes: ")
    assert any(p.startswith("launch.strategy: fsdp shards") for p in problems(
        **{"launch.where": "processes", "launch.strategy": "fsdp", "train.device": "cpu"}))
    if __import__("importlib").util.find_spec("deepspeed") is None:
        assert any("needs DeepSpeed" in p for p in problems(**{"launch.where": "processes",
                                                               "launch.strategy": "zero2"}))
    assert any("NeMo" in p for p in problems(**{"launch.where": "processes", "model.name": "nvidia/canary-qwen-2.5b",
                                               "data.dataset": "med-dictation"}))
    assert RunConfig().with_overrides({"launch.nodes": 0}).field_problems() == [
        "launch.nodes: must be a positive integer, got 0"]
    bad = RunConfig().with_overrides({"launch.sbatch_extra": "#SBATCH --qos=high\necho $(id)"}).field_problems()
    assert bad == ["launch.sbatch_extra: line 2, 'echo $(id)', is not of the form #SBATCH --option[=value]"]
    assert RunConfig().with_overrides({"launch.partition": "gpu;rm"}).field_problems()[0].startswith(
        "launch.partition: 'gpu;rm' is not valid here")
    # Slurm's commands missing: said before anything is submitted, naming the field
    monkeypatch.setenv("PATH", "/nonexistent")
    (msg,) = problems(**{"launch.where": "slurm"})
    assert msg.startswith("launch.where: slurm needs Slurm's commands") and "sbatch" in msg
