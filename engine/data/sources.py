"""One entry point for "open this data", shared by the Data tab and ``medtune data``.

A reference is a shipped name (``med-dictation``), a saved dataset's name, a path inside
the workspace (file, dataset folder, audio folder), or a hub id written ``hub:owner/name``.
Paths go through :meth:`Workspace.resolve`, which refuses anything outside the workspace
(shipped assets are readable).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from engine.data.datasets import SHIPPED, DatasetDir, ensure_shipped, save_dataset, saved_dataset
from engine.data.readers import read_any, read_hub
from engine.data.schema import SPEECH, LoadResult
from engine.data.split import DEFAULT_RATIOS, DEFAULT_SEED, split_examples, split_summary
from engine.errors import DataError
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
