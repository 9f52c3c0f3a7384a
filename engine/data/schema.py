"""Normalised examples and the issues found while reading them.

Text example:   {"id", "prompt", "response", "meta": {...}}      (PubMedQA: meta.label)
Speech example: {"id", "audio" (absolute path), "text", "duration", "meta": {...}}

Every reader returns a :class:`LoadResult`: the examples it could normalise plus one
:class:`Issue` per problem (file, line/row, field). A malformed row is never silently
dropped: it is left out of ``examples`` and appears in ``issues``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.errors import DataError

TEXT, SPEECH = "text", "speech"
KINDS = (TEXT, SPEECH)
LABELS = ("yes", "no", "maybe")


@dataclass
class Issue:
    """One problem in the data. ``line`` is the 1-based line (JSONL/CSV/manifest) or row
    number (Parquet, hub) where it was found."""

    message: str
    file: str | None = None
    line: int | None = None
    field: str | None = None
    severity: str = "error"  # "error" (row unusable) | "warning" (usable, look at it)
    code: str = "invalid"    # short category: invalid, empty, duplicate, missing_column, ...

    def where(self) -> str:
        return ", ".join(x for x in (
            self.file, f"line {self.line}" if self.line is not None else None,
            f"field '{self.field}'" if self.field else None) if x)

    def __str__(self) -> str:
        w = self.where()
        return f"{w}: {self.message}" if w else self.message

    def to_error(self) -> DataError:
        return DataError(self.message, file=self.file, line=self.line, field=self.field)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LoadResult:
    """What a reader found: normalised examples, problems, and where they came from."""

    kind: str
    examples: list[dict]
    issues: list[Issue] = field(default_factory=list)
    source: str = ""
    columns: list[str] = field(default_factory=list)
    rows_read: int = 0

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    def raise_on_errors(self) -> None:
        """Raise the first error as a :class:`DataError` (strict callers, e.g. training)."""
        errs = self.errors
        if errs:
            err = errs[0].to_error()
            if len(errs) > 1:
                err.hint = f"{len(errs) - 1} more problem(s) in this data; run `medtune data validate`."
            raise err


def text_example(id: str, prompt: Any, response: Any, meta: dict | None = None) -> dict:
    return {"id": str(id), "prompt": str(prompt), "response": str(response), "meta": dict(meta or {})}


def speech_example(id: str, audio: str, text: Any, duration: float, meta: dict | None = None) -> dict:
    return {"id": str(id), "audio": str(audio), "text": str(text), "duration": float(duration),
            "meta": dict(meta or {})}


def example_text(example: dict) -> str:
    """The text shown/searched/scrubbed for an example of either kind."""
    if "audio" in example:
        return example.get("text", "")
    return f"{example.get('prompt', '')}\n{example.get('response', '')}"


def get_path(obj: dict, dotted: str) -> Any:
    """``get_path(ex, "meta.label")`` -> ex["meta"]["label"] (None when absent)."""
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


_SURROGATE = re.compile("[\ud800-\udfff]")


def shown_text(text: str) -> str:
    """``text`` safe to print or write as UTF-8: a lone surrogate becomes its ``\\udXXX`` escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def unpaired_surrogate(value: Any) -> tuple[str, str] | None:
    """(field, the surrogate as ``\\udXXX``) for the first string in ``value`` (dict keys
    included) that holds an unpaired UTF-16 surrogate; None when there is none.

    JSON's ``\\ud800`` escape is how one gets in (UTF-8 decoding refuses them): such a string
    is not Unicode text, and writing, scrubbing or tokenizing it fails later with a
    UnicodeEncodeError or TypeError. The walk uses a stack, not recursion: rows may nest deeply."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            m = _SURROGATE.search(v)
            if m:
                return where or "value", shown_text(m.group())
        elif isinstance(v, dict):
            for k in v:
                m = _SURROGATE.search(k) if isinstance(k, str) else None
                if m:
                    return _join(where, shown_text(k)), shown_text(m.group())
            stack.extend((_join(where, str(k)), item) for k, item in reversed(v.items()))
        elif isinstance(v, list):
            stack.extend((f"{where}[{i}]", item) for i, item in reversed(list(enumerate(v))))
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def surrogate_issue(row: Any, file: str | None, line: int | None) -> Issue | None:
    """An error Issue naming file, line and field when ``row`` holds an unpaired surrogate."""
    found = unpaired_surrogate(row)
    if found is None:
        return None
    return Issue(f"contains an unpaired surrogate ({found[1]}), not valid Unicode text (a \\u escape "
                 "holding half of a character)", file, line, found[0], code="encoding")


def check_example(ex: Any, kind: str, *, file: str | None = None, line: int | None = None) -> list[Issue]:
    """Problems with an already-normalised example (a dataset folder row)."""
    if not isinstance(ex, dict):
        return [Issue("row is not a JSON object", file, line)]
    required = ("id", "audio", "text") if kind == SPEECH else ("id", "prompt", "response")
    out = []
    for key in required:
        if key not in ex:
            out.append(Issue("missing", file, line, key, code="missing_column"))
        elif not isinstance(ex[key], str):
            out.append(Issue(f"must be a string, got {type(ex[key]).__name__}", file, line, key))
        elif key != "id" and not ex[key].strip():
            out.append(Issue("empty", file, line, key, code="empty"))
    if "meta" in ex and not isinstance(ex["meta"], dict):
        out.append(Issue("must be an object", file, line, "meta"))
    if kind == SPEECH and "duration" in ex and not isinstance(ex["duration"], (int, float)):
        out.append(Issue("must be a number (seconds)", file, line, "duration"))
    bad_text = surrogate_issue(ex, file, line)
    if bad_text is not None:
        out.append(bad_text)
    return out
