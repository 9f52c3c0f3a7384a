"""Load a half-precision checkpoint as float32 on the CPU without holding both at once.

``from_pretrained(dtype=float32)`` on a bf16/fp16 safetensors checkpoint converts every tensor
while the whole checkpoint stays memory-mapped, and every page it reads stays in the
process's resident set until loading ends: the peak is the float32 model *plus* the
checkpoint (1.5x the float32 size; 10.3 GB instead of 6.9 GB for a 1.7B model, measured in
bench/RESULTS.md section 4). Here the model is loaded in the checkpoint's own dtype instead
(its tensors stay lazy views of the mapping, nothing is read yet), then converted tensor by
tensor; after each one the pages of the checkpoint it was read from are dropped from this
process with ``madvise(MADV_DONTNEED)``. The values are the same (bf16/fp16 -> float32 is
exact); the peak is about the float32 model alone.

Only pages inside a mapping of a ``.safetensors`` file are ever dropped, and only once the
tensor read from them has been converted. safetensors maps the file private (copy-on-write)
and nothing writes to a loaded weight, so the pages are clean: dropped, they are re-read
from the file if touched again. Anonymous memory is never advised (there it would zero data).
"""

from __future__ import annotations

import ctypes
import json
import mmap
import struct
from pathlib import Path
from typing import Any

_MADV_DONTNEED = 4
_PAGE = mmap.PAGESIZE


def _checkpoint_mappings() -> list[tuple[int, int]]:
    """Address ranges of this process's mappings of ``*.safetensors`` files."""
    out = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].strip().endswith(".safetensors"):
                    lo, hi = (int(x, 16) for x in parts[0].split("-"))
                    out.append((lo, hi))
    except OSError:  # not Linux: nothing is dropped, the result is the same, only the peak is higher
        return []
    return out


def _drop(libc: Any, regions: list[tuple[int, int]], start: int, nbytes: int) -> None:
    end = start + nbytes
    for lo, hi in regions:
        a = max(start, lo)
        b = min(end, hi)
        a = -(-a // _PAGE) * _PAGE  # whole pages inside the tensor only
        b = b // _PAGE * _PAGE
        if b > a:
            libc.madvise(ctypes.c_void_p(a), ctypes.c_size_t(b - a), _MADV_DONTNEED)


def upcast_dropping_pages(model: Any, dtype: Any) -> None:
    """Convert every floating parameter and buffer of ``model`` to ``dtype`` in place (tied
    parameters stay tied: the Parameter objects are kept), releasing checkpoint pages as it
    goes. Same result as ``model.to(dtype)``."""
    regions = _checkpoint_mappings()
    libc = ctypes.CDLL(None, use_errno=True) if regions else None
    if libc is not None:
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    # A shared Parameter is converted in place once (later sightings already have ``dtype``);
    # a buffer is replaced, so one shared by several modules needs its new tensor remembered
    # (the old one is kept too, so its id cannot be reused by another tensor meanwhile).
    new_buffers: dict[int, tuple[Any, Any]] = {}
    for module in model.modules():
        for store in (module._parameters, module._buffers):
            for name, t in list(store.items()):
                if t is None or not t.is_floating_point() or t.dtype == dtype:
                    continue
                if id(t) in new_buffers:
                    store[name] = new_buffers[id(t)][1]
                    continue
                start, nbytes = t.data_ptr(), t.numel() * t.element_size()
                if store is module._parameters:
                    t.data = t.data.to(dtype)
                else:
                    store[name] = t.to(dtype)
                    new_buffers[id(t)] = (t, store[name])
                if libc is not None and t.device.type == "cpu":
                    _drop(libc, regions, start, nbytes)
    if getattr(model, "config", None) is not None:
        model.config.dtype = dtype


_HALF = {"BF16": "bfloat16", "F16": "float16"}


def _safetensors_files(path: str) -> list[Path]:
    folder = Path(path).expanduser()
    if folder.is_dir():
        return sorted(folder.glob("*.safetensors"))
    try:  # a hub id: only what is already in the local cache (no download for this check)
        from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415 - ~0.4 s to import, for hub ids only

        single = try_to_load_from_cache(path, "model.safetensors")
        if isinstance(single, str):
            return [Path(single)]
        index = try_to_load_from_cache(path, "model.safetensors.index.json")
        if isinstance(index, str):
            shards = sorted(set(json.loads(Path(index).read_text(encoding="utf-8"))["weight_map"].values()))
            return [Path(index).parent / s for s in shards]
    except Exception:  # noqa: BLE001 - unknown layout: the plain load path is always correct
        return []
    return []


def stored_half_dtype(path: str) -> str | None:
    """"bfloat16"/"float16" when every floating tensor of the checkpoint at ``path`` (folder or
    cached hub id) is stored in that dtype, read from the safetensors headers (the config's
    dtype can disagree with the files); else None."""
    kinds = set()
    files = _safetensors_files(path)
    for f in files:
        try:
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                if n > 100 * 2**20:  # not a real header (safetensors caps it at 100 MB)
                    return None
                header = json.loads(fh.read(n))
        except (OSError, ValueError, struct.error):
            return None
        kinds |= {v["dtype"] for k, v in header.items() if k != "__metadata__" and v["dtype"].startswith(("F", "BF"))}
    return _HALF.get(kinds.pop()) if files and len(kinds) == 1 else None


def load_dtype(dtype: Any, device_type: str, quantized: bool, path: str) -> Any:
    """What to pass as ``from_pretrained(dtype=...)``: for a float32 load on the CPU of a
    checkpoint stored in half precision, that stored dtype (then :func:`finish_load` converts
    it lean); else ``dtype`` itself (on a GPU the weights are copied to the card anyway, and
    bitsandbytes quantizes while loading)."""
    import torch  # noqa: PLC0415 - seconds to import, and the UI imports the loader at start-up

    if dtype == torch.float32 and device_type == "cpu" and not quantized:
        half = stored_half_dtype(path)
        if half:
            return getattr(torch, half)
    return dtype


def finish_load(model: Any, dtype: Any, loaded_as: Any) -> Any:
    """After loading with ``dtype=loaded_as`` (from :func:`load_dtype`): bring a checkpoint
    loaded in half precision up to ``dtype``. Nothing is touched when it was loaded as
    ``dtype`` already (so modules a model keeps in float32 on purpose stay as they are)."""
    if loaded_as != dtype:
        upcast_dropping_pages(model, dtype)
    return model
