"""The SALM config dict NeMo's ``SALM(cfg)`` reads, built from our RunConfig.

Keys SALM uses: ``pretrained_llm`` (HF id or local folder), ``pretrained_asr`` (NeMo ASR model
whose preprocessor+encoder seed ``perception``), ``pretrained_weights`` (False = build every
module from config, random init), ``audio_locator_tag``, ``prompt_format``, ``perception``
(preprocessor, encoder, modality_adapter), ``freeze_params`` / ``prevent_freeze_params``
(regex lists over parameter names), ``optimizer`` / ``lr_scheduler`` (hydra ``_target_``
dicts) and an optional ``lora`` block passed to ``peft.LoraConfig`` for the LLM.
"""

from __future__ import annotations

from typing import Any

from engine.nemo.manifests import AUDIO_LOCATOR_TAG

#: LoRA as in NeMo's public examples/speechlm2/conf/salm.yaml (its commented ``lora`` block).
PUBLIC_SALM_LORA = {"task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 32, "lora_dropout": 0.1}

#: Parameter-name regexes (SALM attribute paths). The LLM and its token embedding (which SALM
#: moves out of the LLM) are always frozen: LoRA adds the trainable weights there.
FREEZE_LLM = [r"^llm\..+$", r"^embed_tokens\..+$"]
FREEZE_ENCODER = [r"^perception\.preprocessor\..+$", r"^perception\.encoder\..+$"]
KEEP_LORA = [r"^.+\.lora_.+$"]

_SCHEDULERS = {
    "cosine": "nemo.core.optim.lr_scheduler.CosineAnnealing",
    "linear": "nemo.core.optim.lr_scheduler.WarmupAnnealing",
    "polynomial": "nemo.core.optim.lr_scheduler.PolynomialDecayAnnealing",
    "constant_with_warmup": "nemo.core.optim.lr_scheduler.WarmupPolicy",
    "constant": "nemo.core.optim.lr_scheduler.WarmupPolicy",
}


def lora_block(lora: Any) -> dict:
    """Our LoraConfig section -> the SALM ``lora`` block (kwargs of peft.LoraConfig).

    ``target_modules: auto`` leaves the choice to peft's per-family default (q_proj/v_proj for
    Qwen/Llama), which is what NeMo's public config does by not naming any.
    """
    block: dict[str, Any] = {"task_type": "CAUSAL_LM", "r": int(lora.r), "lora_alpha": float(lora.alpha),
                             "lora_dropout": float(lora.dropout), "bias": lora.bias,
                             "use_rslora": bool(lora.use_rslora), "use_dora": bool(lora.use_dora)}
    tm = (lora.target_modules or "auto").strip()
    if tm == "all-linear":
        block["target_modules"] = "all-linear"
    elif tm != "auto":
        block["target_modules"] = [m.strip() for m in tm.split(",") if m.strip()]
    return block


def freeze_lists(train_encoder: bool) -> tuple[list[str], list[str]]:
    """(freeze_params, prevent_freeze_params): the LLM is frozen (LoRA trains), the modality
    adapter + projection always train, the FastConformer encoder trains only on request."""
    return FREEZE_LLM + ([] if train_encoder else FREEZE_ENCODER), list(KEEP_LORA)


def optim_blocks(train: Any, max_steps: int) -> dict:
    """``optimizer`` + ``lr_scheduler`` blocks (AdamW as in NeMo's salm.yaml)."""
    warmup = train.warmup_ratio if train.scheduler != "constant" else 0.0
    return {
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": float(train.learning_rate), "betas": [0.9, 0.98],
                      "weight_decay": float(train.weight_decay)},
        "lr_scheduler": {"_target_": _SCHEDULERS[train.scheduler], "warmup_ratio": float(warmup),
                         "max_steps": int(max_steps), "min_lr": 0.0},
    }


def fastconformer_perception(*, llm_hidden: int, d_model: int = 64, n_layers: int = 2, n_heads: int = 2,
                             features: int = 80, subsampling_factor: int = 8, ff_expansion_factor: int = 2,
                             subsampling_conv_channels: int | None = None, conv_kernel_size: int = 9) -> dict:
    """A FastConformer ``perception`` block built from config (no pretrained ASR download).

    FastConformer = Conformer with depthwise-striding 8x subsampling, as in Canary; the sizes
    here are free, so tests build a tiny one. The modality adapter is an identity and a
    linear ``proj`` maps ``d_model`` to the LLM's hidden size.
    """
    return {
        "target": "nemo.collections.speechlm2.modules.perception.AudioPerceptionModule",
        "output_dim": llm_hidden,
        "preprocessor": {"_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
                         "sample_rate": 16000, "features": features, "window_size": 0.025,
                         "window_stride": 0.01, "n_fft": 512, "normalize": "per_feature", "dither": 0.0,
                         "pad_to": 0, "log": True, "frame_splicing": 1, "window": "hann"},
        "encoder": {"_target_": "nemo.collections.asr.modules.ConformerEncoder", "feat_in": features,
                    "feat_out": -1, "n_layers": n_layers, "d_model": d_model, "subsampling": "dw_striding",
                    "subsampling_factor": subsampling_factor,
                    "subsampling_conv_channels": subsampling_conv_channels or max(8, d_model // 2),
                    "ff_expansion_factor": ff_expansion_factor, "self_attention_model": "rel_pos", "n_heads": n_heads,
                    "att_context_size": [-1, -1], "xscaling": True, "untie_biases": True,
                    "pos_emb_max_len": 5000, "conv_kernel_size": conv_kernel_size, "conv_norm_type": "batch_norm",
                    "dropout": 0.0, "dropout_pre_encoder": 0.0, "dropout_emb": 0.0, "dropout_att": 0.0},
        "modality_adapter": {"_target_": "nemo.collections.speechlm2.modules.perception.IdentityConnector",
                             "d_model": d_model},
    }


def salm_from_config(llm_dir: str, *, llm_hidden: int, prompt_format: str = "qwen", **perception: Any) -> dict:
    """A complete SALM cfg that builds everything from config (``pretrained_weights: False``):
    the LLM architecture from ``llm_dir``'s config.json, the FastConformer from
    :func:`fastconformer_perception`. Used for CPU smoke tests and tiny experiments."""
    freeze, keep = freeze_lists(train_encoder=True)
    return {
        "pretrained_llm": str(llm_dir), "pretrained_asr": None, "pretrained_weights": False,
        "prompt_format": prompt_format, "audio_locator_tag": AUDIO_LOCATOR_TAG,
        "freeze_params": freeze, "prevent_freeze_params": keep,
        "perception": fastconformer_perception(llm_hidden=llm_hidden, **perception),
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": 1e-4},
    }


def training_cfg(base: dict, run_cfg: Any, max_steps: int) -> dict:
    """A loaded SALM's cfg adapted for our run: our LoRA, freezing and optimizer.

    ``base`` is the model's own cfg (from its config.json); any LoRA it already had is merged
    into the LLM weights before ours is installed (see engine.nemo.model.apply_lora).
    """
    cfg = {k: v for k, v in base.items() if k != "lora"}
    freeze, keep = freeze_lists(train_encoder=bool(run_cfg.lora.encoder_lora))
    cfg.update({"freeze_params": freeze, "prevent_freeze_params": keep, "pretrained_weights": False,
                **optim_blocks(run_cfg.train, max_steps)})
    cfg["lora"] = lora_block(run_cfg.lora)
    return cfg
