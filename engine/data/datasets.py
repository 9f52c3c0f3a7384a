"""The dataset catalogue, one entry point for "open this data" shared by the Data, Train,
Compare and Evaluate tabs, ``medtune data`` and the jobs: read any source, open a dataset,
list the datasets, save one.

A reference is a shipped name (``med-dictation``), a saved dataset's name
(``<workspace>/datasets/<name>/``), a path inside the workspace (file, dataset folder, audio
folder), or a hub id written ``hub:owner/name``. Paths go through :meth:`Workspace.resolve`,
which refuses anything outside the workspace (shipped assets are readable).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from engine.atomic import atomic_dir
from engine.data.folder import NAME, DatasetDir, write_dataset
from engine.data.readers import AUDIO_SUFFIXES, TABLE_SUFFIXES, read_audio_folder, read_hub, read_table
from engine.data.schema import SPEECH, LoadResult
from engine.data.shipped import SHIPPED, ensure_shipped, is_current
from engine.data.split import DEFAULT_RATIOS, DEFAULT_SEED, split_examples, split_summary
from engine.errors import DataError, PathError
from engine.progress import Progress
from engine.workspace import Workspace

HUB_PREFIXES = ("hub:", "hf:", "hf://")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def hub_id_of(ref: str) -> str | None:
    for p in HUB_PREFIXES:
        if ref.startswith(p):
            return ref[len(p):]
    return None


def load_source(ref: str, workspace: Workspace, *, preset: str | None = None, hub_split: str = "train",
                hub_limit: int | None = 1000, progress: Progress | None = None) -> tuple[LoadResult, list[str]]:
    """Read ``ref`` into normalised examples; returns (result, terms)."""
    ref = str(ref).strip()
    if not ref:
        raise DataError("no dataset given", field="dataset")
    hub = hub_id_of(ref)
    if hub is not None:
        if not _HUB_ID.fullmatch(hub) or any(part in (".", "..") for part in hub.split("/")):
            raise DataError(f"'{hub}' does not look like a hub id (owner/name)", field="dataset")
        if Path(hub).exists():  # the datasets library would read a local folder by that name
            raise DataError(f"'{hub}' is a local folder here, not a hub id", field="dataset",
                            hint="Open local data as a workspace path instead.")
        res = read_hub(hub, preset=preset, split=hub_split, limit=hub_limit,
                       audio_cache=workspace.uploads / "hub-audio" / hub.replace("/", "__"), progress=progress,
                       roots=workspace.roots())
        return res, []
    roots = workspace.roots()
    folder = ensure_shipped(ref, workspace, progress) if ref in SHIPPED else saved_dataset(workspace, ref)
    if folder is not None:
        d = DatasetDir(folder, roots=roots)
        return d.load_all(), d.terms()
    path = workspace.resolve(ref, must_exist=True)
    res = read_any(path, preset=preset, audio_cache=workspace.uploads / "embedded-audio", progress=progress,
                   roots=roots)
    terms: list[str] = []
    if path.is_dir() and (path / "dataset.json").exists():
        terms = DatasetDir(path, roots=roots).terms()
    return res, terms


def read_any(path: str | Path, *, preset: str | None = None, audio_cache: Path | None = None,
             check_audio: bool = True, progress: Progress | None = None,
             roots: list[Path] | None = None) -> LoadResult:
    """A file or folder on disk: a dataset folder (all splits), a table, or an audio folder.

    ``roots`` confines the audio paths rows point at (see :func:`~engine.data.readers.normalise_rows`)."""
    path = Path(path)
    if not path.exists():
        raise DataError("not found", file=str(path))
    if path.is_dir():
        if (path / "dataset.json").exists():
            return DatasetDir(path, roots=roots).load_all()
        tables = sorted(p for p in path.iterdir() if p.suffix.lower() in TABLE_SUFFIXES)
        if tables and not any(p.suffix.lower() in AUDIO_SUFFIXES for p in path.iterdir()):
            raise DataError("a folder of tables: pick one file", file=str(path),
                            hint="Files here: " + ", ".join(p.name for p in tables[:10]))
        return read_audio_folder(path, check_audio=check_audio, progress=progress, roots=roots)
    return read_table(path, preset=preset, audio_cache=audio_cache, check_audio=check_audio,
                      progress=progress, roots=roots)


def open_dataset(ref: str, workspace: Workspace, progress: Progress | None = None) -> DatasetDir:
    """A shipped name, a saved dataset's name, or a path to a dataset folder."""
    ref = str(ref).strip()
    roots = workspace.roots()
    if ref in SHIPPED:
        return DatasetDir(ensure_shipped(ref, workspace, progress), roots=roots)
    try:
        path = saved_dataset(workspace, ref) or workspace.resolve(ref, must_exist=True)
    except PathError as e:
        raise DataError(f"no dataset '{ref}' ({e.message})", field="dataset",
                        hint=f"Use a shipped name ({', '.join(SHIPPED)}), a saved dataset name, "
                             "or a dataset folder inside the workspace.") from e
    return DatasetDir(path, roots=roots)


def saved_dataset(workspace: Workspace, name: str) -> Path | None:
    """``<workspace>/datasets/<name>`` when ``name`` is a saved dataset there, else None.
    Raises PathError when that folder is a symlink out of the workspace."""
    name = str(name).strip()
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        return None
    folder = workspace.datasets / name
    try:
        if not (folder / "dataset.json").exists():
            return None
    except (OSError, ValueError):  # a name too long for the filesystem: not a saved dataset
        return None
    return workspace.resolve(folder, must_exist=True)


def list_datasets(workspace: Workspace) -> list[dict]:
    """Shipped sets (built or not) and saved workspace datasets, for pickers."""
    out = [{"name": n, "kind": s.kind, "shipped": True, "built": is_current(workspace.datasets / n),
            "description": s.description, "path": str(workspace.datasets / n)} for n, s in SHIPPED.items()]
    for d in sorted(workspace.datasets.iterdir()) if workspace.datasets.exists() else []:
        if d.name in SHIPPED or d.name.startswith(".") or not (d / "dataset.json").exists():
            continue
        if not workspace.contains(d):  # a symlink out of the workspace: not listed, not read
            continue
        try:
            dd = DatasetDir(d)
        except DataError:
            continue
        out.append({"name": d.name, "kind": dd.kind, "shipped": False, "built": True,
                    "description": f"saved from {dd.info.get('source', '?')}", "path": str(d),
                    "splits": dd.info.get("splits", {})})
    return out


def save_dataset(workspace: Workspace, name: str, splits: dict[str, list[dict]], *, kind: str, seed: int | None,
                 source: str, terms: list[str] | None = None, overwrite: bool = False,
                 extra: dict | None = None) -> DatasetDir:
    """Save splits as ``<workspace>/datasets/<name>/`` atomically (the Train tab lists these)."""
    check_name(name)
    if name in SHIPPED:
        raise DataError(f"'{name}' is the name of a shipped dataset; pick another name", field="name")
    final = workspace.datasets / name
    if final.exists() and not overwrite:
        raise DataError(f"dataset '{name}' already exists", file=str(final), field="name",
                        hint="Pick another name or allow overwriting.")
    with atomic_dir(final, overwrite=overwrite) as tmp:
        write_dataset(tmp, splits, name=name, kind=kind, seed=seed, source=source, terms=terms, extra=extra)
    return DatasetDir(final)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise DataError(f"'{name}' is not a valid dataset name", field="name",
                        hint="Letters, digits, '.', '_' and '-', up to 64 characters.")
    return name


def save_upload(workspace: Workspace, src: str | Path, name: str | None = None) -> Path:
    """Copy a browser upload (Gradio's temp file) into ``<workspace>/uploads/``."""
    src = Path(src)
    if not src.exists():
        raise DataError("uploaded file is missing", file=str(src))
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name or src.name).lstrip(".") or "upload"
    dest = workspace.uploads / safe
    stem, suffix, n = dest.stem, dest.suffix, 1
    while dest.exists():
        dest = workspace.uploads / f"{stem}-{n}{suffix}"
        n += 1
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)  # atomic: a half-copied upload never appears under its real name
    return dest


def split_and_save(result: LoadResult, workspace: Workspace, name: str, *,
                   ratios: tuple[float, float, float] = DEFAULT_RATIOS, seed: int = DEFAULT_SEED,
                   stratify: str | None = None, group: str | None = None, terms: list[str] | None = None,
                   overwrite: bool = False) -> tuple[DatasetDir, dict]:
    """Split examples deterministically and save them as a workspace dataset.

    Speech defaults to grouping by ``meta.sentence_id`` when present (else by transcript),
    so a sentence spoken by several voices never straddles train and test. A
    ``meta.label`` is used for stratification unless told otherwise.
    """
    examples = [_clean(ex) for ex in result.examples]
    if not examples:
        raise DataError("nothing to split: no usable examples", file=result.source,
                        hint="Fix the problems in the validation report first.")
    if group is None and result.kind == SPEECH:
        group = "meta.sentence_id" if any("sentence_id" in e["meta"] for e in examples) else "text"
    if stratify is None and any("label" in e.get("meta", {}) for e in examples):
        stratify = "meta.label"
    splits = split_examples(examples, ratios=ratios, seed=seed, stratify=stratify or None,
                            group=group or None, cover_terms=terms if result.kind == SPEECH else None)
    d = save_dataset(workspace, name, splits, kind=result.kind, seed=seed, source=result.source, terms=terms,
                     overwrite=overwrite, extra={"ratios": list(ratios), "stratified_by": stratify,
                                                 "grouped_by": group})
    return d, split_summary(splits, stratify)


def _clean(ex: dict) -> dict:
    """Drop where-it-was-read-from keys that would be stale in the new dataset."""
    meta = {k: v for k, v in ex.get("meta", {}).items() if k not in ("split", "source_file")}
    return {**ex, "meta": meta}
