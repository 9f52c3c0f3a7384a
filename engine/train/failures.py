"""Turn an exception from a job into (reason, message, hint) a person can act on.

A run never ends in a bare "failed": out-of-memory gets the four knobs that fix it, a data
error names the file and row, a missing package names the pip command, a GPU-only setting
on a CPU machine says so.
"""

from __future__ import annotations

from engine.errors import MedtuneError

OOM_HINT = ("Lower train.batch_size (and raise train.grad_accum to keep the effective batch), "
            "load the model 4-bit (model.quantization: 4bit), shorten train.max_length, "
            "or turn on train.gradient_checkpointing.")


class CudaRequired(MedtuneError):
    """A setting that only works on a CUDA GPU was asked for on a machine without one."""

    kind = "cuda"


def is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    text = str(exc).lower()
    return (name in ("OutOfMemoryError", "MemoryError")
            or "out of memory" in text or "cuda oom" in text or "can't allocate memory" in text
            or "failed to allocate" in text)


def classify(exc: BaseException) -> tuple[str, str, str | None]:
    """(reason, error message, hint) for a failed job."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "The job was interrupted.", "Resume continues from the last checkpoint."
    if is_oom(exc):
        return "out of memory", f"Ran out of memory: {str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}", OOM_HINT
    if isinstance(exc, MedtuneError):
        reason = {"data": "data error", "config": "config error", "dependency": "missing dependency",
                  "model": "model error", "path": "path error", "cuda": "CUDA required"}.get(exc.kind, exc.kind)
        return reason, exc.message, exc.hint
    if isinstance(exc, (ModuleNotFoundError, ImportError)):
        pkg = getattr(exc, "name", None) or str(exc)
        return "missing dependency", f"A required package is missing: {pkg}", f"pip install {pkg}"
    text = str(exc)
    if "CUDA" in text and ("not available" in text or "no CUDA" in text or "requires" in text.lower()):
        return "CUDA required", text.splitlines()[0][:300], "Run on a machine with a CUDA GPU, or choose " \
            "precision fp32/auto and quantization none."
    first = text.splitlines()[0][:300] if text else ""
    return "error", f"{type(exc).__name__}: {first}", "See job.log for the full traceback."
