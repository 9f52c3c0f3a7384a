"""Export a NeMo run's result in NeMo's own formats.

SALM is a Lightning module with NeMo's Hugging Face Hub mixin, so its native saved form is
the HF-style folder ``SALM.save_pretrained`` writes (config.json with the SALM cfg +
model.safetensors), loadable with ``SALM.from_pretrained(folder)``. (The ``.nemo`` archive
belongs to NeMo 1.x ModelPT models such as ASR, not to speechlm2.)

- ``merged``: the LoRA folded into the LLM weights, trained projection included:
  ``<out>/salm/`` (NeMo) and ``<out>/llm/`` (the merged LLM alone as a transformers
  causal LM: Canary-Qwen's text-only mode).
- adapter: ``<out>/salm-lora/`` the base + LoRA layout in NeMo's format (LoRA kept separate)
  and ``<out>/adapter/`` peft's adapter of the LLM plus the other trained weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from peft import PeftModel

from engine.atomic import atomic_dir, write_json
from engine.errors import ModelError
from engine.nemo.model import LLM_BACKBONE_DIR, load_salm, save_pretrained
from engine.nemo.transcribe import MEDTUNE_FILE, load_adapter


def export(run: Any, out_dir: str | Path, *, merged: bool = True, device: str = "cpu") -> Path:
    """Write the export for ``run`` (which must have a trained NeMo adapter) into ``out_dir``."""
    adapter = Path(run.adapter_dir)
    if not (adapter / MEDTUNE_FILE).is_file():
        raise ModelError(f"run {run.path.name} has no trained adapter yet ({adapter})",
                         hint="Train the run to completion first.")
    meta = json.loads((adapter / MEDTUNE_FILE).read_text())
    if meta.get("backend") != "nemo":
        raise ModelError(f"{adapter} was not trained with the NeMo backend")
    model = load_salm(meta["base_model"], device=device, dtype="float32")
    load_adapter(model, adapter)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=True) as tmp:
        tmp = Path(tmp)
        if merged:
            merge_lora(model)
            save_pretrained(model, tmp / "salm")
            from nemo.collections.speechlm2.parts.pretrained import move_embedding  # noqa: PLC0415 - optional extra, ~20 s to import

            with move_embedding(model):  # SALM keeps the token embedding outside its LLM
                model.llm.save_pretrained(tmp / "llm")
            model.tokenizer.tokenizer.save_pretrained(tmp / "llm")
        else:
            save_pretrained(model, tmp / "salm-lora")
            shutil.copytree(adapter, tmp / "adapter")
        write_json(tmp / "medtune-export.json", {
            "backend": "nemo", "format": "nemo-hf (SALM.save_pretrained)", "merged": merged,
            "base_model": meta["base_model"], "steps": meta.get("steps"),
            "load": "from nemo.collections.speechlm2.models import SALM; SALM.from_pretrained(PATH)",
            "llm_backbone": LLM_BACKBONE_DIR})
    return out_dir


def merge_lora(model) -> None:
    """Fold the LLM's LoRA into its weights and drop the ``lora`` block from the cfg, so the
    saved folder loads as a plain SALM."""
    from nemo.collections.speechlm2.parts.pretrained import move_embedding  # noqa: PLC0415 - optional extra, ~20 s to import
    from omegaconf import open_dict  # noqa: PLC0415 - optional extra (comes with NeMo)

    if isinstance(model.llm, PeftModel):
        with move_embedding(model):
            model.llm = model.llm.merge_and_unload()
    with open_dict(model.cfg):
        model.cfg.pop("lora", None)
        model.cfg.prevent_freeze_params = [p for p in model.cfg.get("prevent_freeze_params", [])
                                           if p != r"^.+\.lora_.+$"]
