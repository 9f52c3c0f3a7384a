"""A model's parameters counted from its config facts, module kind by module kind, without
building it: the memory planner (engine.plan) prices each kind at its own dtype (a 4-bit
linear layer, an fp32-upcast norm, a tied head that costs nothing twice).

The counts follow the transformers modeling code of each family exactly (tests/test_plan.py
checks them against ``sum(p.numel())`` of real and meta-device models): Llama and Qwen3
(grouped-query attention, gated MLP, RMSNorm; Qwen3 adds per-head q/k norms), Phi (biased
projections, parallel attention and MLP under one LayerNorm, biased head) and Whisper
(encoder and decoder stacks, key projection without bias, conv stem, learned positions, the
output projection tied to the token embedding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import ModelError

#: The model types counted here; others get a ModelError naming these.
FAMILIES = ("llama", "qwen3", "phi", "whisper")


@dataclass(frozen=True)
class Linear:
    """One linear layer of a block, by its leaf name (what peft's ``target_modules`` matches)."""

    name: str
    fan_in: int
    fan_out: int
    bias: bool

    @property
    def weight(self) -> int:
        return self.fan_in * self.fan_out


@dataclass(frozen=True)
class Stack:
    """``layers`` identical blocks: the decoder layers (Whisper: the encoder's, or the decoder's)."""

    name: str                      # "decoder" | "encoder"
    layers: int
    linears: tuple[Linear, ...]
    norms: int                     # per block: norm weights and biases (Qwen3: the q/k head norms too)

    @property
    def per_layer(self) -> int:
        return sum(li.weight + (li.fan_out if li.bias else 0) for li in self.linears) + self.norms


@dataclass(frozen=True)
class Shapes:
    """A model's parameters by kind, and the widths the activation model needs."""

    model_type: str
    hidden: int
    vocab: int
    stacks: tuple[Stack, ...]
    embedding: int                 # token embedding (vocab x hidden)
    positions: int                 # learned position embeddings (Whisper); RoPE models have none
    head: int                      # output head when not tied to the embedding (weight + bias), else 0
    other: int                     # final norms, Whisper's conv stem
    facts: dict[str, Any]

    @property
    def params(self) -> int:
        """Every parameter once (a tied head is the embedding), as ``sum(p.numel())`` counts them."""
        return sum(s.layers * s.per_layer for s in self.stacks) + self.embedding + self.positions + self.head \
            + self.other

    def stack(self, name: str) -> Stack | None:
        return next((s for s in self.stacks if s.name == name), None)


def shapes(f: dict[str, Any]) -> Shapes:
    """The :class:`Shapes` of config facts ``f`` (a config.json as a dict)."""
    kind = str(f.get("model_type", ""))
    if kind in ("llama", "qwen3"):
        return _llama(f, kind)
    if kind == "phi":
        return _phi(f)
    if kind == "whisper":
        return _whisper(f)
    raise ModelError(f"The memory planner does not know the model type '{kind or '?'}'.",
                     hint=f"It counts {', '.join(FAMILIES)} models from their config.json.")


def _heads(f: dict[str, Any], hidden: int) -> tuple[int, int, int]:
    heads = int(f["num_attention_heads"])
    kv = int(f.get("num_key_value_heads") or heads)
    head_dim = int(f.get("head_dim") or hidden // heads)
    return heads, kv, head_dim


def _llama(f: dict[str, Any], kind: str) -> Shapes:
    h, inter, vocab = int(f["hidden_size"]), int(f["intermediate_size"]), int(f["vocab_size"])
    heads, kv, hd = _heads(f, h)
    ab = bool(f.get("attention_bias", False))
    mb = bool(f.get("mlp_bias", False)) if kind == "llama" else False  # Qwen3's MLP has no bias option
    linears = (Linear("q_proj", h, heads * hd, ab), Linear("k_proj", h, kv * hd, ab), Linear("v_proj", h, kv * hd, ab),
               Linear("o_proj", heads * hd, h, ab),
               Linear("gate_proj", h, inter, mb), Linear("up_proj", h, inter, mb), Linear("down_proj", inter, h, mb))
    norms = 2 * h + (2 * hd if kind == "qwen3" else 0)  # two RMSNorms; Qwen3: q_norm and k_norm over a head
    tied = bool(f.get("tie_word_embeddings", False))
    return Shapes(kind, h, vocab, (Stack("decoder", int(f["num_hidden_layers"]), linears, norms),),
                  embedding=vocab * h, positions=0, head=0 if tied else vocab * h, other=h, facts=f)


def _phi(f: dict[str, Any]) -> Shapes:
    h, inter, vocab = int(f["hidden_size"]), int(f["intermediate_size"]), int(f["vocab_size"])
    heads, kv, hd = _heads(f, h)
    linears = (Linear("q_proj", h, heads * hd, True), Linear("k_proj", h, kv * hd, True),
               Linear("v_proj", h, kv * hd, True), Linear("dense", heads * hd, h, True),
               Linear("fc1", h, inter, True), Linear("fc2", inter, h, True))
    norms = 2 * h + (4 * hd if f.get("qk_layernorm") else 0)  # one LayerNorm (weight + bias) per layer
    tied = bool(f.get("tie_word_embeddings", False))
    return Shapes("phi", h, vocab, (Stack("decoder", int(f["num_hidden_layers"]), linears, norms),),
                  embedding=vocab * h, positions=0, head=0 if tied else vocab * h + vocab,
                  other=2 * h, facts=f)  # final LayerNorm; the head has a bias


def _whisper(f: dict[str, Any]) -> Shapes:
    d, vocab, mels = int(f["d_model"]), int(f["vocab_size"]), int(f.get("num_mel_bins", 80))

    def attn(prefix: str = "") -> tuple[Linear, ...]:
        return (Linear(f"{prefix}q_proj", d, d, True), Linear(f"{prefix}k_proj", d, d, False),
                Linear(f"{prefix}v_proj", d, d, True), Linear(f"{prefix}out_proj", d, d, True))

    enc_ffn, dec_ffn = int(f["encoder_ffn_dim"]), int(f["decoder_ffn_dim"])
    encoder = Stack("encoder", int(f["encoder_layers"]),
                    attn() + (Linear("fc1", d, enc_ffn, True), Linear("fc2", enc_ffn, d, True)), norms=2 * 2 * d)
    # the decoder's cross-attention layers have the same leaf names (encoder_attn.q_proj, ...)
    decoder = Stack("decoder", int(f["decoder_layers"]),
                    attn() + attn("encoder_attn.") + (Linear("fc1", d, dec_ffn, True), Linear("fc2", dec_ffn, d, True)),
                    norms=3 * 2 * d)
    conv = mels * d * 3 + d + d * d * 3 + d  # conv1 (mels -> d, kernel 3), conv2 (d -> d, kernel 3, stride 2)
    positions = (int(f["max_source_positions"]) + int(f["max_target_positions"])) * d
    return Shapes("whisper", d, vocab, (encoder, decoder), embedding=vocab * d, positions=positions,
                  head=0,  # proj_out is tied to the decoder's token embedding
                  other=conv + 2 * 2 * d, facts=f)  # + the encoder's and the decoder's final LayerNorms


def leaf(name: str) -> str:
    """The leaf module name peft matches (``encoder_attn.k_proj`` -> ``k_proj``)."""
    return name.rsplit(".", 1)[-1]
