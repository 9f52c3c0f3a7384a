"""Merge the LoRA adapter into its base model, verify, and save a plain transformers checkpoint.

A run trained in 4-/8-bit (QLoRA) merges into a **de-quantized** base: the base checkpoint is
loaded again without bitsandbytes, in the export dtype (float32 on a CPU; bfloat16, or float16
where bf16 is unsupported, on a GPU), and the adapter's deltas are added to those weights.
Merging into the quantized weights themselves would mean re-quantizing after the merge, which
rounds the small LoRA deltas away.

The reference for verification is the same de-quantized base with the adapter attached
(unmerged), so the check isolates the merge itself. Verification runs twice: on the merged
model in memory (before anything is written) and on the saved folder reloaded with plain
``transformers`` (no peft), which is what a user of the export will load.
"""

from __future__ import annotations

import gc
from pathlib import Path

from engine.export import verify
from engine.export.checks import ExportError
from engine.export.source import RunSource
from engine.models.loader import bf16_supported, load_model, load_pretrained, pick_dtype
from engine.progress import Progress, report


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto``: float32 on a CPU (half-precision matmuls there are slow and lossy), else bf16
    where supported and fp16 where not (the loader's own ``auto`` falls back to float32)."""
    if dtype != "auto":
        if dtype not in verify.MERGE_TOLERANCE:
            raise ExportError(f"Unknown export dtype '{dtype}'; choose auto, float32, bfloat16 or float16.")
        return dtype
    if device == "cpu":
        return "float32"
    return "bfloat16" if bf16_supported(device) else "float16"


def merge_and_save(src: RunSource, out_dir: Path, *, dtype: str, device: str,
                   progress: Progress | None = None) -> dict:
    """Write the merged model + tokenizer/processor into ``out_dir``; return the verification record.

    Raises :class:`ExportError` (nothing useful written) when the merged model disagrees with
    base+adapter beyond :data:`verify.MERGE_TOLERANCE` or changes a greedy output.
    """
    report(progress, 0.0, f"Loading {src.model_name} ({dtype}, de-quantized) with the adapter")
    lm = load_model(src.model_name, quant="none", dtype=dtype, device=device, adapter=src.adapter_dir)
    peft_model = lm.model
    if not hasattr(peft_model, "merge_and_unload"):
        raise ExportError(f"The loader returned {type(peft_model).__name__} without the adapter attached.")
    peft_model.eval()
    cases, eos, decode = verify.fixed_inputs(src.kind, lm.processor, peft_model)
    tolerance = verify.MERGE_TOLERANCE[dtype]

    report(progress, 0.25, "Scoring the fixed inputs with base + adapter")
    reference = verify.record(verify.scorer_for(src.kind, peft_model), cases, eos)

    report(progress, 0.45, "Merging the adapter into the base weights")
    # safe_merge checks every merged weight for NaN/inf before replacing the original.
    merged = peft_model.merge_and_unload(safe_merge=True)
    in_memory = verify.check(reference, verify.scorer_for(src.kind, merged), eos, tolerance=tolerance, decode=decode)
    if not in_memory["passed"]:
        raise ExportError(_disagree("The merged model", in_memory),
                          hint="Export in float32 (--dtype float32), which merges without rounding.")

    report(progress, 0.6, "Saving the merged model (safetensors + tokenizer/processor)")
    merged.save_pretrained(out_dir)  # safetensors is the default (and only sane) format
    lm.processor.save_pretrained(out_dir)
    del merged, peft_model, lm
    gc.collect()

    report(progress, 0.8, "Reloading the saved model with plain transformers (no peft)")
    reloaded, _ = load_pretrained(src.kind, str(out_dir), device=device, dtype=pick_dtype(dtype, device))
    lora_keys = [k for k in reloaded.state_dict() if "lora_" in k]
    if lora_keys:
        raise ExportError(f"The saved merged model still holds LoRA weights ({lora_keys[0]}, ...).")
    from_disk = verify.check(reference, verify.scorer_for(src.kind, reloaded), eos, tolerance=tolerance, decode=decode)
    del reloaded
    gc.collect()
    if not from_disk["passed"]:
        raise ExportError(_disagree("The saved merged model (reloaded from disk)", from_disk))
    report(progress, 1.0, "Merged model verified")
    return {
        "base_model": src.model_name,
        "dtype": dtype,
        "device": device,
        "trained_quantization": src.quantization,
        "merged_into": ("de-quantized " if src.quantization != "none" else "") + f"{dtype} base",
        "tolerance": tolerance,
        "in_memory": in_memory,
        "reloaded_without_peft": from_disk,
        "passed": True,
    }


def _disagree(what: str, result: dict) -> str:
    bad = next((c for c in result["cases"] if not c["greedy_identical"]), result["cases"][0])
    return (f"{what} disagrees with base + adapter: max |logit diff| {result['max_abs_logit_diff']:.3g} "
            f"(tolerance {result['tolerance']}), greedy output identical: {result['greedy_identical']} "
            f"(input: {bad['input'][:60]!r}). The export was not written.")
