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
from pathlib import Path
from typing import Any

from engine import config
from engine.config import RunConfig, check_field, iter_fields
from engine.data.datasets import saved_dataset
from engine.data.folder import NAME
from engine.data.shipped import SHIPPED
from engine.errors import ConfigError, MedtuneError
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
    return out
