"""Preflight: the checks on a RunConfig that need more than the config itself.

:mod:`engine.config` checks each field alone. Here a config meets the rest of the workbench:
each path field goes through its resolver (:func:`resolve_ref`: the model registry, the
dataset catalogue, the split-name rule) and fields are checked across each other, against
what the model and dataset are (a speech model needs a speech dataset), against NeMo's limits
and against what is installed (bitsandbytes, the report_to package). Every problem is listed,
naming the field, so a user fixes a config in one pass.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from engine import config
from engine.config import RunConfig, check_field, iter_fields
from engine.data.datasets import saved_dataset
from engine.data.folder import NAME
from engine.data.shipped import SHIPPED
from engine.errors import ConfigError, MedtuneError
from engine.launch import sbatch, slurm
from engine.models.availability import INSTALL, is_nemo_model, needs_cuda, nemo_installed
from engine.models.registry import model_ref, resolve_model


def validate(cfg: RunConfig, workspace: Any = None) -> list[str]:
    """Every problem with ``cfg``, one line each, naming the field.

    With ``workspace`` the dataset must be in it (or shipped); a local model folder is
    not confined here, because ``medtune train`` runs with the user's own rights: the app
    admits a config through :func:`confined` instead."""
    return _problems(cfg, workspace, confine_model=False)[0]


def check(cfg: RunConfig, workspace: Any = None, source: str | None = None) -> RunConfig:
    """``cfg`` itself, or ConfigError listing every problem :func:`validate` finds."""
    problems = validate(cfg, workspace)
    if problems:
        raise ConfigError(problems, source=source)
    return cfg


def confined(cfg: RunConfig, workspace: Any) -> tuple[RunConfig, list[str]]:
    """The app's gate: (``cfg`` with every path field resolved, every problem). Each field
    marked ``path`` goes through :func:`resolve_ref` confined to ``workspace``, the model
    folder included; a local model folder is replaced by its resolved path inside the
    workspace, so the job (whose working directory is the repository) never re-reads a
    relative name."""
    problems, resolved = _problems(cfg, workspace, confine_model=True)
    return cfg.with_values(resolved), problems


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML run config and check all of it (:func:`validate`, no workspace);
    ConfigError lists every problem, naming fields."""
    return config.load_config(path, check=validate)


def _problems(cfg: RunConfig, workspace: Any, *, confine_model: bool) -> tuple[list[str], dict[str, str]]:
    """(problems, {"section.field": resolved value} of the path fields)."""
    problems: list[str] = []
    resolved: dict[str, str] = {}
    unusable: set[str] = set()  # fields the cross-checks must not use (too long, unresolvable)
    for section, name, _, value, meta in iter_fields(cfg):
        key, kind = f"{section}.{name}", meta.get("path")
        found = check_field(key, value, meta)
        if kind and not found:
            where = workspace if kind != "model" or confine_model else None
            try:
                resolved[key] = resolve_ref(kind, value, where)
            except MedtuneError as e:
                found.append(f"{key}: {e.message}")
        if found:
            unusable.add(key)
        problems += found
    problems += _cross_checks(cfg.with_values(resolved), workspace, unusable)
    return problems, resolved


def resolve_ref(kind: str, value: str, workspace: Any = None) -> str:
    """The one resolver for RunConfig's path fields (metadata ``path``), and for the app's boxes
    of the same kinds: the value to keep, or a MedtuneError saying why not. ``model``: a registry
    name or hub id as given, a local folder as its resolved path inside ``workspace``
    (:func:`engine.models.registry.model_ref`); ``dataset``: a shipped name, a saved dataset or
    a dataset folder inside ``workspace``; ``split``: a file name in the dataset folder. Without
    a workspace only what needs none is checked."""
    if kind == "split":
        if value.strip() and not NAME.fullmatch(value.strip()):
            raise MedtuneError(f"'{value.strip()[:80]}' is not a split name (letters, digits, '.', '_' and '-', "
                               "e.g. train, validation, test)")
        return value
    if kind not in ("model", "dataset"):
        raise ValueError(f"unknown path kind {kind!r}")  # a field marked with a kind nobody resolves: a bug
    if not value.strip():
        raise MedtuneError("must not be empty")
    if workspace is None:
        return value
    if kind == "model":
        return model_ref(value, workspace)
    if value.strip() not in SHIPPED:
        _dataset_folder(value, workspace)  # a saved dataset's name or a path: inside the workspace
    return value


def nemo_problems(cfg: RunConfig) -> list[str]:
    """Problems with a config that selects a NeMo model (Canary-Qwen), which has its own limits;
    [] for any other model. Like the bitsandbytes check it names a missing package; whether
    this machine has a CUDA GPU is not a config problem (a GPU recipe must validate on a CPU
    box): the job checks that at start (``require_runnable``) and the UI shows
    ``machine_problem`` (engine.models.availability)."""
    name = cfg.model.name
    if not is_nemo_model(name):
        return []
    out = []
    if not nemo_installed():
        out.append(f"model.name: {name} runs on NVIDIA NeMo, which is not installed ({INSTALL})")
    if needs_cuda(name) and cfg.train.device == "cpu":
        out.append(f"train.device: {name} cannot train on the CPU; it needs a CUDA GPU (device cuda or auto)")
    if cfg.model.quantization != "none":
        out.append("model.quantization: the NeMo backend trains SALM in bf16/fp32; 8bit/4bit are not supported")
    if cfg.lora.full_finetune:
        out.append("lora.full_finetune: the NeMo backend trains a LoRA adapter on the LLM (plus the audio "
                   "projection); full fine-tuning is not offered")
    if cfg.train.precision == "fp16":
        out.append("train.precision: use bf16 (or fp32) with NeMo SALM; fp16 is not supported")
    return out


def model_kind(name: str) -> str | None:
    """'text' / 'speech' for a model name, or None when it cannot be told without loading."""
    if is_nemo_model(name):
        return "speech"
    try:
        return resolve_model(name).kind
    except Exception:  # unknown here; the job reports a proper ModelError when it loads
        try:
            cfg = Path(name).expanduser() / "config.json"
            if not cfg.is_file():
                return "speech" if "whisper" in name.lower() else None
            mt = json.loads(cfg.read_text()).get("model_type", "")
            return "speech" if "whisper" in mt or "speech" in mt else "text"
        except (OSError, RuntimeError, ValueError, AttributeError):  # a name no folder can have, unreadable, not JSON
            return None


def dataset_kind(ref: str, workspace: Any = None) -> str | None:
    """'text'/'speech' of a shipped name or a dataset folder in ``workspace``; None when it
    cannot be told (no workspace given, or a path outside it: nothing outside is opened)."""
    if ref in SHIPPED:
        return SHIPPED[ref].kind
    if workspace is None or not ref.strip():
        return None
    try:
        meta = _dataset_folder(ref, workspace) / "dataset.json"
    except MedtuneError:
        return None
    if meta.is_file():
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return info.get("kind") if isinstance(info, dict) else None
    return None


def _dataset_folder(ref: str, workspace: Any) -> Path:
    """Where ``open_dataset`` would look for ``ref`` (a saved name, else a path), confined to
    the workspace; PathError when it points outside."""
    return saved_dataset(workspace, ref) or workspace.resolve(ref)


def _cross_checks(cfg: RunConfig, workspace: Any, unusable: set[str] = frozenset()) -> list[str]:
    """Checks across fields; ``unusable`` fields (already reported: too long, outside the
    workspace) are not looked at again, so nothing outside is opened and no message repeats them."""
    out = []
    q = cfg.model.quantization
    if q != "none" and importlib.util.find_spec("bitsandbytes") is None:
        out.append(f"model.quantization: {q} needs the bitsandbytes package (pip install bitsandbytes)")
    if q != "none" and cfg.lora.full_finetune:
        out.append("lora.full_finetune: a quantized model cannot be fully fine-tuned; use LoRA (QLoRA) or "
                   "quantization none")
    if cfg.lora.use_dora and q == "8bit":
        out.append("lora.use_dora: DoRA is not supported on 8-bit weights by peft; use 4bit or none")
    if not cfg.data.train_split.strip():
        out.append("data.train_split: must not be empty")
    model_ok, data_ok = "model.name" not in unusable, "data.dataset" not in unusable
    out += nemo_problems(cfg) if model_ok else []
    mk = model_kind(cfg.model.name) if model_ok else None
    dk = dataset_kind(cfg.data.dataset, workspace) if data_ok else None
    if mk and dk and mk != dk:
        out.append(f"data.dataset: {cfg.model.name} is a {mk} model but {cfg.data.dataset} is a {dk} dataset "
                   f"(a {mk} model needs a {mk} dataset)")
    if cfg.lora.encoder_lora and mk == "text":
        out.append("lora.encoder_lora: only applies to speech models")
    if cfg.train.report_to != "none" and importlib.util.find_spec(cfg.train.report_to) is None:
        out.append(f"train.report_to: {cfg.train.report_to} is not installed "
                   f"(pip install {cfg.train.report_to})")
    return out + launch_problems(cfg, workspace)


def launch_problems(cfg: RunConfig, workspace: Any = None) -> list[str]:
    """What stands between ``cfg.launch`` and a start: the strategy against the model and the
    machine, and with a workspace (a run about to start) this machine's GPUs and cores, or the
    Slurm cluster (its commands, partitions, nodes) and whether its nodes can write the run
    folder. All checked before anything is launched or submitted."""
    lc = cfg.launch
    if lc.where == "local":
        return []
    out = []
    if is_nemo_model(cfg.model.name):
        out.append(f"launch.where: {cfg.model.name} trains through NeMo, which runs one process here; "
                   "choose local")
    if lc.strategy in ("zero2", "zero3") and importlib.util.find_spec("deepspeed") is None:
        out.append(f"launch.strategy: {lc.strategy} needs DeepSpeed, which is not installed (pip install deepspeed)")
    if lc.strategy != "ddp" and cfg.train.device == "cpu":
        out.append(f"launch.strategy: {lc.strategy} shards the model across CUDA GPUs; on the CPU use ddp")
    if lc.strategy in ("fsdp", "zero3") and cfg.model.quantization != "none":
        out.append(f"launch.strategy: {lc.strategy} shards the weights, which is not supported for a quantized "
                   "(QLoRA) model here; use ddp or zero2, or quantization none")
    if workspace is None:
        return out
    if lc.where == "processes":
        gpus = gpu_count()
        if gpus and cfg.train.device != "cpu":
            if lc.processes > gpus:
                out.append(f"launch.processes: {lc.processes} processes, but this machine has {gpus} GPU(s): "
                           "one process per GPU")
        else:
            cores = os.cpu_count() or 1
            if lc.processes > cores:
                out.append(f"launch.processes: {lc.processes} processes, but this machine has {cores} CPU cores: "
                           "at most one process per core")
            if lc.strategy != "ddp" and cfg.train.device != "cpu":
                out.append(f"launch.strategy: {lc.strategy} needs CUDA GPUs and this machine has none; use ddp")
        return out
    return out + _slurm_problems(cfg, workspace)


def gpu_count() -> int:
    """NVIDIA GPUs on this machine, from the driver's /proc entries (no torch import)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return sum(1 for _ in gpus.iterdir()) if gpus.is_dir() else 0


#: Filesystems that live on one machine: a Slurm node elsewhere cannot see a run folder on them.
_NODE_LOCAL_FS = {"tmpfs", "ramfs", "devtmpfs"}


def _slurm_problems(cfg: RunConfig, workspace: Any) -> list[str]:
    lc = cfg.launch
    missing = slurm.missing_commands()
    if missing:
        return [f"launch.where: slurm needs Slurm's commands on this machine; not found: {', '.join(missing)} "
                f"({slurm.INSTALL_HINT})"]
    out = []
    if lc.strategy != "ddp" and lc.gpus_per_node == 0:
        out.append(f"launch.gpus_per_node: {lc.strategy} runs on GPUs; ask for them (e.g. {lc.processes})")
    if lc.gpus_per_node and lc.processes > lc.gpus_per_node:
        out.append(f"launch.processes: {lc.processes} processes per node but {lc.gpus_per_node} GPU(s) per node "
                   "asked for (one process per GPU)")
    limit = sbatch.limit_seconds(lc.time_limit)
    if lc.requeue and limit is not None and limit < 2 * sbatch.GRACE_S:
        out.append(f"launch.time_limit: {lc.time_limit} leaves no time to train: with requeue on, the job checkpoints "
                   f"and requeues itself {sbatch.GRACE_S // 60} minutes before its limit (ask for at least "
                   f"{2 * sbatch.GRACE_S // 60} minutes, or turn requeue off)")
    try:
        parts = slurm.partitions()
    except MedtuneError as e:
        return out + [f"launch.where: cannot reach the Slurm cluster: {e.message}"]
    known = ", ".join(sorted(parts)) or "none"
    names = [p for p in lc.partition.split(",") if p] or [p for p, info in parts.items() if info.default][:1]
    if not names:
        out.append(f"launch.partition: the cluster has no default partition; name one (known: {known})")
    for name in names:
        if name not in parts:
            out.append(f"launch.partition: no partition '{name}' on this cluster (known: {known})")
        elif lc.nodes > parts[name].nodes:
            out.append(f"launch.nodes: {lc.nodes} nodes, but partition '{name}' has {parts[name].nodes}")
        elif limit is not None and parts[name].max_time not in ("", "UNLIMITED") \
                and limit > (sbatch.limit_seconds(parts[name].max_time) or limit):
            # Slurm accepts such a job and lets it wait forever (reason PartitionTimeLimit)
            out.append(f"launch.time_limit: {lc.time_limit} is longer than partition '{name}' allows "
                       f"({parts[name].max_time})")
    runs = Path(workspace.runs)
    fs = filesystem_type(runs)
    if fs in _NODE_LOCAL_FS:
        out.append(f"launch.where: the workspace's runs folder {runs} is on {fs}, which lives on this machine "
                   "only; Slurm's nodes could not write the run there. Put the workspace on a filesystem the nodes "
                   "share (--workspace or MEDTUNE_WORKSPACE)")
    else:
        try:
            runs.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=runs, prefix=".write-check-"):
                pass
        except OSError as e:
            out.append(f"launch.where: the job could not write its run folder under {runs} "
                       f"({e.strerror or e}); choose a writable workspace on a filesystem the nodes share")
    return out


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding ``path`` (its longest mount point in /proc/mounts)."""
    path = Path(os.path.realpath(path))
    best, kind = "", ""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
            best, kind = mount, parts[2]
    return kind
