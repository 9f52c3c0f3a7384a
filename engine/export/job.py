"""Export as a job: options, pre-flight checks, and the folder layout under ``<run>/export/``.

::

    export/
      merged/            merged model (safetensors) + tokenizer/processor + README.md
      onnx/              ONNX graphs + tokenizer/processor + config + README.md
      adapter.zip        adapter/ (adapter_config.json, adapter_model.safetensors, README.md)
      merged.zip onnx.zip  the folders zipped for download (option zip_folders)
      README.md          the model card
      verification.json  merged vs base+adapter, ONNX vs PyTorch
      export.json        what was exported, when, in which dtype, sizes

Each item is built under a ``.partial-*`` name inside ``export/`` and renamed into place when
complete (``engine.atomic``), so ``merged/`` or ``onnx/`` either is whole or is not there.
A killed export leaves only a ``.partial-*`` folder, which nothing reads and the next export
removes. Items not requested this time are kept from an earlier export.
"""

from __future__ import annotations

import contextlib
import gc
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine import atomic
from engine.export import card, checks, merge, package
from engine.export.checks import ExportError, ExportMemoryError
from engine.export.onnx import export_onnx
from engine.export.source import RunSource, open_run
from engine.models.loader import model_path, pick_device
from engine.progress import Progress, report, scaled
from engine.runs import JobContext

FORMATS = ("merged", "adapter_zip", "onnx")


@dataclass
class ExportOptions:
    """What to export. ``params`` of the ``export`` job are exactly these fields (no secrets:
    the job's params are saved to the run folder; Hub pushes run in the caller's process)."""

    merged: bool = field(default=True, metadata={"help": "merge the adapter into the base and save safetensors"})
    adapter_zip: bool = field(default=True, metadata={"help": "zip the PEFT adapter folder"})
    onnx: bool = field(default=False, metadata={"help": "export ONNX graphs (float32) with a parity check"})
    dtype: str = field(default="auto", metadata={
        "help": "merged weights dtype; auto = float32 on CPU, bfloat16/float16 on GPU",
        "choices": ("auto", "float32", "bfloat16", "float16")})
    device: str = field(default="auto", metadata={"help": "where to merge", "choices": ("auto", "cpu", "cuda")})
    zip_folders: bool = field(default=False, metadata={
        "help": "also zip merged/ and onnx/ (merged.zip, onnx.zip) for download from the browser"})

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> "ExportOptions":
        params = dict(params or {})
        unknown = sorted(set(params) - set(cls.__dataclass_fields__))
        if unknown:
            raise ExportError(f"Unknown export option(s): {', '.join(unknown)} (known: {', '.join(cls.__dataclass_fields__)}).")
        opts = cls(**params)
        if not (opts.merged or opts.adapter_zip or opts.onnx):
            raise ExportError("Nothing to export: choose at least one of merged, adapter zip, ONNX.")
        return opts

    def to_params(self) -> dict[str, Any]:
        return asdict(self)

    def formats(self) -> list[str]:
        return [f for f in FORMATS if getattr(self, f)]


def preflight(src: RunSource, opts: ExportOptions, dtype: str, device: str) -> dict:
    """Disk and memory checks before anything heavy happens (raise with a reason and a hint)."""
    needs_model = opts.merged or opts.onnx
    params = None
    if needs_model:
        try:
            params = checks.count_parameters(model_path(src.model_name))
        except Exception:  # noqa: BLE001 - the estimate is best effort; loading will say what is wrong
            params = None
    adapter_bytes = sum(f.stat().st_size for f in src.adapter_dir.iterdir() if f.is_file())
    needed = checks.estimate_bytes(params or 0, dtype=dtype, merged=needs_model, onnx=opts.onnx,
                                   adapter_bytes=adapter_bytes)
    if opts.zip_folders:  # the zips store the weights uncompressed: the same bytes again
        needed = 2 * needed
    out = {"parameters": params, "disk": checks.check_disk(src.path, needed)}
    if needs_model:
        out["memory"] = checks.check_memory(params, dtype=dtype, onnx=opts.onnx, device=device)
    return out


def export_run(run_dir: str | Path, opts: ExportOptions, progress: Progress | None = None) -> dict:
    """Build ``<run_dir>/export/`` as described in the module docstring; return export.json's content."""
    src = open_run(run_dir)
    export_dir = src.export_dir
    export_dir.mkdir(parents=True, exist_ok=True)
    atomic.sweep_leftovers(export_dir)
    device = pick_device(opts.device)
    dtype = merge.resolve_dtype(opts.dtype, device)
    report(progress, 0.0, "Checking disk space and memory")
    resources = preflight(src, opts, dtype, device)

    started = time.time()
    verification: dict[str, Any] = {}
    old = _read_json(export_dir / "verification.json")
    try:
        if opts.merged or opts.onnx:
            verification.update(_merge_items(src, opts, export_dir, dtype, device, progress))
    except MemoryError as e:  # the estimate was too optimistic; say so in export words
        raise ExportMemoryError(f"The machine ran short of memory while merging {src.model_name} ({e}).",
                                hint="Close other programs, skip ONNX, or export in bfloat16/float16.") from None
    for key in verification:  # a zip of an earlier merged/ or onnx/ no longer matches the folder
        (export_dir / f"{key}.zip").unlink(missing_ok=True)
    for key in ("merged", "onnx"):  # keep earlier results for items this export did not touch
        if key not in verification and isinstance(old, dict) and key in old and (export_dir / key).is_dir():
            verification[key] = old[key]

    present = [f for f in FORMATS if f != "adapter_zip" and (export_dir / f).is_dir()]
    if opts.adapter_zip or (export_dir / "adapter.zip").is_file():
        present.append("adapter_zip")
    report(progress, 0.92, "Writing the model card")
    readme = card.build_card(src, formats=present, verification=verification)
    atomic.write_text(export_dir / "README.md", readme)
    for sub in ("merged", "onnx"):
        if (export_dir / sub).is_dir():
            atomic.write_text(export_dir / sub / "README.md", readme)
    if opts.adapter_zip:
        report(progress, 0.95, "Zipping the adapter")
        package.zip_adapter(src.adapter_dir, export_dir / "adapter.zip", card=export_dir / "README.md",
                            base_id=card.hub_base_id(src.model_name))
    if opts.zip_folders:
        for sub in ("merged", "onnx"):
            if sub in verification and (export_dir / sub).is_dir():
                report(progress, 0.97, f"Zipping {sub}/ for download")
                package.zip_folder(export_dir / sub, export_dir / f"{sub}.zip")
    atomic.write_json(export_dir / "verification.json", verification)
    manifest = {
        "run": src.id,
        "base_model": src.model_name,
        "kind": src.kind,
        "trained_quantization": src.quantization,
        "dtype": dtype if (opts.merged or opts.onnx) else None,
        "device": device,
        "requested": opts.formats(),
        "formats": present,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 1),
        "resources": resources,
        "sizes": {name: _size(export_dir / name) for name in ("merged", "onnx", "adapter.zip", "merged.zip", "onnx.zip")
                  if (export_dir / name).exists()},
        "verified": all(v.get("passed") for v in verification.values()) if verification else None,
    }
    atomic.write_json(export_dir / "export.json", manifest)
    report(progress, 1.0, "Export complete")
    return manifest


def _merge_items(src: RunSource, opts: ExportOptions, export_dir: Path, dtype: str, device: str,
                 progress: Progress | None) -> dict:
    """merged/ (kept or scratch) and onnx/, each renamed into place only when verified."""
    out: dict[str, Any] = {}
    end_merge = 0.55 if opts.onnx else 0.9
    with contextlib.ExitStack() as stack:
        if opts.merged:
            merged_dir = stack.enter_context(atomic.atomic_dir(export_dir / "merged", overwrite=True))
        else:  # ONNX alone still needs the merged weights, in a scratch folder removed afterwards
            merged_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".partial-scratch-", dir=export_dir)))
        out["merged"] = merge.merge_and_save(src, merged_dir, dtype=dtype, device=device,
                                             progress=scaled(progress, 0.02, end_merge))
        gc.collect()
        if opts.onnx:
            with atomic.atomic_dir(export_dir / "onnx", overwrite=True) as onnx_dir:
                out["onnx"] = export_onnx(merged_dir, onnx_dir, kind=src.kind,
                                          progress=scaled(progress, end_merge, 0.9))
        if not opts.merged:
            out.pop("merged")  # verified, but not part of this export
    return out


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run(ctx: JobContext) -> None:
    """``engine.jobs`` entry point (kind ``export``): ``params`` are :class:`ExportOptions` fields."""
    export_run(ctx.run.path, ExportOptions.from_params(ctx.params), ctx.progress)
