"""Column-mapping presets: how a row of a known public layout becomes a normalised example.

The same mapping serves a local file laid out like the public set and the set itself
loaded from the Hugging Face hub (:func:`engine.data.readers.read_hub`), so the code that
cannot reach the Hub here is the code the tests run on local files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.atomic import write_bytes
from engine.audio import resample, to_mono, write_flac
from engine.data.schema import LABELS, SPEECH, TEXT, speech_example, text_example
from engine.errors import DataError


class RowProblem(Exception):
    """A row that cannot be normalised; ``field`` names the column at fault."""

    def __init__(self, message: str, field: str | None = None, code: str = "invalid"):
        super().__init__(message)
        self.message, self.field, self.code = message, field, code


@dataclass
class RowContext:
    """What a mapping needs besides the row: where relative audio paths start, where
    embedded audio bytes may be written, and the row's identity."""

    base_dir: Path
    audio_cache: Path | None
    row_id: str


@dataclass(frozen=True)
class Preset:
    name: str
    kind: str
    description: str
    #: columns that must exist (each entry: alternatives, the first present wins)
    required: tuple[tuple[str, ...], ...]
    map_row: Callable[[dict, RowContext], dict]
    hub_ids: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def missing_columns(self, columns: list[str]) -> list[str]:
        cols = set(columns)
        return ["|".join(alts) for alts in self.required if not cols.intersection(alts)]


def _first(row: dict, names: tuple[str, ...]) -> tuple[str | None, Any]:
    for n in names:
        if n in row:
            return n, row[n]
    return None, None


def _text(row: dict, names: tuple[str, ...], *, allow_empty: bool = False) -> str:
    col, val = _first(row, names)
    if col is None:
        raise RowProblem("column missing", "|".join(names), code="missing_column")
    if val is None or (isinstance(val, float) and val != val):  # None or NaN (pandas)
        if allow_empty:
            return ""
        raise RowProblem("empty value", col, code="empty")
    if not isinstance(val, (str, int, float)):
        raise RowProblem(f"expected text, got {type(val).__name__}", col)
    s = str(val)
    if not s.strip() and not allow_empty:
        raise RowProblem("empty value", col, code="empty")
    return s


def _meta(row: dict, skip: set[str]) -> dict:
    """Keep scalar columns we did not map, so filters and stats can use them."""
    return {k: v for k, v in row.items()
            if k not in skip and isinstance(v, (str, int, float, bool)) and v is not None}


PROMPT_COLS = ("prompt", "question", "instruction", "input", "query")
RESPONSE_COLS = ("response", "answer", "output", "completion")
AUDIO_COLS = ("audio", "audio_filepath", "audio_path", "path", "file", "wav")
TRANSCRIPT_COLS = ("text", "transcript", "transcription", "sentence", "normalized_text")


def _generic_text(row: dict, ctx: RowContext) -> dict:
    pc, _ = _first(row, PROMPT_COLS)
    rc, _ = _first(row, RESPONSE_COLS)
    prompt = _text(row, PROMPT_COLS)
    response = _text(row, RESPONSE_COLS)
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    meta = {**_meta(row, {pc, rc, "id", "meta"}), **meta}
    return text_example(row.get("id", ctx.row_id), prompt, response, meta)


def _healthcaremagic(row: dict, ctx: RowContext) -> dict:
    # HealthCareMagic-100k: "instruction" is the same boiler-plate for every row ("If you
    # are a doctor, please answer..."), the patient's words are in "input".
    instruction = _text(row, ("instruction",), allow_empty=True)
    question = _text(row, ("input",), allow_empty=True)
    if not question.strip() and not instruction.strip():
        raise RowProblem("empty value", "input", code="empty")
    response = _text(row, ("output",))
    meta = {"instruction": instruction, **_meta(row, {"instruction", "input", "output"})}
    return text_example(row.get("id", ctx.row_id), question.strip() or instruction, response, meta)


def _pubmedqa_context(val: Any) -> str:
    # Hub rows carry {"contexts": [...], "labels": [...], "meshes": [...]}; flat files a string.
    if isinstance(val, dict):
        val = val.get("contexts", [])
    if isinstance(val, (list, tuple)):
        return " ".join(str(v) for v in val)
    return "" if val is None else str(val)


def pubmedqa_prompt(question: str, context: str) -> str:
    """The one PubMedQA prompt format (training and evaluation must agree on it)."""
    return f"Question: {question}\nContext: {context}\nAnswer yes, no or maybe, then explain briefly."


def pubmedqa_response(label: str, long_answer: str) -> str:
    """``Answer: <label>. <long answer>``: the label comes first so it can be parsed."""
    return f"Answer: {label}. {long_answer}".strip()


def _pubmedqa(row: dict, ctx: RowContext) -> dict:
    question = _text(row, ("question",))
    if "context" not in row:
        raise RowProblem("column missing", "context", code="missing_column")
    context = _pubmedqa_context(row["context"])
    if not context.strip():
        raise RowProblem("empty value", "context", code="empty")
    long_answer = _text(row, ("long_answer",))
    label = _text(row, ("final_decision",)).strip().lower()
    if label not in LABELS:
        raise RowProblem(f"'{label}' is not one of yes/no/maybe", "final_decision")
    rid = row.get("id", row.get("pubid", ctx.row_id))
    meta = {"label": label, "question": question, "context": context, "long_answer": long_answer,
            **_meta(row, {"question", "context", "long_answer", "final_decision", "id", "pubid"})}
    return text_example(rid, pubmedqa_prompt(question, context), pubmedqa_response(label, long_answer), meta)


def _medimind(row: dict, ctx: RowContext) -> dict:
    prompt = _text(row, ("instruction",))
    response = _text(row, ("response",))
    meta = _meta(row, {"instruction", "response", "id"})
    return text_example(row.get("id", ctx.row_id), prompt, response, meta)


def _audio_path(val: Any, col: str, ctx: RowContext) -> str:
    """A path string, or a hub audio dict with bytes/array that gets written to the cache."""
    if isinstance(val, str):
        if not val.strip():
            raise RowProblem("empty audio path", col, code="empty")
        p = Path(val).expanduser()
        return str(p if p.is_absolute() else (ctx.base_dir / p).resolve())
    if isinstance(val, dict):
        data, array = val.get("bytes"), val.get("array")
        if data is None and array is None and val.get("path"):
            return _audio_path(str(val["path"]), col, ctx)
        if ctx.audio_cache is None:
            raise RowProblem("embedded audio needs a workspace to be written to", col)
        if data is not None:
            digest = hashlib.sha1(data).hexdigest()[:16]
            suffix = Path(str(val.get("path") or "x.wav")).suffix or ".wav"
            out = ctx.audio_cache / f"{digest}{suffix}"
            if not out.exists():
                write_bytes(out, data)
            return str(out)
        arr = np.asarray(array, dtype="float32")
        sr = int(val.get("sampling_rate") or 16000)
        digest = hashlib.sha1(arr.tobytes()).hexdigest()[:16]
        out = ctx.audio_cache / f"{digest}.flac"
        if not out.exists():
            write_flac(out, resample(to_mono(arr), sr))
        return str(out)
    raise RowProblem(f"expected an audio path, got {type(val).__name__}", col)


def _generic_speech(row: dict, ctx: RowContext) -> dict:
    col, val = _first(row, AUDIO_COLS)
    if col is None:
        raise RowProblem("column missing", "|".join(AUDIO_COLS), code="missing_column")
    if val is None:
        raise RowProblem("empty value", col, code="empty")
    audio = _audio_path(val, col, ctx)
    tcol, _ = _first(row, TRANSCRIPT_COLS)
    text = _text(row, TRANSCRIPT_COLS)
    duration = row.get("duration")
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    meta = {**_meta(row, {col, tcol, "id", "duration", "meta"}), **meta}
    ex = speech_example(row.get("id", ctx.row_id), audio, text,
                        duration if isinstance(duration, (int, float)) and duration == duration else -1.0,
                        meta)
    return ex


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("text", TEXT, "Generic text: prompt/question/instruction -> response/answer/output",
           (PROMPT_COLS, RESPONSE_COLS), _generic_text),
    Preset("healthcaremagic", TEXT, "HealthCareMagic-100k (instruction, input, output)",
           (("instruction",), ("input",), ("output",)), _healthcaremagic,
           hub_ids=("lavita/ChatDoctor-HealthCareMagic-100k", "wangrongsheng/HealthCareMagic-100k-en")),
    Preset("pubmedqa", TEXT, "PubMedQA (question, context, long_answer, final_decision yes/no/maybe)",
           (("question",), ("context",), ("long_answer",), ("final_decision",)), _pubmedqa,
           hub_ids=("qiaojin/PubMedQA", "pubmed_qa"), extra={"hub_config": "pqa_labeled"}),
    Preset("medimind", TEXT, "MediMind-style (instruction, response, source, safety_level)",
           (("instruction",), ("response",)), _medimind),
    Preset("speech", SPEECH, "Generic speech: audio/audio_filepath/path + text/transcript",
           (AUDIO_COLS, TRANSCRIPT_COLS), _generic_speech),
    Preset("nemo", SPEECH, "NeMo manifest (audio_filepath, duration, text)",
           (("audio_filepath",), ("text",)), _generic_speech),
    Preset("hani89", SPEECH, "Hani89 synthetic medical speech (audio, sentence/transcription)",
           (("audio",), TRANSCRIPT_COLS), _generic_speech,
           hub_ids=("Hani89/medical_asr_recording_dataset", "Hani89/synthetic-medical-speech-dataset")),
    Preset("yfyeung-medical", SPEECH, "yfyeung/medical conversations (audio path + text)",
           (AUDIO_COLS, TRANSCRIPT_COLS), _generic_speech, hub_ids=("yfyeung/medical",)),
)}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise DataError(f"unknown preset '{name}'", hint=f"Choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def detect_preset(columns: list[str]) -> Preset | None:
    """Guess the preset from a file's columns (most specific layouts first)."""
    cols = set(columns)
    if {"question", "context", "final_decision"} <= cols:
        return PRESETS["pubmedqa"]
    if {"instruction", "input", "output"} <= cols:
        return PRESETS["healthcaremagic"]
    if {"instruction", "response"} <= cols:
        return PRESETS["medimind"]
    if "audio_filepath" in cols:
        return PRESETS["nemo"]
    if cols.intersection(AUDIO_COLS) and cols.intersection(TRANSCRIPT_COLS):
        return PRESETS["speech"]
    if cols.intersection(PROMPT_COLS) and cols.intersection(RESPONSE_COLS):
        return PRESETS["text"]
    return None


def preset_for_hub_id(hub_id: str) -> Preset | None:
    for p in PRESETS.values():
        if hub_id in p.hub_ids:
            return p
    return None
