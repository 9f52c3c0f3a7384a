"""The real models' shapes without their weights: published ``config.json`` facts in
``assets/architectures/``, and random-weight models built from them.

A rehearsal (engine.train.rehearsal) and the memory planner (engine.plan) read the same facts,
so a planner figure and a rehearsal measurement describe the same architecture. The facts are
the published configs, each file naming its source; nothing here downloads anything.

:func:`build_random` builds the architecture on the meta device and then materialises it one
module at a time, each straight in the dtype it will train in, and each quantized linear layer
quantized as soon as its random values exist: an 8B model never exists in float32, nor ever in
full precision at all when it trains 4-bit. The model then carries what ``from_pretrained``
would have set (``is_loaded_in_4bit``, the quantization config), so LoRA preparation and the
Trainer take it down the same path as downloaded weights.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import yaml

from engine.errors import ModelError
from engine.models.loader import quantization_config
from engine.workspace import ASSETS

FOLDER = ASSETS / "architectures"

#: Registry names (and the Hub ids they stand for) -> their facts file in ``assets/architectures``.
FOR_MODEL = {
    "meta-llama/Llama-3.1-8B": "llama-3.1-8b",
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b",
    "meta-llama/Llama-2-7b-hf": "llama-2-7b",
    "microsoft/phi-2": "phi-2",
    "openai/whisper-small": "whisper-small",
    "nvidia/canary-qwen-2.5b": "canary-qwen-2.5b",
    "Qwen/Qwen3-1.7B": "qwen3-1.7b",
}
#: Initial weights' spread: the usual initializer_range of these configs; a rehearsal measures
#: memory and time, which random values of any spread cost the same.
INIT_STD = 0.02


def facts_name(model: str) -> str | None:
    """The facts file (stem) for a model name, or None when the workbench has none."""
    return FOR_MODEL.get(model) or next((v for k, v in FOR_MODEL.items() if k.lower() == model.lower()), None)


def facts(name: str) -> dict[str, Any]:
    """The published config facts ``assets/architectures/<name>.yaml`` (a model name works too)."""
    stem = facts_name(name) or name
    path = FOLDER / f"{stem}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(FOR_MODEL))
        raise ModelError(f"No architecture facts for '{name}'.", hint=f"Rehearsals and the memory planner know: {known}.")
    return yaml.safe_load(path.read_text())


def layer_keys(f: dict[str, Any]) -> tuple[str, ...]:
    """The config keys that count layers (a decoder-only model has one; Whisper two)."""
    return ("encoder_layers", "decoder_layers") if f.get("model_type") == "whisper" else ("num_hidden_layers",)


def with_layers(f: dict[str, Any], layers: int | None) -> dict[str, Any]:
    """The facts at ``layers`` depth (all layers when None): full width, full vocabulary."""
    out = copy.deepcopy(f)
    if layers:
        for key in layer_keys(out):
            out[key] = min(int(out[key]), layers)
    return out


def hf_config(f: dict[str, Any]):
    """A transformers config from facts (keys transformers does not know are kept as attributes)."""
    from transformers import AutoConfig  # noqa: PLC0415 - seconds to import; the UI imports this module

    kwargs = {k: v for k, v in f.items() if k not in ("model_type", "architectures", "torch_dtype")}
    cfg = AutoConfig.for_model(f["model_type"], **kwargs)
    cfg.architectures = f.get("architectures")
    return cfg


def build_random(f: dict[str, Any], *, dtype, quant: str = "none", device: str = "cpu",
                 progress: Callable[[float, str], None] | None = None):
    """The architecture ``f`` with random weights, materialised module by module in ``dtype``,
    its linear layers quantized (``quant`` 8bit/4bit, as the loader's BitsAndBytesConfig) on
    the way; returns the model in train-ready form (``model.config.use_cache`` off)."""
    import torch  # noqa: PLC0415 - seconds to import; the UI imports this module
    from transformers import AutoModelForCausalLM, WhisperForConditionalGeneration  # noqa: PLC0415

    cfg = hf_config(f)
    speech = f["model_type"] == "whisper"
    cls = WhisperForConditionalGeneration if speech else AutoModelForCausalLM
    with torch.device("meta"):
        model = cls._from_config(cfg, dtype=dtype) if speech else cls.from_config(cfg, dtype=dtype)
    qcfg = quantization_config(quant, dtype)
    if qcfg is not None:
        from transformers.integrations.bitsandbytes import replace_with_bnb_linear  # noqa: PLC0415

        keep = ["lm_head", "proj_out"]  # the output heads stay in dtype, as from_pretrained leaves them
        model = replace_with_bnb_linear(model, modules_to_not_convert=keep, quantization_config=qcfg)
    modules = [(n, m) for n, m in model.named_modules()
               if any(p.is_meta for p in m.parameters(recurse=False)) or any(b.is_meta for b in m.buffers(False))]
    gen = torch.Generator().manual_seed(0)
    for i, (name, module) in enumerate(modules):
        _materialise(module, dtype, quant, device, gen)
        if progress and i % 16 == 0:
            progress(i / max(1, len(modules)), f"materialising {name or 'model'}")
    if getattr(cfg, "tie_word_embeddings", False):
        model.tie_weights()
    _rope_buffers(model, device)
    if qcfg is not None:  # what from_pretrained records on a quantized model, for peft and the Trainer
        from transformers.quantizers import AutoHfQuantizer  # noqa: PLC0415

        model.config.quantization_config = qcfg
        setattr(model, "is_loaded_in_4bit" if quant == "4bit" else "is_loaded_in_8bit", True)
        model.is_quantized = True
        model.hf_quantizer = AutoHfQuantizer.from_config(qcfg, pre_quantized=False)
    model.config.use_cache = False
    return model


def _materialise(module, dtype, quant: str, device: str, gen) -> None:
    import bitsandbytes as bnb  # noqa: PLC0415 - only for quantized layers
    import torch  # noqa: PLC0415

    if quant != "none" and isinstance(module, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)):
        w = torch.empty(module.out_features, module.in_features, dtype=dtype)
        _fill(w, gen)
        if isinstance(module, bnb.nn.Linear4bit):
            q = module.weight  # carries the quant type/storage replace_with_bnb_linear chose
            module.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type=q.quant_type,
                                              compress_statistics=q.compress_statistics, blocksize=q.blocksize,
                                              quant_storage=q.quant_storage).to(device)
        else:
            module.weight = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False).to(device)
        if module.bias is not None:
            module.bias = torch.nn.Parameter(torch.zeros(module.out_features, dtype=dtype, device=device),
                                             requires_grad=False)
        return
    module.to_empty(device=device, recurse=False)
    norm = "norm" in type(module).__name__.lower()
    with torch.no_grad():
        for pname, p in module.named_parameters(recurse=False):
            if p.dim() < 2:  # norms' scales start at 1, every bias at 0
                p.fill_(1.0 if norm and pname == "weight" else 0.0)
                continue
            _fill(p, gen)
        for _, b in module.named_buffers(recurse=False):
            b.zero_()


_NOISE: dict[Any, Any] = {}
#: One block of random values, reused along every weight: drawing 8 billion normal numbers
#: took minutes on 2 cores, copying a block takes seconds, and memory, time and the training
#: path cannot tell the difference.
_NOISE_NUMEL = 1 << 22


def _fill(t, gen) -> None:
    import torch  # noqa: PLC0415

    block = _NOISE.get(t.dtype)
    if block is None:
        block = _NOISE[t.dtype] = torch.randn(_NOISE_NUMEL, generator=gen).mul_(INIT_STD).to(t.dtype)
    flat = t.view(-1)
    with torch.no_grad():
        for start in range(0, flat.numel(), _NOISE_NUMEL):
            n = min(_NOISE_NUMEL, flat.numel() - start)
            flat[start:start + n] = block[:n]


def _rope_buffers(model, device: str) -> None:
    """Rotary embeddings keep computed (non-persistent) buffers: compute them again, as loading does."""
    for module in model.modules():
        if hasattr(module, "rope_init_fn") and hasattr(module, "inv_freq"):
            inv_freq, scaling = module.rope_init_fn(module.config, device)
            module.register_buffer("inv_freq", inv_freq, persistent=False)
            module.original_inv_freq = inv_freq
            module.attention_scaling = scaling


def summary(f: dict[str, Any]) -> str:
    depth = ", ".join(f"{k} {f[k]}" for k in layer_keys(f))
    width = f.get("hidden_size") or f.get("d_model")
    return f"{f.get('model_type')} ({depth}, width {width}, vocab {f.get('vocab_size')})"


def path_of(name: str) -> Path:
    return FOLDER / f"{facts_name(name) or name}.yaml"
