"""Turn an exception from a job into (reason, message, hint) a person can act on, and say
which reasons a retry cannot fix (the auto-resume policy of engine.jobs.queue).

A run never ends in a bare "failed": out-of-memory gets the four knobs that fix it, a full
disk says where space goes and how to get it back, a data error names the file and row, a
missing package names the pip command, a GPU-only setting on a CPU machine says so.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Iterator

from engine.errors import MedtuneError
from engine.runs import Reason

#: Failures that a retry cannot fix (the same config, data, packages, machine or disk fail
#: the same way): auto-resume leaves these alone.
NO_RETRY = frozenset({Reason.CONFIG, Reason.DATA, Reason.DEPENDENCY, Reason.CUDA, Reason.MEMORY, Reason.MODEL,
                      Reason.PATH, Reason.DISK})

OOM_HINT = ("Lower train.batch_size (and raise train.grad_accum to keep the effective batch), "
            "load the model 4-bit (model.quantization: 4bit), shorten train.max_length, "
            "or turn on train.gradient_checkpointing.")

#: errno values that mean "no room for this write": no space, over the file-size limit, over quota.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})

_WHERE = "move the workspace to a bigger disk and point MEDTUNE_WORKSPACE (or --workspace) at it"
DISK_HINTS = {
    "train": ("Free disk space where the workspace lives (old runs' checkpoints/ and export/ folders are "
              "the largest), lower train.save_total_limit so fewer checkpoints are kept, or " + _WHERE
              + "; then Resume: it continues from the last complete checkpoint."),
    "export": ("Free disk space where the workspace lives (finished runs' checkpoints/ folders are the "
               "largest; an export needs room for the merged weights, twice with zipped folders), or "
               + _WHERE + "; then export again."),
}
DISK_HINTS["evaluate"] = ("Free disk space where the workspace lives (old runs' checkpoints/ and export/ folders "
                          "are the largest), or " + _WHERE + "; then evaluate again.")

# What a failed write looks like when the errno did not survive the trip through C++/Rust:
# torch.save's zip writer reports a short write as "unexpected pos" (inline_container.cc) or
# "PytorchStreamWriter failed writing file"; safetensors keeps the OS text ("os error 28").
_DISK_TEXT = re.compile(
    r"no space left on device|file too large|disk quota exceeded|os error (28|27|122)\b"
    r"|pytorchstreamwriter failed writing file|inline_container\.cc.*unexpected pos|file write failed",
    re.IGNORECASE | re.DOTALL)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """The exception and the ones it was raised from or while handling (each once)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    text = str(exc).lower()
    return (name in ("OutOfMemoryError", "MemoryError")
            or "out of memory" in text or "cuda oom" in text or "can't allocate memory" in text
            or "failed to allocate" in text)


def is_disk_full(exc: BaseException) -> bool:
    """True when a write failed for lack of room: ENOSPC/EFBIG/EDQUOT anywhere in the chain,
    or the text torch/safetensors put in their own exceptions for the same failure."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            return True
        if _DISK_TEXT.search(str(e)):
            return True
    return False


def _oom_message(exc: BaseException) -> str:
    text = str(exc)
    m = re.search(r"DefaultCPUAllocator: can't allocate memory: you tried to allocate (\d+) bytes", text)
    if m:  # torch on CPU: say how much, in words, instead of the C++ enforce line
        return f"Ran out of memory: could not allocate {_human(int(m.group(1)))} of RAM (DefaultCPUAllocator)."
    return f"Ran out of memory: {text.splitlines()[0][:300] if text else type(exc).__name__}"


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


#: Frames whose locals name the folder being written: (function name, argument name).
_SAVE_FRAMES = {"_save_checkpoint": "output_dir", "save_pretrained": "save_directory",
                "zip_folder": "dest", "atomic_dir": "final", "write_bytes": "path", "append_line": "path"}


def _short(path: str) -> str:
    """'checkpoints/checkpoint-20', 'export/merged': the last two parts, with the temp name
    engine.atomic builds under (``.partial-merged-k2x9abcd``) shown as the folder it becomes."""
    path = os.path.normpath(str(path))
    name, parent = os.path.basename(path), os.path.basename(os.path.dirname(path))
    m = re.fullmatch(r"\.partial-(.+)-[A-Za-z0-9_]{8}", name)
    return os.path.join(parent, m.group(1) if m else name)


def _saving_what(exc: BaseException) -> str | None:
    """The folder or file a failed write was for: read from the traceback (the innermost
    checkpoint save / save_pretrained / zip call), else the file an OSError names."""
    found = None
    for e in _chain(exc):
        tb = e.__traceback__
        while tb is not None:
            arg = _SAVE_FRAMES.get(tb.tb_frame.f_code.co_name)
            value = tb.tb_frame.f_locals.get(arg) if arg else None
            if isinstance(value, (str, os.PathLike)):
                found = _short(os.fspath(value))
            tb = tb.tb_next
        if found:
            return found
    for e in _chain(exc):
        if isinstance(e, OSError) and e.filename:
            return _short(os.fsdecode(e.filename))
    return None


def _disk_message(exc: BaseException) -> str:
    detail = ""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            detail = f"{errno.errorcode.get(e.errno, e.errno)}: {e.strerror}"
            break
    if not detail:
        text = str(exc)
        detail = f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"
    where = _saving_what(exc)
    return (f"The disk is full (or a file-size/quota limit was reached){f' while writing {where}' if where else ''}"
            f" ({detail}).")


def classify(exc: BaseException, kind: str = "train") -> tuple[Reason, str, str | None]:
    """(reason, error message, hint) for a failed job of ``kind`` (train, evaluate, export)."""
    if isinstance(exc, KeyboardInterrupt):
        return Reason.INTERRUPTED, "The job was interrupted.", "Resume continues from the last checkpoint."
    if is_oom(exc):
        return Reason.MEMORY, _oom_message(exc), OOM_HINT
    if isinstance(exc, MedtuneError):
        # Reason members are named after MedtuneError.kind ("data" -> DATA); other kinds say "error"
        return Reason.__members__.get(exc.kind.upper(), Reason.ERROR), exc.message, exc.hint
    if is_disk_full(exc):
        return Reason.DISK, _disk_message(exc), DISK_HINTS.get(kind, DISK_HINTS["train"])
    if isinstance(exc, (ModuleNotFoundError, ImportError)):
        pkg = getattr(exc, "name", None) or str(exc)
        return Reason.DEPENDENCY, f"A required package is missing: {pkg}", f"pip install {pkg}"
    text = str(exc)
    if "CUDA" in text and ("not available" in text or "no CUDA" in text or "requires" in text.lower()):
        return Reason.CUDA, text.splitlines()[0][:300], "Run on a machine with a CUDA GPU, or choose " \
            "precision fp32/auto and quantization none."
    first = text.splitlines()[0][:300] if text else ""
    return Reason.ERROR, f"{type(exc).__name__}: {first}", "See job.log for the full traceback."
