"""Loading, LoRA-wrapping and saving NeMo SALM models (imports NeMo lazily).

One loading path for every SALM: ``SALM.from_pretrained(name_or_dir)``, NeMo's HF-style
format (``config.json`` holding the SALM cfg + ``model.safetensors``). The hub model
(nvidia/canary-qwen-2.5b) and a local folder (e.g. a tiny SALM built from config by
:func:`create_from_config`) load the same way, so the smoke test exercises the real path.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import torch
from peft import PeftModel

from engine.errors import ModelError
from engine.models.availability import is_local_salm, require_nemo
from engine.models.loader import offline, pick_device, pick_dtype

#: Inside a saved SALM folder: the LLM's own config (NeMo's hf_hub loader looks here so the
#: folder loads offline, without fetching ``pretrained_llm`` from the Hub).
LLM_BACKBONE_DIR = "llm_backbone"


def _quiet_env() -> None:
    # NeMo's OneLogger telemetry switches on only for RANK=0; a single-process job never sets
    # RANK, and we make sure nothing inherited does. No analytics leave this machine.
    if os.environ.get("RANK") == "0" and "LOCAL_RANK" not in os.environ:
        os.environ.pop("RANK")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def import_salm():
    """``nemo.collections.speechlm2.models.SALM`` (MissingDependency when NeMo is absent)."""
    require_nemo("The NeMo SALM backend")
    _quiet_env()
    from nemo.collections.speechlm2.models import SALM  # noqa: PLC0415 - optional extra, ~20 s to import

    return SALM


def _inner_llm(model):
    """The plain HF causal LM inside ``model.llm`` (unwrapping peft)."""
    return model.llm.base_model.model if isinstance(model.llm, PeftModel) else model.llm


def load_salm(name_or_dir: str, *, device: str = "auto", dtype: str = "auto"):
    """Load a SALM (hub id or local folder) onto ``device``, in ``dtype`` (auto: bf16 on a GPU
    that has it, as Canary-Qwen is trained, else float32); ModelError when it cannot."""
    dev = pick_device(device)
    want = pick_dtype(dtype, dev)
    SALM = import_salm()
    local = is_local_salm(name_or_dir)
    try:
        model = SALM.from_pretrained(str(Path(name_or_dir).expanduser()) if local else name_or_dir,
                                     local_files_only=offline() or local)
    except (OSError, RuntimeError, ValueError) as e:
        raise ModelError(f"cannot load the NeMo model {name_or_dir}: {e}",
                         hint="A hub model needs network access to huggingface.co (or a filled HF cache); "
                              "a local folder must hold config.json + model.safetensors from "
                              "SALM.save_pretrained.") from e
    return model.to(device=dev, dtype=want)


def apply_lora(model, lora: dict) -> None:
    """Install our LoRA on the LLM. A LoRA the checkpoint already carries (Canary-Qwen ships
    one) is merged into the LLM weights first, so training starts from the released model."""
    from nemo.collections.speechlm2.parts.lora import maybe_install_lora  # noqa: PLC0415 - optional extra, ~20 s to import
    from nemo.collections.speechlm2.parts.pretrained import move_embedding  # noqa: PLC0415 - optional extra, ~20 s to import
    from omegaconf import open_dict  # noqa: PLC0415 - optional extra (comes with NeMo)

    if isinstance(model.llm, PeftModel):
        with move_embedding(model):
            model.llm = model.llm.merge_and_unload()
    with open_dict(model.cfg):
        model.cfg.lora = dict(lora)
        model.cfg.prevent_freeze_params = [p for p in model.cfg.get("prevent_freeze_params", [])
                                           if p != r"^.+\.lora_.+$"]
    maybe_install_lora(model)  # NeMo's own installer: peft.get_peft_model + keep '.lora_' trainable


def set_trainable(model) -> int:
    """Apply the cfg's freeze/prevent-freeze regexes now (NeMo does it lazily in
    configure_optimizers); returns the number of trainable parameters."""
    from nemo.collections.speechlm2.parts.optim_setup import freeze_and_subset  # noqa: PLC0415 - optional extra, ~20 s to import

    with contextlib.redirect_stdout(io.StringIO()):
        params = list(freeze_and_subset(model.named_parameters(), model.cfg.get("freeze_params", []),
                                        model.cfg.get("prevent_freeze_params", [])))
    return sum(p.numel() for p in params)


def trainable_state(model) -> dict:
    """The trained weights only (LoRA + modality adapter/projection [+ encoder]), on CPU."""
    return {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_pretrained(model, out_dir: str | Path) -> Path:
    """Save in NeMo's HF-style format, self-contained: config.json + model.safetensors (NeMo),
    the tokenizer and ``llm_backbone/config.json`` so it loads offline from the folder."""
    out = Path(out_dir)
    model.save_pretrained(out)
    model.tokenizer.tokenizer.save_pretrained(out)
    _inner_llm(model).config.save_pretrained(out / LLM_BACKBONE_DIR)
    return out


def create_from_config(salm_cfg: dict, out_dir: str | Path, *, seed: int = 0) -> Path:
    """Build a SALM from config (``pretrained_weights: False``: random init, no downloads) and
    save it as a loadable folder. The saved weights fix the "base model" for training,
    resuming and evaluation, which random init alone would not."""
    SALM = import_salm()
    torch.manual_seed(seed)
    model = SALM(dict(salm_cfg))
    return save_pretrained(model, out_dir)
