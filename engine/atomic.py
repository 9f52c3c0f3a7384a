"""Atomic writes: a reader sees the old file or the new one, never half of either.

Run folders are read by the UI while the job writes them, and a crash (or SIGKILL) may come
at any instant, so every file that is rewritten goes through a temp file + ``os.replace``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one whole line with a single write (O_APPEND), so concurrent readers never
    see a torn line except possibly the very last one, which readers must tolerate."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temp name next to ``final`` and rename it into place.

    If the body raises (or the process dies), ``final`` is untouched and the temp folder is
    removed (or, after a kill, left with a ``.partial-`` prefix that nothing reads).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".partial-{final.name}-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            if not overwrite:
                raise FileExistsError(f"{final} already exists")
            old = final.with_name(f".old-{final.name}-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sweep_leftovers(folder: str | os.PathLike) -> list[str]:
    """Remove the ``.partial-*`` / ``.old-*`` entries that writes killed mid-way left directly
    in ``folder`` (call it only while nothing is writing there); returns their names."""
    folder, removed = Path(folder), []
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith((".partial-", ".old-")):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
                removed.append(p.name)
    return removed
