"""The Whisper decoder training step, made cheaper without changing what it computes.

Profiled on 2 CPU cores (whisper tiny.en, batch 8, ~24 target tokens per clip, decoder LoRA
on cached encoder outputs), the step was dominated by work on the 1500 encoder frames and on
the 51864-word output layer, not by the decoder itself. Two changes, both exact up to float
rounding (tests/test_speech_step.py compares losses and gradients with the stock forward):

- Cross-attention over encoder states that need no gradient (frozen encoder), with key/value
  projections that are frozen linear layers plus, optionally, plain LoRA without dropout
  (the workbench default: engine/train/model.py keeps LoRA dropout off the frames), folds
  those projections into the query and the output instead of projecting all 1500 frames
  (the K/V projections alone were ~30% of the step), for targets short enough that this is
  fewer operations (``_absorbed_pays``). Measured per layer, forward + backward at batch 8:
  74 vs 119 ms at 24 tokens, 51 vs 124 ms at 16. Everything else (generation with a KV
  cache, masks, LoRA dropout on the frames, DoRA, quantized layers, long targets) takes the
  stock forward.
- The loss runs the output layer on target positions only (prompt and padding positions,
  ~30% of a batch here, carried logits over the whole vocabulary for nothing).
"""

from __future__ import annotations

import inspect
import types
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, WhisperForConditionalGeneration

from engine.train.collators import IGNORE  # one definition: what the collators pad labels with


def _plain(m: Any) -> bool:
    # exactly nn.Linear: bitsandbytes layers subclass it with packed weights
    return type(m) is torch.nn.Linear


def _linear_parts(m: Any):
    """(frozen weight, frozen bias, [(lora A, lora B, scale), ...]) of a projection whose
    output is ``x W^T + b + sum(scale * x A^T B^T)``, or None when it is anything else
    (quantized, DoRA or another variant, LoRA bias, active LoRA dropout, LoRA weights in
    another dtype than the base, as PEFT keeps them for a half-precision model on a GPU,
    a trainable base)."""
    base, loras = m, []
    if hasattr(m, "base_layer") and hasattr(m, "lora_A"):  # a PEFT LoRA layer
        base = m.base_layer
        if m.disable_adapters and m.merged:  # PEFT unmerges on the next forward: let it
            return None
        if not (m.disable_adapters or m.merged):  # disabled or merged: the base layer is the output
            for name in m.active_adapters:
                if name not in m.lora_A:
                    continue
                a, b, drop = m.lora_A[name], m.lora_B[name], m.lora_dropout[name]
                # dropout on the encoder frames would need a mask over all of them per step
                # (the RNG alone was ~25% of a CPU step): such layers take the stock forward
                dropping = isinstance(drop, torch.nn.Dropout) and drop.p > 0 and drop.training
                if (name in getattr(m, "lora_variant", {}) or dropping or not (_plain(a) and _plain(b))
                        or a.bias is not None or b.bias is not None
                        or a.weight.dtype != base.weight.dtype or b.weight.dtype != base.weight.dtype):
                    return None
                loras.append((a.weight, b.weight, m.scaling[name]))
    if not _plain(base) or base.weight.requires_grad or (base.bias is not None and base.bias.requires_grad):
        return None
    return base.weight, base.bias, loras


def _absorbed_pays(tgt: int, dim: int, heads: int) -> bool:
    """Whether the absorbed form costs fewer multiply-adds for ``tgt`` decoder positions.

    Per clip and layer, over S frames: stock = K and V projections 2*S*D^2 plus ~4*T*S*D for
    attention forward and backward; absorbed = 4 matmuls of H*T*D*S (scores and context,
    forward and backward); rank-r LoRA on K/V adds ~S*D*r each either way. Absorbed wins
    while T < D / (2 * (H - 1)): ~38 tokens for whisper tiny, ~35 for small; dictation
    sentences are mostly 15-35.
    """
    return tgt * 2 * (heads - 1) < dim


# The name under which the decoder layer hands a cross-attention its KV cache: transformers
# <= 5.23 says past_key_values, 5.24 renamed it to cache (the old name kept as a deprecated alias).
_CACHE_KWARGS = ("cache", "past_key_values", "past_key_value")
#: The keyword the installed Whisper forward takes its KV cache under (the alias goes in 5.40).
CACHE_ARG = "cache" if "cache" in inspect.signature(WhisperForConditionalGeneration.forward).parameters \
    else "past_key_values"


def _cross_attention_forward(self, hidden_states, key_value_states=None, *args, attention_mask=None,
                             output_attentions=False, **kwargs):
    bsz, tgt, dim = hidden_states.shape
    heads, hd = self.num_heads, self.head_dim
    kp = vp = None
    # Any cache, under whichever name, means generation: the stock forward fills and reuses it.
    cached = args or any(kwargs.get(k) is not None for k in _CACHE_KWARGS)
    if (key_value_states is not None and not cached and attention_mask is None
            and not output_attentions and not key_value_states.requires_grad and _absorbed_pays(tgt, dim, heads)):
        kp, vp = _linear_parts(self.k_proj), _linear_parts(self.v_proj)
    if kp is None or vp is None:
        return self._medtune_stock_forward(hidden_states, key_value_states, *args, attention_mask=attention_mask,
                                           output_attentions=output_attentions, **kwargs)
    (wk, _, k_loras), (wv, bv, v_loras) = kp, vp
    # Absorbed form: with e the encoder frames, q_h . (W_k,h e) = (q_h W_k,h) . e and
    # p_h (W_v,h e) = (p_h e) W_v,h^T, so neither K nor V over the frames is ever built; a
    # LoRA term s * B A e factors the same way through the rank-r (A e). Same order as the
    # stock forward for q: project, then scale.
    q = (self.q_proj(hidden_states) * self.scaling).view(bsz, tgt, heads, hd).transpose(1, 2)
    enc = key_value_states.to(q.dtype)
    qk = torch.matmul(q, wk.view(heads, hd, dim))  # [B, H, T, D]
    scores = torch.bmm(qk.reshape(bsz, heads * tgt, dim), enc.transpose(1, 2))  # [B, H*T, S]
    for a, b, scale in k_loras:
        qb = torch.matmul(q, b.view(heads, hd, -1)) * scale  # [B, H, T, r]
        scores = scores + torch.bmm(qb.reshape(bsz, heads * tgt, -1), F.linear(enc, a).transpose(1, 2))
    # A key bias would add q.b_k to a whole row of scores, which softmax ignores; Whisper has none.
    probs = torch.softmax(scores, dim=-1)
    if self.training and self.dropout:
        probs = F.dropout(probs, p=self.dropout)
    ctx = torch.bmm(probs, enc).view(bsz, heads, tgt, dim)  # [B, H, T, D]
    out = torch.matmul(ctx, wv.view(heads, hd, dim).transpose(1, 2))  # [B, H, T, hd]
    for a, b, scale in v_loras:
        pa = torch.bmm(probs, F.linear(enc, a)).view(bsz, heads, tgt, -1)  # [B, H, T, r]
        out = out + torch.matmul(pa, b.view(heads, hd, -1).transpose(1, 2)) * scale
    if bv is not None:  # rows of probs sum to 1, so the value bias adds once
        out = out + bv.view(1, heads, 1, hd)
    out = out.transpose(1, 2).reshape(bsz, tgt, dim)
    return self.out_proj(out), None


def speed_up_cross_attention(model: torch.nn.Module) -> int:
    """Give every decoder cross-attention the shortcut forward above; returns how many."""
    n = 0
    for name, mod in model.named_modules():
        if name.endswith("encoder_attn") and hasattr(mod, "k_proj") and not hasattr(mod, "_medtune_stock_forward"):
            mod._medtune_stock_forward = mod.forward
            mod.forward = types.MethodType(_cross_attention_forward, mod)
            n += 1
    return n


def _whisper(model: torch.nn.Module) -> Any:
    """The WhisperForConditionalGeneration under a PEFT wrapper (its LoRA layers sit inside it)."""
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not (hasattr(m, "proj_out") and hasattr(m, "model")):
        raise TypeError(f"not a Whisper-family seq2seq model: {type(m).__name__}")
    return m


class SpeechTrainer(Trainer):
    """Trainer for Whisper-family decoder training with the two shortcuts of this module.

    The loss equals the model's own (mean cross-entropy over target tokens); it is a
    per-batch mean, so the Trainer scales it for gradient accumulation as before.
    """

    loss_is_scaled_for_ga = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # older Trainers (no loss_is_scaled_for_ga) decide the scaling from this instead
        self.model_accepts_loss_kwargs = False
        speed_up_cross_attention(self.model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        whisper = _whisper(self.accelerator.unwrap_model(model))
        rest = {k: v for k, v in inputs.items() if k != "labels"}
        hidden = whisper.model(**rest, use_cache=False).last_hidden_state
        keep = labels != IGNORE
        logits = whisper.proj_out(hidden[keep])
        loss = F.cross_entropy(logits.float(), labels[keep])
        return (loss, {"loss": loss}) if return_outputs else loss
