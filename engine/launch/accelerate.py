"""Several training processes through ``accelerate launch``, the Hugging Face launcher.

Each strategy (``launch.strategy``) has a shipped accelerate config in ``assets/accelerate/``.
A run gets its own copy, ``<run>/launch/accelerate.yaml``, with the counts filled in (and, for
DeepSpeed, the run's gradient accumulation and clipping, which DeepSpeed and the Trainer must
agree on), so what a run was launched with stays next to its outputs. The command then starts
the same job module in worker mode on every process: ``python -m engine.jobs RUN --kind train
--worker``; accelerate (torch elastic underneath) owns the processes and their rendezvous.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import yaml

from engine import atomic
from engine.config import RunConfig
from engine.runs import Run
from engine.workspace import ASSETS

TEMPLATES = ASSETS / "accelerate"
STRATEGIES = ("ddp", "fsdp", "zero2", "zero3")
#: What the runs table says for each strategy.
STRATEGY_WORDS = {"ddp": "DDP", "fsdp": "FSDP", "zero2": "ZeRO-2", "zero3": "ZeRO-3"}


def template(strategy: str) -> Path:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    return TEMPLATES / f"{strategy}.yaml"


def accelerate_config(cfg: RunConfig, *, nodes: int = 1) -> dict[str, Any]:
    """The shipped config of ``cfg.launch.strategy`` with this run's numbers in it."""
    conf = yaml.safe_load(template(cfg.launch.strategy).read_text())
    conf["num_machines"] = nodes
    conf["num_processes"] = cfg.launch.processes * nodes
    if "deepspeed_config" in conf:
        conf["deepspeed_config"]["gradient_accumulation_steps"] = cfg.train.grad_accum
        conf["deepspeed_config"]["gradient_clipping"] = cfg.train.max_grad_norm
    return conf


def write_config(run: Run, cfg: RunConfig, *, nodes: int = 1) -> Path:
    path = run.path / "launch" / "accelerate.yaml"
    atomic.write_text(path, f"# written by MedTune from assets/accelerate/{cfg.launch.strategy}.yaml\n"
                      + yaml.safe_dump(accelerate_config(cfg, nodes=nodes), sort_keys=False))
    return path


def free_port() -> int:
    """A TCP port nobody listens on now (the rendezvous of one launch; the kernel may in
    principle hand it out again before the launcher binds it, which torch then reports)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def command(run: Run, config_file: Path, cfg: RunConfig, *, port: int, nodes: int = 1, machine_rank: int = 0,
            main_ip: str = "127.0.0.1") -> list[str]:
    """``accelerate launch`` of this run's training workers on one machine (of ``nodes``)."""
    per_node = cfg.launch.processes
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
           "--num_processes", str(per_node * nodes), "--num_machines", str(nodes),
           "--machine_rank", str(machine_rank), "--main_process_ip", main_ip, "--main_process_port", str(port),
           # a failed worker ends the launch: no elastic restarts behind the run's back
           "--max_restarts", "0"]
    if cfg.train.device == "cpu" or not _has_cuda():
        # accelerate would give each CPU worker one thread; share the cores out instead
        cmd += ["--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 1) // per_node))]
    return cmd + ["-m", "engine.jobs", str(run.path), "--kind", "train", "--worker"]


def _has_cuda() -> bool:
    """Whether this machine has an NVIDIA GPU, without importing torch (the supervisor is light)."""
    return Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir())
