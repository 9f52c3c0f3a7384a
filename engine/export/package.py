"""Zip files for download: the PEFT adapter folder, or any export subfolder on demand.

Zips are written to a temp name in the destination folder and renamed into place, so a
reader (or a download link) never sees a half-written archive.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from engine.export.checks import ExportError
from engine.export.source import ADAPTER_FILES


def zip_folder(folder: str | Path, dest: str | Path, *, arcroot: str | None = None,
               skip_hidden: bool = True) -> Path:
    """Zip ``folder`` into ``dest`` atomically; members live under ``arcroot/`` (default: folder name).

    Weights are stored, not deflated: safetensors barely compress and deflating GBs costs minutes.
    """
    folder, dest = Path(folder), Path(dest)
    if not folder.is_dir():
        raise ExportError(f"Cannot zip {folder}: not a folder.")
    root = folder.name if arcroot is None else arcroot
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".partial-{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            for path in sorted(folder.rglob("*")):
                rel = path.relative_to(folder)
                if not path.is_file() or (skip_hidden and any(p.startswith(".") for p in rel.parts)):
                    continue
                binary = path.suffix in (".safetensors", ".bin", ".onnx", ".pt", ".data")
                zf.write(path, f"{root}/{rel.as_posix()}" if root else rel.as_posix(),
                         compress_type=zipfile.ZIP_STORED if binary else zipfile.ZIP_DEFLATED)
            zf.testzip()
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dest


def zip_adapter(adapter_dir: str | Path, dest: str | Path, *, card: str | Path | None = None,
                base_id: str | None = None) -> Path:
    """The standard PEFT folder (adapter_config.json + adapter_model.safetensors [+ README.md]) as a zip.

    Unzipped, the ``adapter/`` folder loads with ``PeftModel.from_pretrained(base, "adapter")``.
    """
    adapter_dir = Path(adapter_dir)
    missing = [f for f in ADAPTER_FILES if not (adapter_dir / f).is_file()]
    if missing:
        raise ExportError(f"{adapter_dir} is not a PEFT adapter folder ({', '.join(missing)} missing).")
    with tempfile.TemporaryDirectory(prefix=".partial-adapter-", dir=Path(dest).parent) as tmp:
        stage = Path(tmp) / "adapter"
        stage.mkdir()
        for f in sorted(adapter_dir.iterdir()):
            # Tokenizer files saved next to the adapter are kept; checkpoints/ etc. are not ours to ship.
            if f.is_file() and not f.name.startswith("."):
                shutil.copyfile(f, stage / f.name)  # a copy, never a link: README.md is replaced below
        if base_id:  # a local cache path means nothing on another machine; name the Hub base instead
            cfg_path = stage / "adapter_config.json"
            cfg = json.loads(cfg_path.read_text())
            cfg["base_model_name_or_path"] = base_id
            cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
        if card is not None and Path(card).is_file():
            (stage / "README.md").write_bytes(Path(card).read_bytes())
        return zip_folder(stage, dest, arcroot="adapter")
