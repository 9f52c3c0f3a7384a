"""Dataset folders (what ``split`` saves and training/evaluation read) and the shipped sets.

A dataset folder::

    dataset.json   {"name", "kind", "splits": {"train": n, ...}, "seed", "source",
                    "terms_file": "terms.txt" | null, "created", ...}
    train.jsonl  validation.jsonl  test.jsonl     one normalised example per line
    terms.txt      optional, one medical term per line

The shipped sets live as text under ``assets/datasets/``; :func:`ensure_shipped` builds
each into ``<workspace>/datasets/<name>/`` once, synthesizing the speech audio there
(shipping the audio would cost ~100 KB per clip against a 40 MB repository budget).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from engine.atomic import atomic_dir, write_json, write_text
from engine.data.readers import parse_json_line, read_text_utf8, split_lines
from engine.data.schema import KINDS, SPEECH, TEXT, Issue, LoadResult, check_example
from engine.data.split import SPLITS, relative_audio
from engine.errors import DataError, PathError
from engine.progress import Progress, report, scaled
from engine.workspace import ASSETS, Workspace, inside_any

SHIPPED_DIR = ASSETS / "datasets"
#: Bump when a shipped set's build changes, so stale workspace copies are rebuilt.
BUILD_VERSION = 1
#: A split is a file name in the dataset folder: no '/', no '..'.
SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class ShippedSet:
    kind: str
    description: str
    source: str  # file under assets/datasets/


SHIPPED: dict[str, ShippedSet] = {
    "med-dictation": ShippedSet(SPEECH, "Synthetic clinical dictation, 4 eSpeak voices, with a medical term list",
                                "med-dictation/sentences.jsonl"),
    "general-english": ShippedSet(SPEECH, "Plain English sentences (checks tuning does not harm ordinary speech)",
                                  "general-english/sentences.jsonl"),
    "med-qa": ShippedSet(TEXT, "Synthetic medical Q/A with structured 'Assessment: ... Plan: ...' answers",
                         "med-qa/qa.jsonl"),
    "pubmedqa-synth": ShippedSet(TEXT, "Synthetic PubMedQA-style items (question, context, yes/no/maybe)",
                                 "pubmedqa-synth/pubmedqa.jsonl"),
}


class DatasetDir:
    """A dataset folder on disk. Rows are checked on load; a bad row raises DataError
    naming the file, line and field (training must not quietly skip data).

    ``roots`` (a workspace's :meth:`~engine.workspace.Workspace.roots`) confines the audio
    paths the rows point at: one outside them is a bad row, and is never opened."""

    def __init__(self, path: str | Path, roots: list[Path] | None = None):
        self.path = Path(path)
        self.roots = roots
        meta_file = self.path / "dataset.json"
        if not meta_file.exists():
            raise DataError("not a dataset folder (no dataset.json)", file=str(self.path),
                            hint="Save one with the Data tab's Split button or `medtune data split`.")
        try:
            self.info: dict = json.loads(read_text_utf8(meta_file))
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg})", file=str(meta_file), line=e.lineno) from e
        if not isinstance(self.info, dict):
            raise DataError("expected a JSON object", file=str(meta_file))
        self.name: str = str(self.info.get("name") or self.path.name)
        self.kind: str = self.info.get("kind", TEXT)
        if self.kind not in KINDS:
            raise DataError(f"kind '{self.kind}' is not one of {KINDS}", file=str(meta_file), field="kind")

    def __repr__(self) -> str:
        return f"DatasetDir({str(self.path)!r}, kind={self.kind!r})"

    def split_names(self) -> list[str]:
        names = [s for s in SPLITS if (self.path / f"{s}.jsonl").exists()]
        extra = sorted(p.stem for p in self.path.glob("*.jsonl") if p.stem not in SPLITS)
        return names + extra

    def _read(self, split: str, annotate: bool = False) -> tuple[list[dict], list[Issue]]:
        if not SPLIT_NAME.fullmatch(str(split)):
            raise DataError(f"'{split}' is not a split name", file=str(self.path), field="split",
                            hint="Letters, digits, '.', '_' and '-', e.g. train, validation, test.")
        f = self.path / f"{split}.jsonl"
        if not f.exists():
            raise DataError(f"no '{split}' split (has: {', '.join(self.split_names()) or 'none'})",
                            file=str(self.path), field="split")
        examples, issues = [], []
        for lineno, raw in enumerate(split_lines(read_text_utf8(f)), start=1):
            if not raw.strip():
                continue
            ex, problem = parse_json_line(raw)
            if problem is not None:
                issues.append(Issue(problem, str(f), lineno, code="malformed"))
                continue
            problems = check_example(ex, self.kind, file=str(f), line=lineno)
            if problems:
                issues.extend(problems)
                continue
            ex.setdefault("meta", {})
            if annotate:  # where the row lives, for reports (not written back anywhere)
                ex["meta"]["source_file"], ex["meta"]["source_line"] = str(f), lineno
            if self.kind == SPEECH:
                p = Path(ex["audio"])
                ex["audio"] = str(p if p.is_absolute() else (self.path / p).resolve())
                if self.roots is not None and not inside_any(ex["audio"], self.roots):
                    issues.append(Issue(f"audio path '{p}' is outside the workspace (not read)", str(f), lineno,
                                        "audio", code="outside_workspace"))
                    continue
                ex.setdefault("duration", -1.0)
            examples.append(ex)
        return examples, issues

    def load_split(self, split: str) -> list[dict]:
        """Examples of one split, audio paths absolute. Raises DataError on any bad row."""
        examples, issues = self._read(split)
        if issues:
            err = issues[0].to_error()
            if len(issues) > 1:
                err.hint = f"{len(issues) - 1} more bad row(s); run `medtune data validate {self.path}`."
            raise err
        return examples

    def load_all(self) -> LoadResult:
        """All splits with ``meta.split`` set; bad rows are reported, not raised (for the UI)."""
        examples, issues = [], []
        for s in self.split_names():
            exs, iss = self._read(s, annotate=True)
            for ex in exs:
                ex["meta"]["split"] = s
            examples += exs
            issues += iss
        return LoadResult(self.kind, examples, issues, str(self.path), [], len(examples) + len(issues))

    def terms(self) -> list[str]:
        name = self.info.get("terms_file")
        if not name:
            return []
        if not isinstance(name, str) or not inside_any(self.path / name, [self.path.resolve()]):
            raise DataError(f"terms_file '{name}' must name a file inside the dataset folder",
                            file=str(self.path / "dataset.json"), field="terms_file")
        if not (self.path / name).exists():
            return []
        return read_terms(self.path / name)


def read_terms(path: Path) -> list[str]:
    """One term per line; blank lines and ``#`` comments ignored; order kept, no duplicates."""
    seen: dict[str, None] = {}
    for line in split_lines(read_text_utf8(path)):
        t = line.split("#", 1)[0].strip()
        if t:
            seen.setdefault(t, None)
    return list(seen)


def write_dataset(folder: Path, splits: dict[str, list[dict]], *, name: str, kind: str, seed: int | None,
                  source: str, terms: list[str] | None = None, extra: dict | None = None) -> None:
    """Write a dataset folder's files into ``folder`` (callers wrap this in atomic_dir)."""
    folder.mkdir(parents=True, exist_ok=True)
    for s, exs in splits.items():
        lines = [json.dumps(relative_audio(ex, folder), ensure_ascii=False) for ex in exs]
        write_text(folder / f"{s}.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    if terms:
        write_text(folder / "terms.txt", "\n".join(terms) + "\n")
    write_json(folder / "dataset.json", {
        "name": name, "kind": kind, "splits": {s: len(v) for s, v in splits.items()}, "seed": seed,
        "source": source, "terms_file": "terms.txt" if terms else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(extra or {})})


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
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name or ""):
        raise DataError(f"'{name}' is not a valid dataset name", field="name",
                        hint="Letters, digits, '.', '_' and '-', up to 64 characters.")
    return name


@contextlib.contextmanager
def _build_lock(workspace: Workspace, name: str):
    # The UI and a training job may ask for the same shipped set at once: one builds, the
    # other waits and then finds it built.
    lock_path = workspace.datasets / f".{name}.lock"
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def source_hash(name: str) -> str:
    """Fingerprint of a shipped set's text (and build version): edited assets -> rebuild."""
    import hashlib

    h = hashlib.sha1(f"v{BUILD_VERSION}".encode())
    src = SHIPPED_DIR / SHIPPED[name].source
    for f in (src, src.parent / "terms.txt"):
        if f.exists():
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _is_current(folder: Path) -> bool:
    try:
        info = json.loads((folder / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return info.get("source_hash") == source_hash(folder.name) if folder.name in SHIPPED else False


def ensure_shipped(name: str, workspace: Workspace, progress: Progress | None = None) -> Path:
    """Build shipped dataset ``name`` into ``<workspace>/datasets/<name>/`` once; return the folder.

    Speech sets are synthesized here (a minute or so for med-dictation on 2 cores); later
    calls return at once.
    """
    if name not in SHIPPED:
        raise DataError(f"unknown shipped dataset '{name}'", field="dataset",
                        hint=f"Shipped sets: {', '.join(SHIPPED)}")
    final = workspace.datasets / name
    if _is_current(final):
        return final
    with _build_lock(workspace, name):
        if _is_current(final):  # another process built it while we waited
            return final
        from engine.data.shipped import build_shipped

        report(progress, 0.0, f"building shipped dataset {name}")
        with atomic_dir(final, overwrite=True) as tmp:
            _reuse_audio(final / "audio", tmp / "audio")
            build_shipped(name, tmp, progress=scaled(progress, 0.0, 0.99))
        report(progress, 1.0, f"{name} ready")
    return final


def _reuse_audio(old: Path, new: Path) -> None:
    """Hard-link clips of an older build into the new one (names carry the text's hash, so
    only unchanged sentence+voice pairs are reused); unused ones vanish with the old folder."""
    import os
    import shutil

    if not old.is_dir():
        return
    new.mkdir(parents=True, exist_ok=True)
    for f in old.glob("*.flac"):
        try:
            os.link(f, new / f.name)
        except OSError:
            shutil.copy2(f, new / f.name)


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
    out = [{"name": n, "kind": s.kind, "shipped": True, "built": _is_current(workspace.datasets / n),
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
