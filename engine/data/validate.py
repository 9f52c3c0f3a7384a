"""The validation report: what is wrong with a dataset, row by row, before training on it.

Checks: rows the reader could not use (malformed JSON/CSV, missing or empty fields),
duplicate rows, unreadable / silent / over-long audio, characters a tokenizer cannot
encode, and label balance. Each finding names file, line/row and field.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio import SAMPLE_RATE, WHISPER_MAX_SECONDS, load_audio
from engine.data.schema import SPEECH, Issue, LoadResult, get_path
from engine.errors import DataError
from engine.progress import Progress, report

#: A clip whose loudest sample is below this (about -60 dBFS) is treated as silent.
SILENCE_PEAK = 1e-3
#: A label with less than this share of the rows is reported as imbalanced.
MIN_LABEL_SHARE = 0.10


@dataclass
class ValidationReport:
    source: str
    kind: str
    rows: int
    examples: int
    issues: list[Issue] = field(default_factory=list)
    label_balance: dict[str, int] = field(default_factory=dict)
    unencodable_chars: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity != "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def counts(self) -> dict[str, int]:
        """Findings per category (``code``)."""
        return dict(Counter(i.code for i in self.issues))

    def to_dict(self) -> dict:
        return {"source": self.source, "kind": self.kind, "rows": self.rows, "examples": self.examples,
                "ok": self.ok, "errors": len(self.errors), "warnings": len(self.warnings),
                "counts": self.counts(), "label_balance": self.label_balance,
                "unencodable_chars": self.unencodable_chars, "issues": [i.to_dict() for i in self.issues]}

    def summary(self) -> str:
        head = (f"{self.source}: {self.examples} usable example(s) of {self.rows} row(s); "
                f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        parts = [head]
        if self.counts():
            parts.append("by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(self.counts().items())))
        if self.label_balance:
            parts.append("labels: " + ", ".join(f"{k} {v}" for k, v in sorted(self.label_balance.items())))
        return "\n".join(parts)

    def to_markdown(self, max_issues: int = 200) -> str:
        lines = ["**" + self.summary().replace("\n", "**  \n**", 1) + "**", ""]
        if not self.issues:
            return "\n".join(lines + ["No problems found."])
        lines += ["| severity | where | problem |", "|---|---|---|"]
        for i in self.issues[:max_issues]:
            msg = i.message.replace("|", "\\|")
            lines.append(f"| {i.severity} | {i.where().replace('|', '/')} | {msg} |")
        if len(self.issues) > max_issues:
            lines.append(f"\n... and {len(self.issues) - max_issues} more")
        return "\n".join(lines)


def _where(ex: dict, source: str) -> tuple[str, int | None]:
    meta = ex.get("meta", {})
    return meta.get("source_file", source), meta.get("source_line")


def _duplicates(examples: list[dict], kind: str, source: str) -> list[Issue]:
    seen: dict[Any, int | None] = {}
    out = []
    for ex in examples:
        key = ex.get("audio") if kind == SPEECH else (ex.get("prompt", "").strip(), ex.get("response", "").strip())
        file, line = _where(ex, source)
        if key in seen:
            first = seen[key]
            out.append(Issue(f"duplicate of the row at line {first}" if first else "duplicate row",
                             file, line, "audio" if kind == SPEECH else "prompt", "warning", "duplicate"))
        else:
            seen[key] = line
    return out


def _check_audio(examples: list[dict], source: str, progress: Progress | None) -> list[Issue]:
    out = []
    for n, ex in enumerate(examples):
        file, line = _where(ex, source)
        try:
            audio = load_audio(ex["audio"])
        except DataError as e:
            out.append(Issue(f"unreadable audio: {e.message}", file, line, "audio", code="audio_unreadable"))
            continue
        if audio.size == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK:
            out.append(Issue(f"audio is silent ({Path(ex['audio']).name})", file, line, "audio", code="silent"))
        seconds = audio.size / SAMPLE_RATE
        if seconds > WHISPER_MAX_SECONDS and not ex.get("meta", {}).get("too_long_for_whisper"):
            out.append(Issue(f"{seconds:.1f} s is longer than Whisper's {WHISPER_MAX_SECONDS:.0f} s window",
                             file, line, "audio", "warning", "too_long"))
        sr = ex.get("meta", {}).get("sample_rate")
        ch = ex.get("meta", {}).get("channels")
        if (sr and sr != SAMPLE_RATE) or (ch and ch > 1):
            out.append(Issue(f"{sr} Hz, {ch} channel(s): mixed to mono and resampled to {SAMPLE_RATE} Hz on load",
                             file, line, "audio", "info", "resampled"))
        if n % 20 == 0:
            report(progress, n / max(len(examples), 1), f"checked audio {n}/{len(examples)}")
    return out


def load_tokenizer(name: str) -> Any:
    """The tokenizer in a model folder or of a hub id (a registry name: pass it through
    :func:`engine.models.loader.model_path` first)."""
    from transformers import AutoTokenizer  # noqa: PLC0415 - seconds to import, needed only with a tokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:  # an unknown path or a hub id while offline
        raise DataError(f"cannot load tokenizer '{name}' ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                        field="tokenizer") from e


def unencodable_characters(tokenizer: Any, texts: list[str]) -> set[str]:
    """Characters that ``tokenizer`` maps to its unknown token or cannot round-trip.

    Checked once per distinct character (fast even for big sets); byte-level BPE tokenizers
    (GPT-2, Llama 3, Whisper) can encode anything, SentencePiece/WordPiece ones often not.
    """
    chars = {c for t in texts for c in t if not c.isspace()}
    unk = getattr(tokenizer, "unk_token_id", None)
    bad = set()
    for c in sorted(chars):
        ids = tokenizer.encode(c, add_special_tokens=False)
        if not ids or (unk is not None and unk in ids):
            bad.add(c)
            continue
        if c not in tokenizer.decode(ids, skip_special_tokens=True):
            bad.add(c)
    return bad


def _check_tokenizer(tokenizer: Any, examples: list[dict], kind: str, source: str) -> tuple[list[Issue], dict]:
    fields = ("text",) if kind == SPEECH else ("prompt", "response")
    texts = [ex.get(f, "") for ex in examples for f in fields]
    bad = unencodable_characters(tokenizer, texts)
    if not bad:
        return [], {}
    counts: Counter = Counter()
    out = []
    for ex in examples:
        file, line = _where(ex, source)
        for f in fields:
            found = sorted({c for c in ex.get(f, "") if c in bad})
            if found:
                counts.update(c for c in ex.get(f, "") if c in bad)
                out.append(Issue("characters the tokenizer cannot encode: " + " ".join(repr(c) for c in found),
                                 file, line, f, "warning", "unencodable"))
    return out, dict(counts)


def validate(result: LoadResult, *, tokenizer: Any = None, check_audio: bool = True,
             label_key: str = "meta.label", progress: Progress | None = None) -> ValidationReport:
    """Build the report for what a reader returned (its issues are included as found)."""
    rep = ValidationReport(result.source, result.kind, result.rows_read, len(result.examples), list(result.issues))
    rep.issues += _duplicates(result.examples, result.kind, result.source)
    if result.kind == SPEECH and check_audio:
        rep.issues += _check_audio(result.examples, result.source, progress)
    if tokenizer is not None:
        issues, rep.unencodable_chars = _check_tokenizer(tokenizer, result.examples, result.kind, result.source)
        rep.issues += issues
    labels = Counter(str(v) for v in (get_path(ex, label_key) for ex in result.examples) if v is not None)
    if labels:
        rep.label_balance = dict(labels)
        total = sum(labels.values())
        for label, n in sorted(labels.items()):
            if n / total < MIN_LABEL_SHARE:
                rep.issues.append(Issue(f"label '{label}' is only {n} of {total} rows ({100 * n / total:.0f}%)",
                                        result.source, None, label_key, "warning", "label_imbalance"))
    report(progress, 1.0, "validation done")
    return rep
