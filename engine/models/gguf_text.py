"""Turn a GGUF causal LM (SmolLM2's Q4_1 file) into a plain transformers checkpoint.

transformers reads GGUF through a "gguf quantizer" that marks the model as not
serialisable, even though on a CPU without GGUF matmul kernels it de-quantizes every
weight to dense float32 anyway. So we load with ``dequantize=True`` and copy the dense
weights into a freshly built model of the same config: that model is an ordinary
``PreTrainedModel`` that saves as safetensors and trains with LoRA like any other.

Saved in float32, not bf16: the de-quantized Q4_1 values are exact in float32, CPU
training and LoRA math are correct and fastest in float32 here (bf16 matmuls on most CPUs
are emulated), and 135M parameters cost only ~540 MB on disk. The loader still offers
bf16/fp16 and 4-/8-bit at load time.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import ModelError
from engine.progress import Progress, report


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, progress: Progress | None = None) -> None:
    """Load ``gguf_path`` (model + tokenizer with its chat template) and save a safetensors
    checkpoint to ``out_dir``."""
    import torch  # noqa: PLC0415 - seconds to import; the UI imports this module
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig  # noqa: PLC0415 - seconds to import; the UI imports this module

    gguf_path = Path(gguf_path)
    folder, fname = str(gguf_path.parent), gguf_path.name
    report(progress, 0.05, "reading the GGUF tokenizer")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    if not getattr(tok, "chat_template", None):
        raise ModelError(f"{gguf_path}: the GGUF file carries no chat template.")
    report(progress, 0.25, "de-quantizing GGUF weights")
    gguf_model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=fname, dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=fname, dequantize=True))
    state = gguf_model.state_dict()
    config = gguf_model.config
    generation_config = gguf_model.generation_config
    del gguf_model
    if hasattr(config, "quantization_config"):
        del config.quantization_config

    report(progress, 0.7, "building a plain transformers model")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing = set(result.missing_keys) - tied
    if missing or result.unexpected_keys:
        raise ModelError(f"{gguf_path}: GGUF weights do not match the model "
                         f"(missing {sorted(missing)[:5]}, unexpected {result.unexpected_keys[:5]}).")
    if tied:
        model.tie_weights()
    generation_config.pad_token_id = generation_config.pad_token_id or tok.pad_token_id or tok.eos_token_id
    model.generation_config = generation_config
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    report(progress, 0.85, "saving safetensors")
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    report(progress, 1.0, "converted")
