"""The memory planner: a run's peak accelerator memory, predicted from its config before launch.

Pure arithmetic over the model's config facts (no torch, no weights): the Train form and
``medtune train --plan`` show it. The peak of one training step is split as

- **weights**: every parameter once, each at its own dtype. Quantized models keep the decoder
  blocks' linear layers 4-bit (NF4 + double quantization: half a byte per weight plus the
  block statistics) or 8-bit (a byte per weight plus a float32 scale per output row); the
  heads (lm_head / proj_out) stay unquantized, and peft's ``prepare_model_for_kbit_training``
  upcasts every other half-precision parameter (embeddings, norms, biases, the head) to
  float32. Unquantized weights are in ``model.dtype`` (auto: bfloat16 on a GPU, float32 on a CPU).
- **LoRA + optimizer**: the adapters (r x (in + out) per targeted linear layer, float32: peft
  keeps adapters of a half-precision model in float32), their float32 gradients and AdamW's
  two float32 moments: 16 bytes per adapter weight. A full fine-tune instead keeps a gradient
  and two moments per weight, in the weight's dtype (torch's AdamW allocates them like the
  parameter: float32 only for float32 weights, as fp16 mixed precision needs). The Trainer's
  default AdamW is fused and steps in place, so the step itself adds nothing worth counting.
- **activations**: what one step of ``batch_size`` x ``max_length`` tokens keeps for the
  backward pass, tensor by tensor, from the modeling code of each family (see ``_Step``):
  norms keep their input in float32; attention (SDPA, no seq x seq matrix on either device:
  PyTorch's CPU and CUDA flash kernels keep q, k, v, the output and a log-sum-exp) keeps its
  inputs and output; the MLP keeps its intermediate activations; a LoRA layer keeps its
  (dropped-out) input and the rank-r product; a frozen base layer keeps nothing of its input
  (a bitsandbytes 8-bit one does). Then the loss: transformers upcasts the logits to float32,
  and the backward of the cross-entropy holds the log-softmax output, its gradient and the
  logits' gradient at once, 12 bytes per logit, while every layer's activations are still
  held. With gradient checkpointing each layer keeps only its input, and one layer's full
  set is rebuilt at a time. Whisper trains its decoder on cached encoder outputs (the frames
  are the batch's input) unless ``lora.encoder_lora`` or a full fine-tune runs the encoder too.
- **overhead**: :data:`CUDA_OVERHEAD` on a GPU (the CUDA context with cuBLAS/cuDNN and the
  caching allocator's slack), 0 on a CPU (where the runtime's own resident memory, torch and
  transformers imported, is the floor the figures are measured above).

Checked on this project's CPU (tests/test_plan.py; figures in bench/RESULTS.md section 7):
the parameter counts equal real models'; the activation inventory equals, within the rotary
tables, the bytes autograd saves in real forward passes of every family (LoRA with and without
dropout, partial targets, 4-bit, full fine-tunes, Whisper's encoder on or off); the planned
total came within 6% of the measured peak of real training steps (SmolLM2-135M with and
without checkpointing; 2-layer builds of Llama-3.1-8B and phi-2 4-bit and of Whisper-small).
That peak is measured with glibc returning freed memory (:data:`LIVE_MEMORY_ENV`): with its
default dynamic mmap threshold, freed activations stay in the heap and a CPU process's RSS ran
7-46% above its live tensors, the more the smaller they are. The GPU figures apply the same
inventory with autocast's dtypes; they are derived from the code paths, not measured here (no
GPU lent).

Not modeled: allocator fragmentation beyond the constant above (and glibc's heap retention on
a CPU), NCCL buffers and several processes' sharding (launch.processes, FSDP/ZeRO: the plan is
one process holding the whole model), kernels' workspaces (cuBLAS, a 4-bit layer's dequantized
weight during its matmul), evaluation (generation's KV cache, eval batches), padding (batches
are planned full at ``max_length``, the worst case for length; a padded batch adds a mask and,
with grouped-query attention, K/V repeated to every head), DoRA's extra activations (its
magnitude vectors are counted), Whisper's absorbed cross-attention (taken for short targets,
it needs less than planned), what loading holds beyond the weights (a tokenizer, a
checkpoint's mapping: ~30 MB measured), and NeMo models (Canary-Qwen).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.errors import ModelError
from engine.models import architectures
from engine.models.embedded import embedded_dir, is_ready
from engine.models.registry import resolve_model
from engine.models.shapes import Linear, Shapes, Stack, leaf, shapes

GIB = 1 << 30
#: The cards the plan is checked against, in GB of 2**30 bytes (an "80 GB" card has 80 GiB;
#: a "24 GB" one 23.99).
CARDS = (16, 24, 40, 80)
#: CUDA context with the cuBLAS/cuDNN handles (~0.5-0.8 GB on recent cards) plus the caching
#: allocator's reserved-but-unused slack at the step's peak: a stated constant, not measured here.
CUDA_OVERHEAD = GIB
#: Bytes per element of a dtype name.
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: bitsandbytes NF4: 64 weights per absmax block; double quantization stores each absmax as one
#: byte with a float32 absmax per 256 blocks, plus its 256-entry float32 code, the 16-entry NF4
#: code and a float32 offset per layer (checked against built layers in tests/test_plan.py).
NF4_BLOCK, NF4_BLOCK2 = 64, 256
#: The environment under which a CPU process's RSS tracks its live tensors, what the plan predicts:
#: glibc's default raises its mmap threshold to 32 MiB after the first large free, and the freed
#: activations then stay in the heap as holes RSS counts (7-46% above the live memory measured,
#: bench/RESULTS.md section 7). A CPU peak meant to check the plan (a rehearsal's) runs under it.
LIVE_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}
#: The knobs tried for advice, in order; the biggest saving wins.
KNOBS = ("full_finetune", "quantization", "gradient_checkpointing", "batch_size", "max_length", "lora_r")


@dataclass
class Plan:
    """A step's predicted peak memory (bytes) on ``device`` and what it fits."""

    model: str
    device: str                   # "cuda" | "cpu"
    weights: int
    lora_and_optimizer: int
    activations: int
    overhead: int
    total: int
    params: int                   # the model's parameters
    trainable: int                # what the optimizer updates (adapters, or every weight)
    fits: dict[int, bool]         # card size in GB -> whether the total fits
    advice: str = ""
    layers: int | None = None     # planned at reduced depth (a rehearsal's), None = the whole model

    def rows(self) -> list[list[str]]:
        """(part, GB, share) rows for a table."""
        parts = [("weights", self.weights), ("LoRA + optimizer", self.lora_and_optimizer),
                 ("activations", self.activations), ("overhead", self.overhead), ("total", self.total)]
        return [[name, f"{gb(v):.2f}", f"{100 * v / max(1, self.total):.0f}%"] for name, v in parts]

    def fits_line(self) -> str:
        return "  ".join(f"{card} GB {'yes' if ok else 'no'}" for card, ok in self.fits.items())

    def to_text(self) -> str:
        where = "GPU" if self.device == "cuda" else "CPU"
        depth = f" at {self.layers} layers" if self.layers else ""
        lines = [f"memory plan for {self.model}{depth} on a {where}: {gb(self.total):.2f} GB peak "
                 f"({self.params / 1e9:.2f}B parameters, {self.trainable:,} trainable)"]
        lines += [f"  {name:<18}{value:>9} GB  {share:>4}" for name, value, share in self.rows()]
        lines.append(f"  fits: {self.fits_line()}")
        if self.advice:
            lines.append(f"  advice: {self.advice}")
        return "\n".join(lines)


def gb(n: float) -> float:
    return n / GIB


# ---- the model's facts -----------------------------------------------------------------------
def model_facts(name: str) -> dict[str, Any]:
    """Config facts of ``name``: the workbench's published facts (assets/architectures), else the
    model's own config.json (an embedded model, a local folder, a Hub model in the local cache)."""
    if architectures.facts_name(name):
        f = architectures.facts(name)
        if "llm" in f:
            llm = next((k for k, v in architectures.FOR_MODEL.items() if v == f["llm"]), f["llm"])
            raise ModelError(f"The memory planner does not model {name}: it trains through NeMo (speechlm2), "
                             "whose audio encoder and modality adapter it has no activation model for.",
                             hint=f"Its LLM alone plans as {llm}; the recipe's comment gives NeMo's figure.")
        return f
    spec = resolve_model(name)
    path: Path | None = None
    if spec.embedded:
        key = spec.source.split(":", 1)[1]
        if not is_ready(key):
            raise ModelError(f"The memory planner needs the config.json of {name}, which is not converted yet.",
                             hint=f"Run `medtune models fetch {name}` (about a minute, once), then plan again.")
        path = embedded_dir(key) / "config.json"
    elif spec.local:
        path = Path(spec.source) / "config.json"
    else:
        path = _hub_cached_config(spec.source)
    if path is None or not path.is_file():
        raise ModelError(f"The memory planner needs the config.json of {name}, and it is not on this machine.",
                         hint="Download the model (or only its config.json) into a folder and give the folder, "
                              "or pick a model of `medtune models list`.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: cannot read the model config ({e}).") from e


def _hub_cached_config(repo: str) -> Path | None:
    """A Hub model's config.json when the Hugging Face cache already holds it (nothing is downloaded)."""
    from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415 - Hub ids without facts only; UI starts light

    hit = try_to_load_from_cache(repo, "config.json")
    return Path(hit) if isinstance(hit, str) else None


# ---- one training step, resolved to bytes ----------------------------------------------------
@dataclass(frozen=True)
class _Step:
    """What a step's memory depends on, resolved from the config and the device to byte sizes.

    ``c``: bytes of what a matmul computes (bf16/fp16 under the GPU's autocast; on a CPU, where
    the Trainer runs without autocast, the weights' dtype, float32 for a quantized model).
    ``rb``: the hidden states between layers (a quantized model's embeddings are upcast to
    float32, so its residual stream is float32 even on a GPU). ``wb``: a non-quantized weight.
    """

    device: str
    batch: int
    length: int
    quant: str
    full: bool
    autocast: bool
    c: int
    rb: int
    wb: int
    dropout: bool
    r: int
    gc: bool
    targets: frozenset[tuple[str, str]]   # (stack, linear name) with LoRA
    encoder: bool                         # Whisper's encoder runs in the step (LoRA on it, or a full fine-tune)

    @property
    def la(self) -> int:
        """Bytes of what a LoRA layer computes: float32 adapters, unless autocast runs them in half."""
        return self.c if self.autocast else 4

    def ob(self, in_b: int) -> int:
        """Bytes of a base linear layer's output for an input of ``in_b`` bytes: bitsandbytes
        layers return their input's dtype; plain ones what autocast (or the weights) compute in."""
        return in_b if self.quant != "none" else self.c

    def norm_out(self, layer_norm: bool) -> int:
        """Bytes of a norm's output: autocast runs LayerNorm in float32; an RMSNorm returns its
        weight's dtype times its input's."""
        return 4 if layer_norm and self.autocast else max(self.wb, self.rb)

    def lora(self, stack: str, name: str) -> bool:
        return (stack, name) in self.targets

    def inputs(self, stack: str, width: int, members: tuple[str, ...], in_b: int, *, grad: bool = True,
               saved: bool = False, dropout: bool | None = None) -> float:
        """Bytes per token that linear layers sharing one input (``width`` wide, ``in_b`` bytes)
        keep of it for the backward pass. ``grad``: the input carries a gradient (the first
        layer's does not unless the embeddings train or inputs are made to require it);
        ``saved``: the input is kept by something else already; ``dropout``: whether LoRA dropout
        applies here (default: lora.dropout > 0)."""
        total, shared = 0.0, saved
        dropout = self.dropout if dropout is None else dropout
        if self.full or (self.quant == "8bit" and (grad or self.device == "cpu")):
            # a trainable weight keeps its input, and so does bnb's 8-bit matmul (on a CPU always)
            if self.full and self.autocast and in_b != self.c:
                total += len(members) * width * self.c  # autocast casts it once per layer
            elif not shared:
                total, shared = total + width * in_b, True
        if self.full:
            return total
        for name in members:
            if not self.lora(stack, name):
                continue
            if dropout:  # the dropped-out copy, and the mask (bool on CUDA, the input's dtype on a CPU)
                total += width * (self.la + ((1 if self.device == "cuda" else self.la) if grad else 0))
            elif self.autocast:  # peft casts to its float32 adapters, autocast back: a fresh copy per layer
                total += width * self.c
            elif in_b != 4:
                total += width * 4
            elif not shared:
                total, shared = total + width * in_b, True
            total += self.r * self.la  # lora_A's output, kept by lora_B
        return total

    def grads(self, stack: str, grad: bool, *names: str) -> bool:
        """Whether the output of linear layers ``names`` (fed by an input with ``grad``) carries a gradient."""
        return grad or self.full or any(self.lora(stack, n) for n in names)


def _step(cfg: RunConfig, s: Shapes, device: str) -> _Step:
    quant, full = cfg.model.quantization, cfg.lora.full_finetune
    named = DTYPE_BYTES.get(cfg.model.dtype)
    if quant != "none" and not full:
        wb = 4  # prepare_model_for_kbit_training upcasts every half-precision parameter left
    else:
        wb = named or (2 if device == "cuda" else 4)
    autocast = device == "cuda" and cfg.train.precision != "fp32"
    if device == "cuda":  # without autocast (precision fp32) a GPU computes in the weights' dtype
        c = 2 if autocast else 4 if wb == 4 else 2
        rb = wb
    else:
        c = rb = wb
    return _Step(device=device, batch=cfg.train.batch_size, length=cfg.train.max_length, quant=quant, full=full,
                 autocast=autocast, c=c, rb=rb, wb=wb, dropout=cfg.lora.dropout > 0, r=cfg.lora.r,
                 gc=cfg.train.gradient_checkpointing, targets=frozenset() if full else _targets(cfg, s),
                 encoder=s.model_type == "whisper" and (cfg.lora.encoder_lora or full))


def _targets(cfg: RunConfig, s: Shapes) -> frozenset[tuple[str, str]]:
    """(stack, linear) pairs that get LoRA, as engine.train.model.target_modules picks them:
    auto and all-linear = every linear layer of the blocks (never the heads); a list = those leaf
    names; Whisper's encoder only with lora.encoder_lora."""
    tm = cfg.lora.target_modules.strip()
    names = None if tm in ("auto", "all-linear") else {t.strip() for t in tm.split(",") if t.strip()}
    out = set()
    for st in s.stacks:
        if s.model_type == "whisper" and st.name == "encoder" and not cfg.lora.encoder_lora:
            continue
        for li in st.linears:
            if names is None or leaf(li.name) in names or li.name in names:
                out.add((st.name, li.name))
    return frozenset(out)


# ---- activations per layer (bytes per token) -------------------------------------------------
def _norm(width: int) -> int:
    """A norm keeps its input in float32 (RMSNorm upcasts it; autocast runs LayerNorm in float32)
    and its float32 statistics per token: LayerNorm's mean and 1/std (RMSNorm's one 1/rms is
    counted as two too: 4 bytes a token, within the inventory test's tolerance)."""
    return 4 * width + 8


def _attention(st: _Step, heads: int, kv: int, hd: int) -> float:
    """SDPA keeps q, k, v, its output (in the compute dtype) and a float32 log-sum-exp per head."""
    return heads * hd * st.c * 2 + 2 * kv * hd * st.c + 4 * heads


def _out_shared(st: _Step, model_type: str) -> bool:
    """Whether the attention output projection's input is the very tensor SDPA keeps. On a CPU
    the flash kernel's output follows q's layout: a transposed view (Llama, Qwen3) gives an
    output whose transpose back is free; a contiguous q (Phi's concatenation, Whisper's
    .contiguous()) makes the reshape a copy. CUDA kernels write (batch, seq, heads, dim)."""
    return st.device == "cuda" or model_type in ("llama", "qwen3")


def _llama_layer(s: Shapes, st: _Step, stack: Stack, g: bool) -> tuple[float, bool]:
    """(bytes per token, whether the output carries a gradient) of a Llama/Qwen3 decoder layer
    whose input carries a gradient when ``g``."""
    f, h, n = s.facts, s.hidden, stack.name
    heads, kv, hd = _dims(f, h)
    inter = int(f["intermediate_size"])
    nb = st.norm_out(layer_norm=False)
    ob = st.ob(nb)
    b = _norm(h) if g else 0
    b += st.inputs(n, h, ("q_proj", "k_proj", "v_proj"), nb, grad=g)
    gq, gk, gv = (st.grads(n, g, x) for x in ("q_proj", "k_proj", "v_proj"))
    if s.model_type == "qwen3":  # q_norm/k_norm over each head: float32 inputs and 1/rms per head
        b += (4 * heads * hd + 4 * heads if gq else 0) + (4 * kv * hd + 4 * kv if gk else 0)
    ga = gq or gk or gv
    if ga:  # no padding mask: grouped-query SDPA, K/V not repeated
        b += _attention(st, heads, kv, hd)
    b += st.inputs(n, heads * hd, ("o_proj",), st.c, grad=ga, saved=ga and _out_shared(st, s.model_type))
    g = g or st.grads(n, ga, "o_proj")
    b += _norm(h) if g else 0
    b += st.inputs(n, h, ("gate_proj", "up_proj"), nb, grad=g)
    gg, gu = st.grads(n, g, "gate_proj"), st.grads(n, g, "up_proj")
    # SiLU keeps gate's output; the product keeps SiLU's output (for up's gradient) and up's output
    b += inter * ob * (2 * gg + gu)
    b += st.inputs(n, inter, ("down_proj",), ob, grad=gg or gu)
    if st.full:  # trainable RMSNorm weights keep the normalised input (Qwen3's q/k norms too)
        b += 2 * h * st.rb + ((heads + kv) * hd * ob if s.model_type == "qwen3" else 0)
    return b, g or st.grads(n, gg or gu, "down_proj")


def _phi_layer(s: Shapes, st: _Step, stack: Stack, g: bool) -> tuple[float, bool]:
    """As :func:`_llama_layer`, for Phi: attention and MLP in parallel under one LayerNorm."""
    f, h, n = s.facts, s.hidden, stack.name
    heads, kv, hd = _dims(f, h)
    inter = int(f["intermediate_size"])
    nb = st.norm_out(layer_norm=True)
    ob = st.ob(nb)
    b = _norm(h) if g else 0  # one LayerNorm feeds attention and MLP (a parallel block)
    b += st.inputs(n, h, ("q_proj", "k_proj", "v_proj", "fc1"), nb, grad=g)
    ga = any(st.grads(n, g, x) for x in ("q_proj", "k_proj", "v_proj"))
    if ga:  # partial rotary: the concatenated q and k are what SDPA keeps
        b += _attention(st, heads, kv, hd)
    b += st.inputs(n, heads * hd, ("dense",), st.c, grad=ga, saved=ga and _out_shared(st, "phi"))
    g1 = st.grads(n, g, "fc1")
    # gelu_new is Python, 0.5*x*(1+tanh(...)): it keeps x, 0.5*x, tanh and 1+tanh, the last two
    # float32 under autocast (whose pow is float32)
    t = 4 if st.autocast and g1 else ob
    if g1:
        b += 2 * inter * ob + 2 * inter * t
    b += st.inputs(n, inter, ("fc2",), max(ob, t), grad=g1)
    if float(f.get("resid_pdrop", 0) or 0) > 0:  # resid_dropout on the attention and MLP outputs: two masks
        mask = 1 if st.device == "cuda" else st.c
        b += h * mask * ((1 if st.grads(n, ga, "dense") else 0) + (1 if st.grads(n, g1, "fc2") else 0))
    return b, g or st.grads(n, ga, "dense") or st.grads(n, g1, "fc2")


def _whisper_layer(s: Shapes, st: _Step, stack: Stack, g: bool) -> tuple[float, bool]:
    """Per token of the stack (decoder tokens, or encoder frames); the decoder's cross-attention
    over the frames is :func:`_whisper_frames`."""
    f, d, n = s.facts, s.hidden, stack.name
    heads = int(f["decoder_attention_heads" if n == "decoder" else "encoder_attention_heads"])
    ffn = int(f["decoder_ffn_dim" if n == "decoder" else "encoder_ffn_dim"])
    nb = st.norm_out(layer_norm=True)
    ob = st.ob(nb)
    shared = _out_shared(st, "whisper")
    b = _norm(d) if g else 0
    b += st.inputs(n, d, ("q_proj", "k_proj", "v_proj"), nb, grad=g)
    ga = any(st.grads(n, g, x) for x in ("q_proj", "k_proj", "v_proj"))
    if ga:
        b += _attention(st, heads, heads, d // heads)
    b += st.inputs(n, d, ("out_proj",), st.c, grad=ga, saved=ga and shared)
    g = g or st.grads(n, ga, "out_proj")
    if n == "decoder":  # cross-attention over the frames: its norm, q over the tokens, output, log-sum-exp
        b += _norm(d) if g else 0
        b += st.inputs(n, d, ("encoder_attn.q_proj",), nb, grad=g)
        gx = st.grads(n, g or st.encoder, "encoder_attn.q_proj", "encoder_attn.k_proj", "encoder_attn.v_proj")
        if gx:
            b += 2 * d * st.c + 4 * heads
        b += st.inputs(n, d, ("encoder_attn.out_proj",), st.c, grad=gx, saved=gx and shared)
        g = g or st.grads(n, gx, "encoder_attn.out_proj")
    b += _norm(d) if g else 0
    b += st.inputs(n, d, ("fc1",), nb, grad=g)
    g1 = st.grads(n, g, "fc1")
    b += ffn * ob if g1 else 0  # fc1's output, kept by GELU
    b += st.inputs(n, ffn, ("fc2",), ob, grad=g1)
    return b, g or st.grads(n, g1, "fc2")


def _whisper_frames(s: Shapes, st: _Step, g: bool) -> float:
    """Per encoder frame and decoder layer: the cross-attention's keys and values over the frames
    (kept by SDPA when anything there carries a gradient) and what encoder_attn.k_proj/v_proj
    keep of the frames. Their LoRA dropout is off on the frames when the encoder is frozen
    (engine.train.model); on a CPU without dropout they keep the frames tensor itself, counted once."""
    names = ("encoder_attn.k_proj", "encoder_attn.v_proj")
    b = 2 * s.hidden * st.c if st.grads("decoder", g or st.encoder, "encoder_attn.q_proj", *names) else 0
    in_b = 4 if not st.encoder else st.norm_out(layer_norm=True)  # cached float32 frames, or the encoder's output
    return b + st.inputs("decoder", s.hidden, names, in_b, grad=st.encoder, saved=True,
                         dropout=st.dropout and st.encoder)


_LAYER = {"llama": _llama_layer, "qwen3": _llama_layer, "phi": _phi_layer, "whisper": _whisper_layer}


def _rope(s: Shapes, st: _Step) -> int:
    """The rotary cos/sin tables (one pair per step, shared by every layer), kept by the rotation's products."""
    if s.model_type == "whisper":
        return 0
    hd = _dims(s.facts, s.hidden)[2]
    rot = int(hd * float(s.facts.get("partial_rotary_factor", 1.0) or 1.0))
    return 2 * st.length * rot * st.rb


def _dims(f: dict[str, Any], h: int) -> tuple[int, int, int]:
    heads = int(f["num_attention_heads"])
    return heads, int(f.get("num_key_value_heads") or heads), int(f.get("head_dim") or h // heads)


# ---- the parts ---------------------------------------------------------------------------------
def _weights(s: Shapes, st: _Step) -> int:
    """Every parameter once at its dtype; quantized decoder-block linear weights at bitsandbytes' size."""
    total = 0
    for stack in s.stacks:
        for li in stack.linears:
            total += stack.layers * (_linear_bytes(li, st) + (li.fan_out * st.wb if li.bias else 0))
        total += stack.layers * stack.norms * st.wb
    return total + (s.embedding + s.positions + s.head + s.other) * st.wb


def _linear_bytes(li: Linear, st: _Step) -> int:
    n = li.weight
    if st.quant == "4bit":
        blocks = math.ceil(n / NF4_BLOCK)
        return math.ceil(n / 2) + blocks + 4 * math.ceil(blocks / NF4_BLOCK2) + 4 * (256 + 16 + 1)
    if st.quant == "8bit":
        return n + 4 * li.fan_out
    return n * st.wb


def _trainable(cfg: RunConfig, s: Shapes, st: _Step) -> tuple[int, int]:
    """(trainable parameters, their bytes): LoRA's A and B (float32; DoRA adds a magnitude per
    output) plus the biases lora.bias trains, or every weight of a full fine-tune."""
    if st.full:
        return s.params, s.params * st.wb
    n, bias = 0, 0
    for stack in s.stacks:
        for li in stack.linears:
            on = st.lora(stack.name, li.name)
            if on:
                n += stack.layers * (st.r * (li.fan_in + li.fan_out) + (li.fan_out if cfg.lora.use_dora else 0))
            if li.bias and (cfg.lora.bias == "all" or (on and cfg.lora.bias == "lora_only")):
                bias += stack.layers * li.fan_out
    return n + bias, n * 4 + bias * st.wb


def _activations(s: Shapes, st: _Step) -> int:
    """One step's activations at their peak: every layer's saved tensors plus the loss's backward,
    or with checkpointing the layers' inputs plus the larger of the loss and one layer rebuilt."""
    layer = _LAYER[s.model_type]
    tokens = st.batch * st.length
    frames = st.batch * int(s.facts.get("max_source_positions", 0)) if s.model_type == "whisper" else 0
    # The first layer's input carries a gradient only when the embeddings train, or when
    # engine.train.model makes it (gradient checkpointing of an unquantized model); before the
    # first LoRA layer nothing else keeps anything.
    g0 = st.full or (st.gc and st.quant == "none")
    held, rebuild = 0.0, 0.0
    for stack in s.stacks:
        if stack.name == "encoder" and not st.encoder:
            continue
        n = frames if stack.name == "encoder" else tokens
        g = g0
        for _ in range(stack.layers):
            per_token, g_out = layer(s, st, stack, g)
            full = per_token * n + (_whisper_frames(s, st, g) * frames if stack.name == "decoder" and frames else 0)
            if st.gc:  # each layer keeps its input; one layer at a time is rebuilt with everything
                held += n * s.hidden * st.rb
                rebuild = max(rebuild, full)
            else:
                held += full
            g = g_out
    kept = tokens * _norm(s.hidden)  # the final norm's input
    if st.full:  # the trainable head keeps its input; a trainable RMSNorm weight its normalised input
        kept += tokens * s.hidden * (st.c + (st.rb if s.model_type in ("llama", "qwen3") else 0))
    if frames and not st.encoder:  # the batch: cached encoder outputs (float32)
        kept += frames * s.hidden * 4
    elif frames:  # the encoder's final norm, and its output where the cross-attention's k/v keep it itself
        kept += frames * _norm(s.hidden)
        if not st.autocast and (st.full or not st.dropout):
            kept += frames * s.hidden * st.norm_out(layer_norm=True)
        # a full fine-tune's conv stem keeps the log-mel input, both convolutions' outputs and GELU's
        if st.full:
            mels = int(s.facts.get("num_mel_bins", 80))
            kept += frames * (2 * mels * 4 + 2 * 2 * s.hidden * st.c + s.hidden * st.c)
    loss = tokens * 12 * s.vocab  # float32 log-softmax output, its gradient and the logits' gradient
    kept += _rope(s, st)
    return int(held + kept + max(loss, rebuild))


def _optimizer(trainable_bytes: int, st: _Step) -> int:
    """The adapters (a full fine-tune's parameters are the weights), their gradients and AdamW's
    two moments, each allocated like its parameter. The Trainer's default AdamW is the fused
    kernel (transformers 5 with torch >= 2.8), which steps in place: no scratch worth counting."""
    return (0 if st.full else trainable_bytes) + 3 * trainable_bytes


def estimate(cfg: RunConfig, *, device: str = "cuda", layers: int | None = None) -> Plan:
    """The predicted peak memory of one training step of ``cfg`` on ``device`` ("cuda": a GPU
    computing in bf16/fp16 per train.precision; "cpu": the same config on a CPU, in float32
    unless model.dtype says otherwise), at ``layers`` depth (a rehearsal's: full width, full
    vocabulary; default the whole model). ModelError when the planner has no facts for the model."""
    if device not in ("cuda", "cpu"):
        raise ModelError(f"Unknown plan device '{device}'.", hint="Plan for cuda or cpu.")
    f = architectures.with_layers(model_facts(cfg.model.name), layers)
    return plan_for(cfg, f, device, layers=layers)


def plan_for(cfg: RunConfig, f: dict[str, Any], device: str, *, layers: int | None = None,
             advise: bool = True) -> Plan:
    """:func:`estimate` for config facts ``f`` already in hand (a rehearsal's build, a checkpoint's
    config.json); ``cfg.model.name`` only names the plan. ``layers`` is recorded, not applied."""
    s = shapes(f)
    st = _step(cfg, s, device)
    weights = _weights(s, st)
    trainable, tbytes = _trainable(cfg, s, st)
    act = _activations(s, st)
    opt = _optimizer(tbytes, st)
    overhead = CUDA_OVERHEAD if device == "cuda" else 0
    total = weights + opt + act + overhead
    plan = Plan(cfg.model.name, device, weights, opt, act, overhead, total, s.params, trainable,
                {card: total <= card * GIB for card in CARDS}, layers=layers)
    if advise and not plan.fits[24]:
        plan.advice = _advice(cfg, f, device, layers, total)
    return plan


def _advice(cfg: RunConfig, f: dict[str, Any], device: str, layers: int | None, total: int) -> str:
    """The knob (of :data:`KNOBS`, not already set) whose change saves the most, in words."""
    best: tuple[int, str, int] | None = None
    for knob in KNOBS:
        change = _knob(cfg, knob)
        if change is None:
            continue
        values, words = change
        after = plan_for(cfg.with_values(values), f, device, layers=layers, advise=False).total
        if after < total and (best is None or total - after > best[0]):
            best = (total - after, words, after)
    if best is None:
        return "No single setting brings it down; plan for a bigger card or several GPUs (FSDP / ZeRO-3)."
    saving, words, after = best
    fit = next((f"fits {card} GB" for card in CARDS if after <= card * GIB), "still fits no card here")
    return f"{words}: saves {gb(saving):.1f} GB ({gb(after):.1f} GB, {fit})."


def _knob(cfg: RunConfig, knob: str) -> tuple[dict[str, Any], str] | None:
    t, lo = cfg.train, cfg.lora
    if knob == "full_finetune" and lo.full_finetune:
        return {"lora.full_finetune": False}, "Train a LoRA adapter instead of every weight (lora.full_finetune: false)"
    if knob == "quantization" and cfg.model.quantization != "4bit" and not lo.full_finetune:
        return {"model.quantization": "4bit"}, "Load the weights 4-bit (model.quantization: 4bit, QLoRA)"
    if knob == "gradient_checkpointing" and not t.gradient_checkpointing:
        return {"train.gradient_checkpointing": True}, "Turn on train.gradient_checkpointing"
    if knob == "batch_size" and t.batch_size > 1:
        b = t.batch_size // 2
        return ({"train.batch_size": b, "train.grad_accum": t.grad_accum * 2},
                f"Halve train.batch_size to {b} and double train.grad_accum to {t.grad_accum * 2} "
                "(same effective batch)")
    if knob == "max_length" and t.max_length >= 16:
        return {"train.max_length": t.max_length // 2}, f"Shorten train.max_length to {t.max_length // 2}"
    if knob == "lora_r" and lo.r > 1 and not lo.full_finetune:
        return {"lora.r": lo.r // 2}, f"Lower lora.r to {lo.r // 2}"
    return None
