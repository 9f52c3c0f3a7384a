"""A dataset folder: what ``split`` saves and training/evaluation read::

    dataset.json   {"name", "kind", "splits": {"train": n, ...}, "seed", "source",
                    "terms_file": "terms.txt" | null, "created", ...}
    train.jsonl  validation.jsonl  test.jsonl     one normalised example per line
    terms.txt      optional, one medical term per line
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from engine.atomic import write_json, write_text
from engine.data.readers import parse_json_line, read_terms, read_text_utf8, split_lines
from engine.data.schema import KINDS, SPEECH, TEXT, Issue, LoadResult, check_example
from engine.data.split import SPLITS, relative_audio
from engine.errors import DataError
from engine.workspace import inside_any

#: A dataset or split name: one file or folder name (no '/', no '..').
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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
        if not NAME.fullmatch(str(split)):
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
