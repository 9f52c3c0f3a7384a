"""What an export reads from a run folder: the config, the adapter, the base model's identity.

The run's ``config.yaml`` is read as plain data (not through ``RunConfig``) on purpose: the
export only needs a few fields, and the model card shows the LoRA/training sections as they
were saved, whatever fields a later version of the config adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import read_yaml
from engine.errors import ConfigError, ModelError
from engine.export.checks import ExportError
from engine.models.registry import resolve_model

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass
class RunSource:
    """A run folder seen from the exporter."""

    path: Path
    config: dict[str, Any]
    model_name: str
    quantization: str        # what the run trained on: "none" | "8bit" | "4bit"
    kind: str                # "text" | "speech"
    license: str             # base model license as the registry knows it ("" if unknown)

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    def section(self, name: str) -> dict[str, Any]:
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}


def open_run(run_dir: str | Path) -> RunSource:
    """Read ``run_dir`` and check it has what an export needs (config.yaml + a saved adapter)."""
    path = Path(run_dir).resolve()
    cfg_path = path / "config.yaml"
    if not cfg_path.is_file():
        raise ExportError(f"{path} is not a run folder: config.yaml is missing.")
    try:
        config = read_yaml(cfg_path.read_text(encoding="utf-8"), source=str(cfg_path)) or {}
    except ConfigError as e:  # the one strict reader: no tags, no duplicate keys, bounded depth
        raise ExportError(str(e)) from e
    if not isinstance(config, dict):
        raise ExportError(f"{cfg_path}: expected a mapping with model/data/lora/train sections.")
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    name = str(model.get("name") or "").strip()
    if not name:
        raise ExportError(f"{cfg_path}: field 'model.name' is missing, so the base model is unknown.")
    if (path / "rehearsal.json").is_file():
        raise ExportError(f"Run {path.name} is a rehearsal: its weights are random, at the real model's shapes, and "
                          "only measure memory and speed; there is nothing to export.",
                          hint="Train the recipe on real weights (on a GPU) and export that run.")
    missing = [f for f in ADAPTER_FILES if not (path / "adapter" / f).is_file()]
    if missing:
        raise ExportError(
            f"Run {path.name} has no trained adapter yet ({', '.join('adapter/' + f for f in missing)} missing).",
            hint="Export a run whose training completed; a failed or stopped run can be resumed first.",
        )
    try:
        spec = resolve_model(name)
    except ModelError as e:
        raise ExportError(f"{cfg_path}: model.name '{name}' cannot be resolved: {e.message}") from e
    return RunSource(path=path, config=config, model_name=name,
                     quantization=str(model.get("quantization") or "none"),
                     kind=spec.kind, license=spec.license)
