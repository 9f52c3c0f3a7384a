"""Load a base model for training and put LoRA (or QLoRA) on it.

Device, dtype, quantization and the ``from_pretrained`` call are the inference loader's
(``engine.models.loader``); what training adds is its own: CUDA-only settings reported as
such, mixed-precision flags, no generation cache, k-bit preparation, gradient checkpointing,
trainable-parameter selection.
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

from engine.config import RunConfig
from engine.errors import CudaRequired
from engine.models import loader
from engine.progress import Progress

#: Output heads never get LoRA (they are tied to the embedding in most models).
_HEADS = {"lm_head", "proj_out", "embed_out", "output", "score", "classifier"}


def pick_device(cfg: RunConfig) -> str:
    """The device this process trains on: under a launcher (LOCAL_RANK set) each rank of a node
    takes its own GPU, so the model (a quantized one is placed at load time) lands there."""
    device = loader.pick_device(cfg.train.device, CudaRequired(
        "train.device is cuda but no CUDA GPU is available on this machine.",
        hint="Set train.device: auto (or cpu)."))
    local_rank = os.environ.get("LOCAL_RANK")
    return f"cuda:{local_rank}" if device == "cuda" and local_rank else device


def precision_flags(cfg: RunConfig, device: str) -> dict[str, bool]:
    """TrainingArguments bf16/fp16 flags; bf16/fp16 mixed precision is GPU-only here."""
    p = cfg.train.precision
    if p in ("bf16", "fp16") and not device.startswith("cuda"):
        raise CudaRequired(f"train.precision {p} needs a CUDA GPU; this run is on the CPU.",
                           hint="Set train.precision: auto or fp32 to train on the CPU.")
    if p == "auto":
        p = "bf16" if loader.bf16_supported(device) else "fp32"
    return {"bf16": p == "bf16", "fp16": p == "fp16"}


def load_base(cfg: RunConfig, kind: str, device: str, progress: Progress | None = None) -> tuple[Any, Any, str]:
    """(model, tokenizer-or-processor, path) with the quantization and dtype asked for."""
    path = loader.model_path(cfg.model.name, progress)
    model, proc = loader.load_pretrained(kind, path, device=device, dtype=loader.pick_dtype(cfg.model.dtype, device),
                                         quant=cfg.model.quantization, name=cfg.model.name)
    model.config.use_cache = False  # caching is for generation; it only costs memory in training
    return model, proc, path


def linear_names(model: torch.nn.Module, only: str | None = None) -> list[str]:
    """Leaf names of the model's linear layers (bitsandbytes ones included), heads excluded."""
    names = set()
    for full, mod in model.named_modules():
        if only and not re.search(only, full):
            continue
        cls = type(mod).__name__
        if isinstance(mod, torch.nn.Linear) or cls in ("Linear4bit", "Linear8bitLt"):
            leaf = full.rsplit(".", 1)[-1]
            if leaf not in _HEADS:
                names.add(leaf)
    return sorted(names)


def target_modules(cfg: RunConfig, model: torch.nn.Module, kind: str) -> list[str] | str:
    tm = cfg.lora.target_modules.strip()
    if kind == "speech" and not cfg.lora.encoder_lora:
        # decoder only: the frozen encoder's outputs are cached, so it must stay untouched
        leaves = linear_names(model, r"(^|\.)decoder\.") if tm in ("auto", "all-linear") else \
            [t.strip() for t in tm.split(",") if t.strip()]
        return rf".*decoder\.layers\.\d+\..*\b({'|'.join(map(re.escape, leaves))})$"
    if tm == "all-linear":
        return "all-linear"
    if tm == "auto":
        return linear_names(model)
    return [t.strip() for t in tm.split(",") if t.strip()]


def apply_lora(cfg: RunConfig, model: torch.nn.Module, kind: str) -> torch.nn.Module:
    """Wrap with a fresh LoRA adapter (or, for a full fine-tune, leave every weight trainable)."""
    gc = cfg.train.gradient_checkpointing
    if cfg.lora.full_finetune:
        if gc:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model
    if cfg.model.quantization != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lc = LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, bias=cfg.lora.bias,
        target_modules=target_modules(cfg, model, kind), use_rslora=cfg.lora.use_rslora,
        use_dora=cfg.lora.use_dora,
        # Whisper takes input_features, not input_ids: the seq2seq PeftModel wrapper would pass
        # input_ids=None and break, so speech uses the plain wrapper (kwargs go straight through)
        task_type=None if kind == "speech" else "CAUSAL_LM",
    )
    model = get_peft_model(model, lc)
    if kind == "speech" and not cfg.lora.encoder_lora:
        _no_dropout_on_encoder_frames(model)
    return model


def _no_dropout_on_encoder_frames(model: torch.nn.Module) -> None:
    """No LoRA dropout on the cross-attention key/value inputs, which are the 1500 encoder frames.

    A fresh mask over every frame for each of them was ~25% of a CPU training step (the
    RNG alone), and without it the step folds these projections away altogether
    (engine/train/speech_step.py). Dropout stays on every decoder-token input. Term recall
    of the Whisper recipe on the shipped test split: 0.833 with dropout on the frames too
    (600 clips, 170 steps), 0.817 with no LoRA dropout at all (same), 0.833 like this
    (640 clips, 180 steps: the recipe, at about half the step time).
    """
    for name, mod in model.named_modules():
        if name.endswith(("encoder_attn.k_proj", "encoder_attn.v_proj")) and hasattr(mod, "lora_dropout"):
            for adapter in list(mod.lora_dropout.keys()):
                mod.lora_dropout[adapter] = torch.nn.Identity()


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
