"""Errors and pre-flight checks for exports: fail before writing, with a reason a person can act on.

Estimates are deliberately simple (parameter count x bytes per value x a factor) and on the
generous side: refusing to start is cheap, filling the disk halfway through a multi-GB
merge is not.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import psutil

from engine.errors import MedtuneError

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: Headroom kept free on the disk after the export (filesystems misbehave when full).
DISK_MARGIN_BYTES = 200 * 1024 * 1024


class ExportError(MedtuneError):
    """The export could not be made (verification failed, bad run folder, ...)."""

    kind = "export"


class DiskSpaceError(ExportError):
    kind = "disk"


class ExportMemoryError(ExportError):
    # Not "out of memory" in the text: engine.jobs.reasons would attach the *training* OOM hint.
    kind = "memory"


def count_parameters(model_dir: str | Path) -> int | None:
    """Number of values stored in a checkpoint's safetensors files, read from their headers only.

    None when the folder holds no safetensors (a hub id not yet downloaded, a .bin checkpoint).
    """
    files = sorted(Path(model_dir).glob("*.safetensors")) if Path(model_dir).is_dir() else []
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in info["shape"]:
                count *= dim
            total += count
    return total


def estimate_bytes(params: int, *, dtype: str, merged: bool, onnx: bool, adapter_bytes: int) -> int:
    """Disk bytes the export will write: merged weights in ``dtype``, ONNX in float32, the zip."""
    total = adapter_bytes + 1024 * 1024  # zip + card/json/tokenizer files (small)
    if merged:
        total += params * DTYPE_BYTES[dtype] + 50 * 1024 * 1024  # + tokenizer/processor files
    if onnx:
        total += params * 4
    return int(total)


def check_disk(folder: Path, needed: int) -> dict:
    """Raise :class:`DiskSpaceError` unless ``needed`` bytes (+ margin) are free where ``folder`` lives."""
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN_BYTES:
        raise DiskSpaceError(
            f"Not enough disk space for the export in {folder}: it needs about {_gb(needed)} "
            f"(+{_gb(DISK_MARGIN_BYTES)} headroom) and {_gb(free)} is free.",
            hint="Free some space, export fewer formats (the adapter zip is small), or export in "
                 "bfloat16/float16 instead of float32.",
        )
    return {"needed_bytes": needed, "free_bytes": free}


def check_memory(params: int | None, *, dtype: str, onnx: bool, device: str) -> dict:
    """Raise :class:`ExportMemoryError` when the model clearly cannot fit in available RAM.

    Peak on the CPU: the model once (merging is in place) plus a reload of the saved merged
    model for the no-peft check; ONNX tracing of a float32 copy roughly doubles that.
    On a GPU the weights live in GPU memory, so only the reload/ONNX copies count here.
    """
    available = psutil.virtual_memory().available
    if params is None:
        return {"checked": False, "available_bytes": available}
    per_copy = params * DTYPE_BYTES[dtype]
    needed = per_copy * (1 if device == "cuda" else 2) + (params * 4 * 2 if onnx else 0)
    if needed > available:
        raise ExportMemoryError(
            f"The export needs about {_gb(needed)} of RAM ({params / 1e6:.0f}M parameters in {dtype}"
            f"{' plus an ONNX float32 copy' if onnx else ''}) and only {_gb(available)} is available.",
            hint="Close other programs, skip ONNX, or export in bfloat16/float16 on a machine with more memory.",
        )
    return {"checked": True, "needed_bytes": needed, "available_bytes": available}


def _gb(n: int) -> str:
    return f"{n / 1024 ** 3:.2f} GB" if n >= 1024 ** 3 else f"{n / 1024 ** 2:.0f} MB"
