"""Is NeMo here, is this a NeMo model, and can this machine run it? (No NeMo imports: the loader,
preflight and the NeMo backend all ask, so it sits with the registry it reads.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from engine.errors import MissingDependency, ModelError
from engine.models.registry import resolve_model

INSTALL = "pip install -e '.[nemo]'"
#: The hub id of the speech-LLM this backend exists for.
CANARY_QWEN = "nvidia/canary-qwen-2.5b"
#: What speechlm2 needs beyond torch/transformers/peft (all pulled in by nemo_toolkit[asr]).
_MODULES = ("nemo", "lightning", "lhotse", "omegaconf")


def nemo_installed() -> bool:
    """True when nemo_toolkit and its speechlm2 dependencies are importable (checked without
    importing them: importing NeMo takes ~20 s)."""
    return all(importlib.util.find_spec(m) is not None for m in _MODULES)


def require_nemo(feature: str = "The NeMo backend") -> None:
    """Raise :class:`MissingDependency` (with the install command) when NeMo is absent."""
    if not nemo_installed():
        raise MissingDependency("nemo_toolkit", feature, install=INSTALL)


def _local_salm_config(path: Path) -> dict | None:
    cfg = path / "config.json"
    if not cfg.is_file():
        return None
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    # SALM.save_pretrained writes the model cfg itself: these two keys only occur there.
    if isinstance(data, dict) and "perception" in data and "pretrained_llm" in data:
        return data
    return None


def is_local_salm(name_or_path: str) -> bool:
    """A folder written by ``SALM.save_pretrained`` (NeMo's HF-style format)."""
    try:
        return _local_salm_config(Path(name_or_path).expanduser()) is not None
    except OSError:
        return False


def is_nemo_model(name_or_path: str) -> bool:
    """True for a registry entry whose backend is "nemo", or a local NeMo SALM folder."""
    if not name_or_path:
        return False
    if is_local_salm(name_or_path):
        return True
    try:
        return resolve_model(name_or_path).backend == "nemo"
    except Exception:  # unknown to the registry: a hub id we can't tell
        return name_or_path.strip().lower() == CANARY_QWEN


def needs_cuda(name_or_path: str) -> bool:
    """Hub SALMs (Canary-Qwen-2.5B: 2.5B parameters, trained in bf16) are GPU models; a local
    folder (e.g. a tiny SALM built from config) runs anywhere."""
    if is_local_salm(name_or_path):
        return False
    try:
        return bool(resolve_model(name_or_path).needs_gpu)
    except Exception:
        return True


def cuda_available() -> bool:
    try:
        import torch  # noqa: PLC0415 - seconds to import; the rest of this module is a cheap probe

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - torch is a core dependency
        return False


def cuda_message(name: str) -> str:
    return (f"{name} needs a CUDA GPU (about 16 GB of GPU memory for LoRA in bf16) and its weights from "
            f"the Hugging Face Hub; this machine has no CUDA GPU.")


def machine_problem(name: str, device: str = "auto") -> str | None:
    """Why NeMo model ``name`` cannot run on this machine (None when it can, or when ``name``
    is not a NeMo model). For the UI to show as soon as the model is picked."""
    if not is_nemo_model(name):
        return None
    if not nemo_installed():
        return f"{name} runs on NVIDIA NeMo, which is not installed. Install it with: {INSTALL}"
    if needs_cuda(name) and (device == "cpu" or not cuda_available()):
        return cuda_message(name)
    return None


def require_runnable(name: str, device: str = "auto") -> None:
    """Raise a clear error when ``name`` cannot run here (NeMo missing, or CUDA needed)."""
    require_nemo(f"The NeMo model {name}")
    if needs_cuda(name) and (device == "cpu" or not cuda_available()):
        raise ModelError(cuda_message(name),
                         hint="Run this recipe on a machine with an NVIDIA GPU and Hub access "
                              "(`huggingface-cli download nvidia/canary-qwen-2.5b`), or pick a "
                              "CPU-sized model.")
