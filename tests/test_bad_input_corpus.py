"""Issue #8's bad-input corpus: ONE table of bad inputs, each with the clear error it must get.

A row (:class:`Case`) is

- a bad file or value BUILT AT TEST TIME (synthetic content only: nothing binary is
  committed; audio is synthesized tones, junk is ``os.urandom``),
- the entry point it goes through, i.e. the engine function that both the UI tab and the
  CLI command call (``load_source`` + ``validate``, ``open_dataset``, ``preflight.check``,
  ``load_config``, ``Workspace.resolve``...), the ``medtune`` CLI itself, or a UI handler,
- what must come back: :class:`Refused` (a :class:`MedtuneError`, or an error-severity
  :class:`Issue`, whose text matches a regex and which names the file, line/row and field),
  :class:`Flagged` (kept, with a warning that says what is wrong) or :class:`Accepted`
  (accepted by design; the result is asserted, e.g. 48 kHz stereo really comes out as
  16 kHz mono with both channels in it).

Around every row, nothing outside the workspace may be read or written. A sentinel folder
beside the workspace holds the files the path-traversal rows aim at; a Python audit hook
records every open/listdir of a path in it (and of /etc/passwd), file access times catch
reads made from C (libsndfile, Arrow), its listing, sizes and mtimes must not change, and
its secret text never appears in what a row returns (nor, at the end, in any workspace file).
A crash (any exception that is not a MedtuneError) fails the row with its traceback.

``test_app_keeps_serving`` pushes a subset of the corpus through the REAL app over HTTP
(uploads via ``/gradio_api/upload``, the Data and Playground handlers, the file route) and
checks the page still answers 200. ``test_tally`` writes the figures to
``.test-artifacts/bad-input-corpus.json``.

To add a row: write a builder ``def _x(ctx) -> outcome`` that makes the bad input under
``ctx.dir`` (or aims at ``ctx.outside``) and calls the entry point, then append
``Case(id, area, entry, builder, Refused(...))`` to the table.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import struct
import sys
import threading
import time
import tracemalloc
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile as sf

from engine.errors import ConfigError, DataError, MedtuneError
from engine.workspace import ASSETS, Workspace

SENTINEL = f"MEDTUNE-CORPUS-SENTINEL-{uuid.uuid4().hex}"
SR = 16_000


# =============================================================================================
# The harness: expectations, findings, the confinement guard
# =============================================================================================
@dataclass(frozen=True)
class Refused:
    """Refused cleanly: a MedtuneError or an error Issue matching ``pattern`` (re.search, case
    insensitive) that names ``file`` (a suffix of the path), ``line`` and ``field`` when given."""

    pattern: str
    file: str | None = None
    line: int | None = None
    field: str | None = None
    severity: str = "error"


@dataclass(frozen=True)
class Flagged(Refused):
    """Kept, with a warning matching ``pattern`` (e.g. audio too long for Whisper)."""

    severity: str = "warning"


@dataclass(frozen=True)
class Accepted:
    """Accepted by design; ``check(outcome, ctx)`` asserts the result is right."""

    check: Callable[[Any, "Ctx"], None]
    why: str


@dataclass(frozen=True)
class Case:
    id: str
    area: str  # data | encoding | size | audio | path | config | yaml | cli | ui
    entry: str  # the entry point, in words
    run: Callable[["Ctx"], Any]
    expect: Refused | Accepted
    also: Callable[[Any, "Ctx"], None] | None = None  # extra assertions on the outcome


@dataclass
class Finding:
    text: str
    file: str | None = None
    line: int | None = None
    field: str | None = None
    severity: str = "error"


@dataclass
class CliResult:
    rc: int
    out: str
    err: str
    runs_before: int = 0
    runs_after: int = 0


@dataclass
class Ctx:
    ws: Workspace
    outside: Path  # the sentinel folder beside the workspace
    dir: Path  # a fresh folder for this row, inside the workspace
    run_id: str  # a run created for the rows that need one

    @property
    def rel(self) -> str:
        return self.dir.relative_to(self.ws.root).as_posix()

    def write(self, name: str, data: bytes | str) -> str:
        """Write ``name`` under this row's folder; returns its workspace-relative path."""
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return p.relative_to(self.ws.root).as_posix()

    def up_to_outside(self, name: str, start: Path | None = None) -> str:
        """A relative path from ``start`` (default: the workspace) that climbs out to ``outside/name``."""
        return os.path.relpath(self.outside / name, start or self.ws.root)


def findings(outcome: Any, err: MedtuneError | None) -> list[Finding]:
    """Everything a row said, as (text, file, line, field, severity) findings."""
    from engine.data.schema import Issue, LoadResult
    from engine.data.validate import ValidationReport

    if err is not None:
        if isinstance(err, ConfigError):
            return [Finding(f"{p}\n{err}", getattr(err, "source", None), None, p.split(":", 1)[0].strip())
                    for p in err.problems]
        if isinstance(err, DataError):
            return [Finding(str(err), err.file, err.line, err.field)]
        return [Finding(str(err))]
    if isinstance(outcome, (LoadResult, ValidationReport)):
        outcome = outcome.issues
    if isinstance(outcome, CliResult):
        return [Finding(outcome.err + outcome.out, severity="error" if outcome.rc != 0 else "ok")]
    if isinstance(outcome, list) and all(isinstance(i, Issue) for i in outcome):
        return [Finding(str(i), i.file, i.line, i.field, i.severity) for i in outcome]
    return []


def matches(f: Finding, exp: Refused) -> bool:
    if f.severity != exp.severity or not re.search(exp.pattern, f.text, re.I | re.S):
        return False
    if exp.file is not None and not ((f.file or "").endswith(exp.file) or exp.file in f.text):
        return False
    if exp.line is not None and f.line != exp.line:
        return False
    return exp.field is None or f.field == exp.field


class ReadWatch:
    """Audit hook: every Python-level open/listdir of a watched path while ``active``."""

    EVENTS = ("open", "os.listdir", "os.scandir", "shutil.copyfile", "os.rename", "os.remove", "os.mkdir")

    def __init__(self) -> None:
        self.active = False
        self.roots: tuple[str, ...] = ()
        self.files: tuple[str, ...] = ("/etc/passwd", "/etc/shadow")
        self.hits: list[tuple[str, str]] = []
        self._busy = threading.local()

    def __call__(self, event: str, args: tuple) -> None:
        if not self.active or event not in self.EVENTS or getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            for a in args[:2] if event in ("shutil.copyfile", "os.rename") else args[:1]:
                if a is None or isinstance(a, int):
                    continue
                p = os.path.realpath(os.fsdecode(os.fspath(a)))
                if p in self.files or any(p == r or p.startswith(r + os.sep) for r in self.roots):
                    self.hits.append((event, p))
        except Exception:  # noqa: BLE001 - never break the code under test
            pass
        finally:
            self._busy.on = False


WATCH = ReadWatch()
sys.addaudithook(WATCH)
OLD_ATIME_NS = 1_000_000_000 * 1_000_000_000  # 2001-09-09: older than any mtime, so a read updates it


class Outside:
    """The sentinel folder beside the workspace, and the checks that nothing touched it."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "secret.txt").write_text(f"{SENTINEL}\nrm -rf --no-preserve-root /\n")
        (root / "secret.jsonl").write_text(json.dumps({"prompt": SENTINEL, "response": SENTINEL}) + "\n")
        (root / "sentences.txt").write_text(f"{SENTINEL} is a sentence.\n")
        (root / "gold.jsonl").write_text(json.dumps({"id": "g", "split": "dev", "text": SENTINEL, "spans": []}) + "\n")
        sf.write(root / "secret.wav", tone(1.234, freq=1234.0), SR)  # a real clip: only atime betrays a read
        _parquet(root / "secret.parquet", {"prompt": [SENTINEL], "response": [SENTINEL]})
        ds = root / "dataset"
        ds.mkdir()
        (ds / "dataset.json").write_text(json.dumps({"name": "outside", "kind": "text", "terms_file": "terms.txt"}))
        (ds / "train.jsonl").write_text(json.dumps({"id": "o1", "prompt": SENTINEL, "response": SENTINEL}) + "\n")
        (ds / "terms.txt").write_text(SENTINEL + "\n")
        model = root / "model"
        model.mkdir()
        (model / "config.json").write_text(json.dumps({"model_type": "llama", "note": SENTINEL}))
        run = root / "run"
        run.mkdir()
        (run / "config.yaml").write_text(f"# {SENTINEL}\n")
        self.hashes = {p: hashlib.sha1(p.read_bytes()).hexdigest() for p in self.files()}
        self.reset_atimes()
        self.atime_works = self._atime_works()

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def reset_atimes(self) -> None:
        for p in self.files():
            st = p.stat()
            os.utime(p, ns=(OLD_ATIME_NS, st.st_mtime_ns))

    def _atime_works(self) -> bool:
        probe = self.root.parent / "atime-probe.txt"
        probe.write_text("probe")
        os.utime(probe, ns=(OLD_ATIME_NS, probe.stat().st_mtime_ns))
        probe.read_bytes()
        works = probe.stat().st_atime_ns != OLD_ATIME_NS
        probe.unlink()
        return works

    def snapshot(self) -> dict[str, tuple]:
        out = {}
        for dirpath, dirs, files in os.walk(self.root):
            for n in dirs + files:
                p = Path(dirpath) / n
                st = p.lstat()
                out[str(p.relative_to(self.root))] = (p.is_dir(), st.st_size, st.st_mtime_ns,
                                                      None if p.is_dir() else st.st_atime_ns)
        return out


def guard_problems(before: dict, after: dict, outside: Outside) -> list[str]:
    """What changed outside the workspace between two snapshots (reads included via atime)."""
    problems = []
    for name in sorted(set(before) | set(after)):
        if name not in after:
            problems.append(f"outside/{name} was deleted")
        elif name not in before:
            problems.append(f"outside/{name} was created")
        else:
            b, a = before[name], after[name]
            if b[1:3] != a[1:3]:
                problems.append(f"outside/{name} was modified")
            elif outside.atime_works and not b[0] and b[3] != a[3]:
                problems.append(f"outside/{name} was read (its access time changed)")
    return problems


def outcome_text(outcome: Any, err: BaseException | None) -> str:
    """Everything a row returned, as text, to look for the sentinel in."""
    parts = [str(err)] if err is not None else []
    try:
        parts.append(json.dumps(getattr(outcome, "to_dict", lambda: outcome)(), default=str))
    except (TypeError, ValueError):
        parts.append(repr(outcome))
    for attr in ("examples",):
        if hasattr(outcome, attr):
            parts.append(json.dumps(getattr(outcome, attr), default=str))
    return "\n".join(parts)


TALLY: dict[str, dict] = {}


# =============================================================================================
# Synthetic content
# =============================================================================================
def tone(seconds: float, sr: int = SR, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def audio_bytes(x: np.ndarray, sr: int = SR, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype="PCM_16")
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def silent_flac_4h() -> bytes:
    """Issue #8 item 4(b): 4 h of digital silence at 16 kHz as FLAC, about 730 KB (silence
    compresses ~1,300:1) and about 2 GB once decoded. Written in blocks, once per session."""
    buf = io.BytesIO()
    block = np.zeros(SR * 600, np.int16)
    with sf.SoundFile(buf, "w", SR, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(24):
            f.write(block)
    return buf.getvalue()


def wav_claiming_4gb() -> bytes:
    """A 44-byte WAV (header, no samples) whose RIFF and data sizes are patched to claim ~4 GB."""
    data = bytearray(audio_bytes(np.zeros(0, np.float32)))
    at = data.index(b"data")
    data[4:8] = struct.pack("<I", 0xFFFFFFFF - 8)
    data[at + 4:at + 8] = struct.pack("<I", 0xFFFFFFFF - at - 8)
    return bytes(data)


@contextlib.contextmanager
def audio_limit(value: str):
    """``MEDTUNE_MAX_AUDIO_S`` set to ``value`` for the duration of a row."""
    saved = os.environ.get("MEDTUNE_MAX_AUDIO_S")
    os.environ["MEDTUNE_MAX_AUDIO_S"] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MEDTUNE_MAX_AUDIO_S", None)
        else:
            os.environ["MEDTUNE_MAX_AUDIO_S"] = saved


def _parquet(path: Path, columns: dict[str, list]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)


def parquet_bytes(columns: dict[str, list], tmp: Path) -> bytes:
    _parquet(tmp, columns)
    data = tmp.read_bytes()
    tmp.unlink()
    return data


QA = [{"prompt": "What is apixaban?", "response": "An oral anticoagulant."},
      {"prompt": "What does INR measure?", "response": "How long blood takes to clot."},
      {"prompt": "First-line drug for type 2 diabetes?", "response": "Metformin."}]


def jsonl(rows: list) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def peak_hz(x: np.ndarray, sr: int = SR) -> list[float]:
    """Frequencies of the two strongest spectral peaks."""
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    freqs = np.fft.rfftfreq(x.size, 1 / sr)
    top = []
    for i in np.argsort(spec)[::-1]:
        if all(abs(freqs[i] - f) > 50 for f in top):
            top.append(float(freqs[i]))
        if len(top) == 2:
            break
    return top


def amp_at(x: np.ndarray, hz: float, sr: int = SR) -> float:
    """Amplitude of the sinusoid at ``hz`` (least squares against sin/cos)."""
    t = np.arange(x.size) / sr
    basis = np.stack([np.sin(2 * np.pi * hz * t), np.cos(2 * np.pi * hz * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x.astype(np.float64), rcond=None)
    return float(np.hypot(*coef))


# =============================================================================================
# Entry points (the engine functions the UI and the CLI share)
# =============================================================================================
def load_validate(ctx: Ctx, ref: str, *, preset: str | None = None, check_audio: bool = True):
    """Data tab Load + Validate, ``medtune data validate``: load_source then validate."""
    from engine.data.datasets import load_source
    from engine.data.validate import validate

    res, _terms = load_source(ref, ctx.ws, preset=preset)
    rep = validate(res, check_audio=check_audio)
    rep.examples_list = res.examples  # type: ignore[attr-defined] - for the Accepted checks
    return rep


def cli(ctx: Ctx, *argv: str) -> CliResult:
    """``medtune --workspace WS ARGV...`` in-process (the dispatcher is the CLI)."""
    from engine.cli import main
    from engine.runs import list_runs

    out, err = io.StringIO(), io.StringIO()
    runs_before = len(list_runs(ctx.ws))
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(["--workspace", str(ctx.ws.root), *argv])
        except SystemExit as e:  # argparse usage errors
            rc = int(e.code or 0)
    return CliResult(rc, out.getvalue(), err.getvalue(), runs_before, len(list_runs(ctx.ws)))


def open_split(ctx: Ctx, ref: str, split: str = "train"):
    """Train / Evaluate / Compare read a dataset's split through open_dataset + load_split."""
    from engine.data.datasets import open_dataset

    return open_dataset(ref, ctx.ws).load_split(split)


def check_config(ctx: Ctx, d: dict):
    """The Train tab's form, ``medtune train --set`` and jobs.launch all end in preflight.check."""
    from engine.config import RunConfig
    from engine.preflight import check

    return check(RunConfig.from_dict(d), ctx.ws)


def yaml_config(ctx: Ctx, name: str, data: bytes | str):
    """``medtune train RECIPE.yaml`` and a run's saved config.yaml: load_config."""
    from engine.preflight import load_config

    return load_config(ctx.ws.root / ctx.write(name, data))


# =============================================================================================
# The corpus
# =============================================================================================
CASES: list[Case] = []


def case(id: str, area: str, entry: str, expect: Refused | Accepted, also=None):
    def deco(fn):
        CASES.append(Case(id, area, entry, fn, expect, also))
        return fn
    return deco


LOAD = "load_source + validate (Data tab Load/Validate, `medtune data validate`)"
SPLIT = "open_dataset + load_split (Train, Evaluate, Compare)"

# ---- malformed tables ------------------------------------------------------------------------


@case("jsonl-malformed-line", "data", LOAD, Refused(r"not valid JSON", "bad.jsonl", 2))
def _(ctx):
    return load_validate(ctx, ctx.write("bad.jsonl", json.dumps(QA[0]) + '\n{"prompt": "broken", "response": \n'
                                        + json.dumps(QA[1]) + "\n"))


@case("jsonl-not-an-object", "data", LOAD, Refused(r"expected a JSON object, got list", "bad.jsonl", 2))
def _(ctx):
    return load_validate(ctx, ctx.write("bad.jsonl", json.dumps(QA[0]) + '\n["not", "an", "object"]\n'))


@case("jsonl-cut-mid-record", "data", LOAD, Refused(r"not valid JSON", "cut.jsonl", 3))
def _(ctx):
    text = jsonl(QA)
    return load_validate(ctx, ctx.write("cut.jsonl", text[: len(text) - 20]))


@case("json-array-syntax-error", "data", LOAD, Refused(r"not valid JSON", "bad.json", 3))
def _(ctx):
    return load_validate(ctx, ctx.write("bad.json", "[\n" + json.dumps(QA[0]) + ",\n" + '{"prompt": "x" "response": "y"}\n]'))


@case("jsonl-nested-100k-deep", "data", LOAD, Refused(r"nested too deeply", "deep.jsonl", 1))
def _(ctx):
    return load_validate(ctx, ctx.write("deep.jsonl", '{"prompt": ' + "[" * 100_000 + "]" * 100_000
                                        + ', "response": "x"}\n' + json.dumps(QA[0]) + "\n"))


@case("jsonl-prompt-is-an-object", "data", LOAD, Refused(r"expected text, got dict", "typed.jsonl", 1, "prompt"))
def _(ctx):
    return load_validate(ctx, ctx.write("typed.jsonl", jsonl([{"prompt": {"a": 1}, "response": "x"}, QA[0]])))


@case("jsonl-empty-response", "data", LOAD, Refused(r"empty value", "empty-field.jsonl", 2, "response"))
def _(ctx):
    return load_validate(ctx, ctx.write("empty-field.jsonl", jsonl([QA[0], {"prompt": "Dose?", "response": "  "}])))


#: Issue #8 item 5: a lone UTF-16 surrogate, written as JSON's \ud800 escape (valid JSON, not valid text).
SURROGATE_QA = jsonl(QA[:2]) + '{"prompt": "Dose of \\ud800 apixaban?", "response": "5 mg twice daily."}\n'
SURROGATE = r"contains an unpaired surrogate \(\\ud800\), not valid Unicode text"


@case("jsonl-lone-surrogate", "encoding", LOAD, Refused(SURROGATE, "surrogate.jsonl", 3, "prompt"),
      also=lambda rep, ctx: assert_prompts(rep, [QA[0]["prompt"], QA[1]["prompt"]]))
def _(ctx):
    return load_validate(ctx, ctx.write("surrogate.jsonl", SURROGATE_QA))


@case("json-array-lone-surrogate-in-a-key", "encoding", LOAD,
      Refused(r"contains an unpaired surrogate \(\\udc00\)", "surrogate.json", 2, "meta.\\udc00x"))
def _(ctx):
    return load_validate(ctx, ctx.write("surrogate.json", "[" + json.dumps(QA[0]) + ', {"prompt": "p", "response": "r", '
                                                          '"meta": {"\\udc00x": 1}}]'))


@case("dataset-split-lone-surrogate", "encoding", SPLIT, Refused(SURROGATE, "train.jsonl", 3, "prompt"))
def _(ctx):
    ctx.write("ds/dataset.json", json.dumps({"name": "x", "kind": "text"}))
    ctx.write("ds/train.jsonl", jsonl([{"id": f"q{i}", **q} for i, q in enumerate(QA[:2])])
              + '{"id": "q2", "prompt": "Dose of \\ud800 apixaban?", "response": "5 mg."}\n')
    return open_split(ctx, f"{ctx.rel}/ds")


@case("csv-ragged-row", "data", LOAD, Refused(r"has 3 fields, header has 2", "ragged.csv", 3))
def _(ctx):
    return load_validate(ctx, ctx.write("ragged.csv", "prompt,response\nWhat is TIA?,A mini-stroke.\na,b,c\n"))


@case("csv-unclosed-quote", "data", LOAD,
      Refused(r"header has 2 \(a quoted field runs on from here to line 3: an unclosed quote\?\)", "quote.csv", 2))
def _(ctx):
    return load_validate(ctx, ctx.write("quote.csv", 'prompt,response\n"What is sepsis?,x\nWhat is COPD?,A lung disease.\n'))


@case("csv-missing-column-preset", "data", LOAD,
      Refused(r"required column missing \(columns are: prompt, notes\)", "cols.csv",
              field="response|answer|output|completion"))
def _(ctx):
    return load_validate(ctx, ctx.write("cols.csv", "prompt,notes\nWhat is sepsis?,x\n"), preset="text")


@case("csv-wrong-columns", "data", LOAD, Refused(r"cannot tell what the columns mean \(question, notes\)", "cols.csv"))
def _(ctx):
    return load_validate(ctx, ctx.write("cols.csv", "question,notes\nWhat is sepsis?,x\n"))


@case("jsonl-speech-without-transcript", "data", LOAD,
      Refused(r"required column missing", "speech.jsonl", field="text|transcript|transcription|sentence|normalized_text"))
def _(ctx):
    ctx.write("a.wav", audio_bytes(tone(0.5)))
    return load_validate(ctx, ctx.write("speech.jsonl", jsonl([{"audio": "a.wav"}])), preset="speech")


@case("parquet-random-bytes", "data", LOAD, Refused(r"cannot read Parquet .*magic bytes", "junk.parquet"))
def _(ctx):
    return load_validate(ctx, ctx.write("junk.parquet", os.urandom(4096)))


@case("parquet-truncated", "data", LOAD, Refused(r"cannot read Parquet", "cut.parquet"))
def _(ctx):
    data = parquet_bytes({"prompt": [q["prompt"] for q in QA] * 50, "response": [q["response"] for q in QA] * 50},
                         ctx.dir / "tmp.parquet")
    return load_validate(ctx, ctx.write("cut.parquet", data[: len(data) // 2]))


@case("parquet-wrong-columns", "data", LOAD, Refused(r"cannot tell what the columns mean \(q, a\)", "cols.parquet"))
def _(ctx):
    return load_validate(ctx, ctx.write("cols.parquet", parquet_bytes({"q": ["x"], "a": ["y"]}, ctx.dir / "t.parquet")))


@case("parquet-list-in-text-column", "data", LOAD, Refused(r"expected text, got list", "typed.parquet", 2, "prompt"))
def _(ctx):
    data = parquet_bytes({"prompt": [["fine"], ["a", "list"]], "response": ["a", "b"]}, ctx.dir / "t.parquet")
    return load_validate(ctx, ctx.write("typed.parquet", data))


@case("unsupported-file-type", "data", LOAD, Refused(r"unsupported file type '\.docx'", "notes.docx"))
def _(ctx):
    return load_validate(ctx, ctx.write("notes.docx", b"PK\x03\x04" + os.urandom(200)))


# ---- empty files -------------------------------------------------------------------------------
for _suffix in ("jsonl", "csv", "tsv", "parquet", "json"):
    @case(f"empty-{_suffix}", "data", LOAD, Refused(r"empty file \(0 bytes\)", f"empty.{_suffix}"))
    def _(ctx, _suffix=_suffix):
        return load_validate(ctx, ctx.write(f"empty.{_suffix}", b""))


@case("csv-header-only", "data", LOAD, Refused(r"no data rows \(only a header\)", "header.csv"))
def _(ctx):
    return load_validate(ctx, ctx.write("header.csv", "prompt,response\n"))


@case("jsonl-blank-lines-only", "data", LOAD, Refused(r"no data rows \(only blank lines\)", "blank.jsonl"))
def _(ctx):
    return load_validate(ctx, ctx.write("blank.jsonl", "\n   \n\t\n"))


@case("parquet-zero-rows", "data", LOAD, Refused(r"no data rows", "zero.parquet"))
def _(ctx):
    return load_validate(ctx, ctx.write("zero.parquet", parquet_bytes({"prompt": [], "response": []}, ctx.dir / "t.parquet")))


@case("audio-folder-without-audio", "data", LOAD, Refused(r"no audio files found"))
def _(ctx):
    ctx.write("clips/notes.txt", "a transcript with no clip")
    return load_validate(ctx, f"{ctx.rel}/clips")


@case("dataset-json-malformed", "data", SPLIT, Refused(r"not valid JSON", "dataset.json", 1))
def _(ctx):
    ctx.write("ds/dataset.json", '{"name": "x", "kind": ')
    return open_split(ctx, f"{ctx.rel}/ds")


@case("dataset-missing-split", "data", SPLIT, Refused(r"no 'train' split \(has: test\)", field="split"))
def _(ctx):
    ctx.write("ds/dataset.json", json.dumps({"name": "x", "kind": "text"}))
    ctx.write("ds/test.jsonl", jsonl([{"id": "a", **QA[0]}]))
    return open_split(ctx, f"{ctx.rel}/ds")


@case("dataset-row-missing-field", "data", SPLIT, Refused(r"missing", "train.jsonl", 2, "response"))
def _(ctx):
    ctx.write("ds/dataset.json", json.dumps({"name": "x", "kind": "text"}))
    ctx.write("ds/train.jsonl", jsonl([{"id": "a", **QA[0]}, {"id": "b", "prompt": "only a prompt"}]))
    return open_split(ctx, f"{ctx.rel}/ds")


# ---- text encodings ----------------------------------------------------------------------------
LATIN1_QA = ("prompt,response\nWhat is x?,fine\nCaf\xe9 au lait spots?,Neurofibromatosis.\n").encode("latin-1")


@case("csv-latin1", "encoding", LOAD, Refused(
    r"not UTF-8 text: byte 0xe9 at byte offset 35 \(column 4\) is not valid UTF-8.*UTF-8 is expected", "latin1.csv", 3))
def _(ctx):
    return load_validate(ctx, ctx.write("latin1.csv", LATIN1_QA))


@case("jsonl-latin1", "encoding", LOAD, Refused(r"not UTF-8 text: byte 0xe9 at byte offset \d+ \(column 16\).*UTF-8 is expected",
                                                "latin1.jsonl", 3))
def _(ctx):
    data = jsonl(QA[:2]).encode() + '{"prompt": "Caf\xe9?", "response": "x"}\n'.encode("latin-1")
    return load_validate(ctx, ctx.write("latin1.jsonl", data))


@case("jsonl-utf16", "encoding", LOAD, Refused(r"UTF-16 text .*UTF-8 is expected", "utf16.jsonl", 1))
def _(ctx):
    return load_validate(ctx, ctx.write("utf16.jsonl", jsonl(QA).encode("utf-16")))


@case("transcript-latin1", "encoding", LOAD, Refused(r"not UTF-8 text: byte 0xe9", "clip.txt", 2, "text"))
def _(ctx):
    ctx.write("clips/clip.wav", audio_bytes(tone(0.5)))
    ctx.write("clips/clip.txt", "start metoprolol\ncaf\xe9 au lait spots\n".encode("latin-1"))
    return load_validate(ctx, f"{ctx.rel}/clips")


@case("dataset-split-latin1", "encoding", SPLIT, Refused(r"not UTF-8 text: byte 0xe9", "train.jsonl", 2))
def _(ctx):
    ctx.write("ds/dataset.json", json.dumps({"name": "x", "kind": "text"}))
    ctx.write("ds/train.jsonl", jsonl([{"id": "a", **QA[0]}]).encode() + b'{"id": "b", "prompt": "caf\xe9", "response": "x"}\n')
    return open_split(ctx, f"{ctx.rel}/ds")


@case("terms-latin1", "encoding", LOAD, Refused(r"not UTF-8 text: byte 0xe9", "terms.txt", 2))
def _(ctx):
    ctx.write("ds/dataset.json", json.dumps({"name": "x", "kind": "text", "terms_file": "terms.txt"}))
    ctx.write("ds/train.jsonl", jsonl([{"id": "a", **QA[0]}]))
    ctx.write("ds/terms.txt", "apixaban\ncaf\xe9 au lait\n".encode("latin-1"))
    return load_validate(ctx, f"{ctx.rel}/ds")


@case("recipe-yaml-latin1", "encoding", "load_config (`medtune train RECIPE.yaml`)",
      Refused(r"not UTF-8 text: byte 0xe9 at byte offset 29 \(line 3\)", "latin1.yaml"))
def _(ctx):
    return yaml_config(ctx, "latin1.yaml", "model:\n  name: x\n  dtype: caf\xe9\n".encode("latin-1"))


@case("synth-sentences-latin1", "encoding", "`medtune data synth SENTENCES`", Refused(r"s\.txt, line 2: not UTF-8 text: byte 0xe9"))
def _(ctx):
    rel = ctx.write("s.txt", "Start apixaban.\nCaf\xe9 au lait spots.\n".encode("latin-1"))
    return cli(ctx, "data", "synth", rel)


@case("jsonl-utf8-bom", "encoding", LOAD, Accepted(
    lambda rep, ctx: (assert_ok(rep), assert_prompts(rep, [QA[0]["prompt"], QA[1]["prompt"]])),
    "a UTF-8 byte-order mark (Windows Notepad) is dropped"))
def _(ctx):
    return load_validate(ctx, ctx.write("bom.jsonl", b"\xef\xbb\xbf" + jsonl(QA[:2]).encode()))


@case("jsonl-u2028-inside-a-string", "encoding", LOAD, Accepted(
    lambda rep, ctx: (assert_ok(rep), assert_prompts(rep, ["line\u2028separator and\x0cform feed", QA[1]["prompt"]]),
                      assert_lines(rep, [1, 2])),
    "U+2028 / form feed inside a JSON string are text, not line breaks"))
def _(ctx):
    rows = [{"prompt": "line\u2028separator and\x0cform feed", "response": "ok"}, QA[1]]
    return load_validate(ctx, ctx.write("u2028.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)))


def assert_ok(rep) -> None:
    assert not rep.errors, [str(i) for i in rep.errors]


def assert_prompts(rep, prompts: list[str]) -> None:
    assert [e["prompt"] for e in rep.examples_list] == prompts


def assert_lines(rep, lines: list[int]) -> None:
    assert [e["meta"]["source_line"] for e in rep.examples_list] == lines


# ---- gigantic rows (decision: refused per row, named; the rest of the file loads) -----------------
FIVE_MB = 5 * 1024 * 1024


def _rest_loaded_in_bounded_memory(rep, ctx) -> None:
    assert [e["prompt"] for e in rep.examples_list] == [QA[0]["prompt"]], "the rows after the giant one still load"
    assert rep.peak_bytes < 12 * FIVE_MB, f"peak {rep.peak_bytes / 2**20:.0f} MB reading a 5 MB row"
    assert all(len(json.dumps(e)) < 10_000 for e in rep.examples_list)
    assert all(len(i.message) < 500 for i in rep.issues), "the refused row's text is not echoed"


def measured(fn):
    tracemalloc.start()
    try:
        out = fn()
        out.peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return out


@case("jsonl-5MB-line", "size", LOAD,
      Refused(r"line is 5,242,9\d\d characters long; one example may hold at most 1,000,000", "giant.jsonl", 1),
      also=_rest_loaded_in_bounded_memory)
def _(ctx):
    rel = ctx.write("giant.jsonl", json.dumps({"prompt": "a" * FIVE_MB, "response": "b"}) + "\n" + json.dumps(QA[0]) + "\n")
    return measured(lambda: load_validate(ctx, rel))


@case("csv-5MB-field", "size", LOAD,
      Refused(r"a field is longer than 131,072 characters, the CSV limit", "giant.csv", 2),
      also=_rest_loaded_in_bounded_memory)
def _(ctx):
    rel = ctx.write("giant.csv", "prompt,response\n" + "a" * FIVE_MB + ",b\n" + f"{QA[0]['prompt']},{QA[0]['response']}\n")
    return measured(lambda: load_validate(ctx, rel))


@case("parquet-5MB-cell", "size", LOAD,
      Refused(r"5,242,88\d characters of text; one example may hold at most 1,000,000", "giant.parquet", 1, "prompt"))
def _(ctx):
    data = parquet_bytes({"prompt": ["a" * FIVE_MB, QA[0]["prompt"]], "response": ["b", QA[0]["response"]]},
                         ctx.dir / "t.parquet")
    return load_validate(ctx, ctx.write("giant.parquet", data))


# ---- audio (speech rows: a manifest naming clips, read through the same entry point) ----------------
def speech_manifest(ctx: Ctx, clips: dict[str, bytes | None], rows: list[dict] | None = None) -> str:
    for name, data in clips.items():
        if data is not None:
            ctx.write(name, data)
    rows = rows or [{"audio": name, "text": "start metoprolol twice daily"} for name in clips]
    return ctx.write("manifest.jsonl", jsonl(rows))


@case("junk-bytes-named-wav", "audio", LOAD,
      Refused(r"unreadable audio junk\.wav: .*cannot decode audio: its header is unreadable", "manifest.jsonl", 1, "audio"))
def _(ctx):
    return load_validate(ctx, speech_manifest(ctx, {"junk.wav": os.urandom(8192)}))


@case("riff-header-then-junk", "audio", LOAD,
      Refused(r"unreadable audio riff\.wav", "manifest.jsonl", 1, "audio"))
def _(ctx):
    return load_validate(ctx, speech_manifest(ctx, {"riff.wav": b"RIFF\x00\x00\x00\x00WAVEjunk" * 64}))


@case("truncated-flac", "audio", LOAD, Refused(r"unreadable audio: .*cut\.flac: cannot decode audio", "manifest.jsonl", 1, "audio"))
def _(ctx):
    data = audio_bytes(tone(2.0), fmt="FLAC")
    return load_validate(ctx, speech_manifest(ctx, {"cut.flac": data[: len(data) * 6 // 10]}))


@case("zero-byte-audio", "audio", LOAD, Refused(r"audio file is empty \(0 bytes\)", "manifest.jsonl", 1, "audio"))
def _(ctx):
    return load_validate(ctx, speech_manifest(ctx, {"empty.wav": b""}))


@case("zero-sample-wav", "audio", LOAD, Refused(r"audio nothing\.wav holds no samples \(0\.0 s\)", "manifest.jsonl", 1, "audio"))
def _(ctx):
    return load_validate(ctx, speech_manifest(ctx, {"nothing.wav": audio_bytes(np.zeros(0, np.float32))}))


@case("missing-clip", "audio", LOAD, Refused(r"audio file not found", "manifest.jsonl", 1, "audio"))
def _(ctx):
    return load_validate(ctx, speech_manifest(ctx, {"gone.wav": None}))


@case("ten-minute-clip", "audio", LOAD, Flagged(
    r"600\.0 s is longer than Whisper's 30 s window: training would see only the first 30 s", "manifest.jsonl", 1, "audio"),
    also=lambda rep, ctx: assert_long_clip_marked(rep))
def _(ctx):
    return load_validate(ctx, speech_manifest(ctx, {"dictation-10min.flac": audio_bytes(tone(600.0, amp=0.05), fmt="FLAC")}))


def assert_long_clip_marked(rep) -> None:
    (ex,) = rep.examples_list
    assert ex["meta"]["too_long_for_whisper"] is True and ex["duration"] == pytest.approx(600.0)


def _check_8k(rep, ctx) -> None:
    from engine.audio import load_audio

    assert_ok(rep)
    (ex,) = rep.examples_list
    assert ex["meta"]["sample_rate"] == 8000 and ex["duration"] == pytest.approx(1.5, abs=1e-3)
    assert any(i.code == "resampled" and "8000 Hz" in i.message and i.severity == "info" for i in rep.issues)
    x = load_audio(ex["audio"])
    assert x.dtype == np.float32 and x.ndim == 1 and x.size == pytest.approx(1.5 * SR, abs=2)
    (f0, _) = peak_hz(x)
    assert f0 == pytest.approx(440, abs=5), "the pitch survives resampling"
    assert amp_at(x, 440) == pytest.approx(0.3, rel=0.05), "the level survives resampling"


@case("8kHz-mono", "audio", LOAD, Accepted(_check_8k, "resampled to 16 kHz on load (pitch and level kept)"))
def _(ctx):
    return load_validate(ctx, speech_manifest(ctx, {"phone-8k.wav": audio_bytes(tone(1.5, sr=8000), sr=8000)}))


def _check_48k_stereo(rep, ctx) -> None:
    from engine.audio import load_audio

    assert_ok(rep)
    (ex,) = rep.examples_list
    assert ex["meta"]["sample_rate"] == 48000 and ex["meta"]["channels"] == 2
    assert any(i.code == "resampled" and "48000 Hz, 2 channel(s)" in i.message for i in rep.issues)
    x = load_audio(ex["audio"])
    assert x.ndim == 1 and x.size == pytest.approx(2.0 * SR, abs=2)
    assert sorted(round(f) for f in peak_hz(x)) == pytest.approx([440, 1000], abs=5), "both channels are in the mix"
    # downmix = mean of the channels: each 0.4-amplitude tone comes out at 0.2
    assert amp_at(x, 440) == pytest.approx(0.2, rel=0.05) and amp_at(x, 1000) == pytest.approx(0.2, rel=0.05)


@case("48kHz-stereo", "audio", LOAD, Accepted(_check_48k_stereo, "downmixed to mono and resampled to 16 kHz"))
def _(ctx):
    left, right = tone(2.0, sr=48000, freq=440, amp=0.4), tone(2.0, sr=48000, freq=1000, amp=0.4)
    return load_validate(ctx, speech_manifest(ctx, {"studio-48k.flac": audio_bytes(np.stack([left, right], 1), 48000, "FLAC")}))


LOAD_AUDIO = "engine.audio.load_audio (Playground Transcribe, `medtune transcribe`, validation, evaluation, training)"
FOUR_GB = (r"the WAV header declares 4,294,967,2\d\d bytes of audio, 37\.3 h \(134,218 s\), but the file holds only 0 "
           r"after the header: it is truncated or its header is corrupt")
OVER_HOUR = (r"the header declares 4\.0 h \(14,400 s\) of audio, over the 1\.0 h \(3,600 s\) limit \(MEDTUNE_MAX_AUDIO_S\), "
             r"so it is not decoded")


def measured_call(fn):
    """``fn()`` under tracemalloc; its result, or the MedtuneError it raised, carries
    ``peak_bytes`` and ``seconds`` for the ``also`` check."""
    tracemalloc.start()
    t0 = time.monotonic()
    holder = None
    try:
        holder = fn()
        return holder
    except MedtuneError as e:
        holder = e
        raise
    finally:
        if holder is not None:
            holder.peak_bytes, holder.seconds = tracemalloc.get_traced_memory()[1], time.monotonic() - t0
        tracemalloc.stop()


def not_decoded(outcome, ctx) -> None:
    """Refused from the header: no 2 GB of samples, no minutes of decoding."""
    assert outcome.peak_bytes < 32 * 2**20, f"peak {outcome.peak_bytes / 2**20:.0f} MB: the clip was decoded"
    assert outcome.seconds < 5, f"{outcome.seconds:.1f} s"


@case("wav-header-claims-4GB", "audio", LOAD, Refused(r"unreadable audio huge\.wav: .*" + FOUR_GB, "manifest.jsonl", 1, "audio"))
def _(ctx):
    return load_validate(ctx, speech_manifest(ctx, {"huge.wav": wav_claiming_4gb()}))


@case("wav-header-claims-4GB-load_audio", "audio", LOAD_AUDIO, Refused(r"huge\.wav: " + FOUR_GB, "huge.wav"))
def _(ctx):
    from engine.audio import load_audio

    return load_audio(ctx.ws.root / ctx.write("huge.wav", wav_claiming_4gb()))


@case("wav-data-size-past-the-end", "audio", LOAD, Refused(
    r"unreadable audio cut\.wav: .*declares 32,000 bytes of audio, 1\.0 s, but the file holds only 16,000 after the header",
    "manifest.jsonl", 1, "audio"))
def _(ctx):
    data = audio_bytes(tone(1.0))  # 16-bit mono: 32,000 bytes of samples
    return load_validate(ctx, speech_manifest(ctx, {"cut.wav": data[: len(data) - 16_000]}))


@case("flac-4h-of-silence", "audio", LOAD, Refused(r"silence-4h\.flac: " + OVER_HOUR, "manifest.jsonl", 1, "audio"),
      also=not_decoded)
def _(ctx):
    rel = speech_manifest(ctx, {"silence-4h.flac": silent_flac_4h()})
    return measured_call(lambda: load_validate(ctx, rel))


@case("flac-4h-of-silence-load_audio", "audio", LOAD_AUDIO, Refused(r"silence-4h\.flac: " + OVER_HOUR, "silence-4h.flac"),
      also=not_decoded)
def _(ctx):
    from engine.audio import load_audio

    path = ctx.ws.root / ctx.write("silence-4h.flac", silent_flac_4h())
    return measured_call(lambda: load_audio(path))


@case("audio-limit-lowered-by-env", "audio", LOAD + " with MEDTUNE_MAX_AUDIO_S=1", Refused(
    r"tone-2s\.wav: the header declares 2\.0 s of audio, over the 1\.0 s limit \(MEDTUNE_MAX_AUDIO_S\), so it is not decoded",
    "manifest.jsonl", 1, "audio"))
def _(ctx):
    rel = speech_manifest(ctx, {"tone-2s.wav": audio_bytes(tone(2.0))})
    with audio_limit("1"):
        return load_validate(ctx, rel)


for _limit in ("nan", "-5", "an hour"):
    @case(f"audio-limit-env-{_limit}", "audio", LOAD_AUDIO + f" with MEDTUNE_MAX_AUDIO_S={_limit}",
          Refused(rf"MEDTUNE_MAX_AUDIO_S: must be a positive number of seconds, got '{_limit}'", field="MEDTUNE_MAX_AUDIO_S"))
    def _(ctx, _limit=_limit):
        from engine.audio import load_audio

        path = ctx.ws.root / ctx.write("tone.wav", audio_bytes(tone(0.5)))
        with audio_limit(_limit):
            return load_audio(path)


# ---- path traversal: every field and upload that takes a path ------------------------------------
OUT = r"outside the workspace"
OUT_ROW = r"audio path '.*' is outside the workspace \(not read\)"


def _traversal(ctx: Ctx, kind: str, name: str = "secret.jsonl") -> str:
    """The ways to name a file outside the workspace."""
    if kind == "dotdot":
        return ctx.up_to_outside(name)
    if kind == "absolute":
        return str(ctx.outside / name)
    if kind == "symlink":
        link = ctx.dir / f"link-{name}"
        os.symlink(ctx.outside / name, link)
        return link.relative_to(ctx.ws.root).as_posix()
    if kind == "symlinked-folder":
        link = ctx.dir / "linked-folder"
        os.symlink(ctx.outside, link)
        return f"{link.relative_to(ctx.ws.root).as_posix()}/{name}"
    raise AssertionError(kind)


for _kind in ("dotdot", "absolute", "symlink", "symlinked-folder"):
    @case(f"data-path-{_kind}", "path", LOAD + ": the Data tab's path box", Refused(OUT))
    def _(ctx, _kind=_kind):
        return load_validate(ctx, _traversal(ctx, _kind))


for _ref in ("../../etc/passwd", "/etc/passwd", "~/.ssh/id_rsa", "uploads/../../outside/secret.jsonl"):
    @case(f"data-path-{_ref}", "path", LOAD + ": the Data tab's path box", Refused(OUT))
    def _(ctx, _ref=_ref):
        return load_validate(ctx, _ref)


@case("data-path-symlink-to-parquet", "path", LOAD + ": the Data tab's path box", Refused(OUT))
def _(ctx):
    return load_validate(ctx, _traversal(ctx, "symlink", "secret.parquet"))


@case("data-path-dataset-folder-dotdot", "path", LOAD, Refused(OUT))
def _(ctx):
    return load_validate(ctx, _traversal(ctx, "dotdot", "dataset"))


@case("data-path-NUL-byte", "path", LOAD, Refused(r"is not a valid path \(it contains a NUL character\)"))
def _(ctx):
    return load_validate(ctx, "uploads/x\x00/../../etc/passwd")


@case("data-path-5000-chars", "path", LOAD, Refused(r"is not a usable path \(File name too long\)"))
def _(ctx):
    return load_validate(ctx, "a" * 5000)


@case("hub-id-dotdot", "path", LOAD + ": the Data tab's hub box", Refused(r"'a/\.\.' does not look like a hub id", field="dataset"))
def _(ctx):
    return load_validate(ctx, "hub:a/..")


@case("hub-id-naming-a-local-folder", "path", LOAD + ": the Data tab's hub box",
      Refused(r"'engine/data' is a local folder here, not a hub id", field="dataset"))
def _(ctx):
    # datasets.load_dataset("owner/name") reads a local folder of that name relative to the
    # app's working directory: outside the workspace.
    with contextlib.chdir(Path(__file__).resolve().parent.parent):
        return load_validate(ctx, "hub:engine/data")


# rows whose audio column points out of the workspace: refused before the file is opened
for _kind in ("dotdot", "absolute", "symlink"):
    @case(f"manifest-audio-{_kind}", "path", LOAD + ": the audio column of a manifest",
          Refused(OUT_ROW, "manifest.jsonl", 1, "audio"))
    def _(ctx, _kind=_kind):
        ref = _traversal(ctx, _kind, "secret.wav")
        audio = os.path.relpath(ctx.ws.root / ref, ctx.dir) if _kind != "absolute" else ref
        return load_validate(ctx, ctx.write("manifest.jsonl", jsonl([{"audio": audio, "text": "x"}])))


@case("manifest-audio-etc-passwd", "path", LOAD + ": the audio column of a manifest",
      Refused(r"audio path '/etc/passwd' is outside the workspace", "manifest.jsonl", 1, "audio"))
def _(ctx):
    return load_validate(ctx, ctx.write("manifest.jsonl", jsonl([{"audio": "/etc/passwd", "text": "x"}])))


@case("nemo-manifest-audio_filepath-absolute", "path", LOAD + ": a NeMo manifest",
      Refused(OUT_ROW, "manifest.json", 1, "audio_filepath"))
def _(ctx):
    row = {"audio_filepath": str(ctx.outside / "secret.wav"), "duration": 1.234, "text": "x"}
    return load_validate(ctx, ctx.write("manifest.json", json.dumps(row) + "\n"))


@case("parquet-audio-struct-path-outside", "path", LOAD + ": a hub-layout Parquet audio column",
      Refused(OUT_ROW, "audio.parquet", 1, "audio"))
def _(ctx):
    data = parquet_bytes({"audio": [{"bytes": None, "path": str(ctx.outside / "secret.wav")}], "text": ["x"]},
                         ctx.dir / "t.parquet")
    return load_validate(ctx, ctx.write("audio.parquet", data))


@case("audio-folder-symlinked-clip", "path", LOAD + ": an audio folder",
      Refused(r"link\.wav links outside the workspace \(not read\)", "link.wav", field="audio"))
def _(ctx):
    ctx.write("clips/ok.wav", audio_bytes(tone(0.5)))
    ctx.write("clips/ok.txt", "continue metoprolol")
    os.symlink(ctx.outside / "secret.wav", ctx.dir / "clips" / "link.wav")
    ctx.write("clips/link.txt", "x")
    return load_validate(ctx, f"{ctx.rel}/clips")


@case("audio-folder-symlinked-transcript", "path", LOAD + ": an audio folder",
      Refused(r"clip\.txt links outside the workspace \(not read\)", "clip.txt", field="text"))
def _(ctx):
    ctx.write("clips/clip.wav", audio_bytes(tone(0.5)))
    os.symlink(ctx.outside / "secret.txt", ctx.dir / "clips" / "clip.txt")
    return load_validate(ctx, f"{ctx.rel}/clips")


# dataset folders (Train / Evaluate / Compare read them)
@case("dataset-ref-dotdot", "path", SPLIT + ": data.dataset, the Evaluate/Compare dataset box",
      Refused(r"no dataset '.*' \(.*outside the workspace", field="dataset"))
def _(ctx):
    return open_split(ctx, _traversal(ctx, "dotdot", "dataset"))


@case("dataset-ref-absolute", "path", SPLIT, Refused(r"no dataset '/.*' \(.*outside the workspace", field="dataset"))
def _(ctx):
    return open_split(ctx, str(ctx.outside / "dataset"))


@case("saved-dataset-name-is-a-symlink-out", "path", SPLIT + ": a saved dataset's name",
      Refused(r"no dataset 'corpus-linked' \(.*outside the workspace", field="dataset"))
def _(ctx):
    link = ctx.ws.datasets / "corpus-linked"
    with contextlib.suppress(FileExistsError):
        os.symlink(ctx.outside / "dataset", link)
    return open_split(ctx, "corpus-linked")


@case("saved-dataset-symlink-not-listed", "path", "list_datasets (Train/Data dropdowns, `medtune data list`)",
      Accepted(lambda names, ctx: (assert_not_in("corpus-linked2", names)), "a symlink out is neither listed nor read"))
def _(ctx):
    from engine.data.datasets import list_datasets

    with contextlib.suppress(FileExistsError):
        os.symlink(ctx.outside / "dataset", ctx.ws.datasets / "corpus-linked2")
    return [d["name"] for d in list_datasets(ctx.ws)]


def assert_not_in(x, xs) -> None:
    assert x not in xs, xs


@case("dataset-row-audio-outside", "path", SPLIT + ": a saved dataset's audio column",
      Refused(OUT_ROW, "train.jsonl", 1, "audio"))
def _(ctx):
    ctx.write("ds/dataset.json", json.dumps({"name": "x", "kind": "speech"}))
    ctx.write("ds/train.jsonl", jsonl([{"id": "a", "audio": os.path.relpath(ctx.outside / "secret.wav", ctx.dir / "ds"),
                                        "text": "x"}]))
    return open_split(ctx, f"{ctx.rel}/ds")


@case("dataset-terms_file-dotdot", "path", LOAD + ": dataset.json terms_file",
      Refused(r"terms_file '.*secret\.txt' must name a file inside the dataset folder", "dataset.json", field="terms_file"))
def _(ctx):
    ctx.write("ds/dataset.json", json.dumps({"name": "x", "kind": "text",
                                             "terms_file": os.path.relpath(ctx.outside / "secret.txt", ctx.dir / "ds")}))
    ctx.write("ds/train.jsonl", jsonl([{"id": "a", **QA[0]}]))
    return load_validate(ctx, f"{ctx.rel}/ds")


@case("split-name-dotdot", "path", SPLIT + ": data.*_split, the Evaluate/Compare split box",
      Refused(r"'\.\./.*secret' is not a split name", field="split"))
def _(ctx):
    ctx.write("ds/dataset.json", json.dumps({"name": "x", "kind": "text"}))
    ctx.write("ds/train.jsonl", jsonl([{"id": "a", **QA[0]}]))
    # <ds>/<split>.jsonl would be outside/secret.jsonl
    return open_split(ctx, f"{ctx.rel}/ds", os.path.relpath(ctx.outside / "secret", ctx.dir / "ds"))


for _field, _value in (("data.dataset", "DOTDOT"), ("data.dataset", "/etc"), ("data.train_split", "../../x"),
                       ("data.eval_split", "/etc/passwd"), ("data.test_split", "a/../../b")):
    @case(f"config-{_field}={_value}", "path", "preflight.check (Train tab, `medtune train`, jobs.launch)",
          Refused(rf"{re.escape(_field)}: .*(outside the workspace|is not a split name)", field=_field))
    def _(ctx, _field=_field, _value=_value):
        value = ctx.up_to_outside("dataset") if _value == "DOTDOT" else _value
        section, name = _field.split(".")
        return check_config(ctx, {section: {name: value}})


@case("run-name-traversal", "path", "create_run (Train tab's Run name, `medtune train --name`)", Accepted(
    lambda run, ctx: (assert_inside(run.path, ctx.ws.runs), assert_no_dots(run.id)),
    "the name is slugged: the run folder stays under runs/"))
def _(ctx):
    from engine.config import RunConfig
    from engine.runs import create_run

    return create_run(ctx.ws, RunConfig(), name="../../../outside/evil run\x00")


def assert_inside(p: Path, root: Path) -> None:
    assert p.resolve().parent == root.resolve(), p


def assert_no_dots(name: str) -> None:
    assert "/" not in name and name not in (".", "..") and "\x00" not in name, name


for _rid in ("../../outside/run", "/etc", "..", ".hidden"):
    @case(f"run-id-{_rid}", "path", "get_run (Export/Evaluate/Train run pickers, `medtune runs|export|eval`)",
          Refused(r"is not a run id"))
    def _(ctx, _rid=_rid):
        from engine.runs import get_run

        return get_run(ctx.ws, _rid)


@case("dataset-save-name-traversal", "path", "split_and_save (Data tab 'Save as', `medtune data split --name`)",
      Refused(r"'\.\./outside/x' is not a valid dataset name", field="name"))
def _(ctx):
    from engine.data.datasets import load_source, split_and_save

    res, _ = load_source(ctx.write("qa.jsonl", jsonl(QA)), ctx.ws)
    return split_and_save(res, ctx.ws, "../outside/x")


@case("upload-name-traversal", "path", "save_upload (the Data tab's Upload)", Accepted(
    lambda dest, ctx: (assert_inside(dest, ctx.ws.uploads), assert_no_dots(dest.name)),
    "the upload's name is sanitised: it lands in uploads/"))
def _(ctx):
    from engine.data.datasets import save_upload

    return save_upload(ctx.ws, ctx.ws.root / ctx.write("qa.jsonl", jsonl(QA)), name="../../../outside/evil.jsonl")


@case("reviewer-name-traversal", "path", "review.record (Evaluate tab's Reviewer name)",
      Refused(r"reviewer name must be", field="reviewer"))
def _(ctx):
    from engine.eval import review

    return review.blind_item(ctx.dir, "../../outside/x", {"id": "q1", "base": "a", "tuned": "b"})


# ---- split ratios (Issue #8 item 5: NaN passed every range check, then crashed the rounding) ----------
SAVE = "split_and_save (the Data tab's Split and save, `medtune data split`)"
for _ratios, _pat in (((float("nan"),) * 3,
                       r"split ratios nan,nan,nan: the train ratio is nan; each must be a finite number from 0 to 1"),
                      ((0.8, float("inf"), 0.1),
                       r"split ratios 0\.8,inf,0\.1: the validation ratio is inf; each must be a finite"),
                      ((1.2, 0.0, -0.2), r"split ratios 1\.2,0,-0\.2: the test ratio is -0\.2; each must be a finite"),
                      ((0.0, 0.0, 0.0), r"split ratios 0,0,0 sum to 0; they must sum to 1"),
                      ((0.8, 0.2), r"split ratios 0\.8,0\.2: expected 3 numbers \(train, validation, test\), got 2")):
    @case("split-ratios-" + ",".join(f"{r:g}" for r in _ratios), "data", SAVE, Refused(_pat, field="ratios"))
    def _(ctx, _ratios=_ratios):
        from engine.data.datasets import load_source, split_and_save

        res, _ = load_source(ctx.write("qa.jsonl", jsonl(QA)), ctx.ws)
        return split_and_save(res, ctx.ws, f"ratios-{uuid.uuid4().hex[:8]}", ratios=_ratios)


# ---- the CLI: every option that takes a path -----------------------------------------------------
for _argv, _pat in (
    (["data", "validate", "OUT:secret.jsonl"], OUT),
    (["data", "inspect", "QA", "--html", "OUT:report.html"], OUT),
    (["data", "inspect", "QA", "--html", "ASSETS:corpus-evil.html"], OUT),  # assets are read-only
    (["data", "scrub", "QA", "--out", "OUT:scrubbed.jsonl"], OUT),
    (["data", "split", "QA", "--name", "../evil"], r"is not a valid dataset name"),
    (["data", "split", "QA", "--name", "ok-name", "--terms", "OUT:secret.txt"], OUT),
    (["data", "synth", "OUT:sentences.txt"], OUT),
    (["data", "synth", "QA_TXT", "--out", "OUT:synth"], OUT),
    (["data", "scrub", "--eval", "--gold", "OUT:gold.jsonl"], OUT),
    (["export", "OUT:run"], OUT),
    (["export", "/etc"], OUT),
    (["eval", "report", "RUN", "--out", "OUT:report.html"], OUT),
    (["runs", "show", "../../etc"], r"is not a run id"),
    (["train", "RECIPE", "--set", "lora.r=0"], r"lora\.r: must be a positive integer"),
    (["train", "RECIPE", "--set", "train.bogus=1"], r"train\.bogus: unknown key"),
    (["train", "RECIPE", "--set", "nodot"], r"expected SECTION\.KEY=VALUE"),
    # Issue #8 item 5: values that crashed with a traceback
    (["data", "split", "QA", "--name", "nan", "--ratios", "nan,nan,nan"],
     r"field 'ratios': split ratios nan,nan,nan: the train ratio is nan"),
    (["data", "split", "QA", "--name", "ratios", "--ratios", "0.8,0.1"], r"split ratios 0\.8,0\.1: expected 3 numbers"),
    (["data", "split", "SURROGATE", "--name", "surrogate"],
     r"1 row\(s\) could not be read \(first: .*surrogate\.jsonl, line 3, field 'prompt': " + SURROGATE),
    (["data", "scrub", "SURROGATE", "--out", "HERE:scrubbed.jsonl"],
     r"1 row\(s\) could not be read \(first: .*surrogate\.jsonl, line 3, field 'prompt': " + SURROGATE),
    (["train", "RECIPE", "--set", "train.max_steps=!!python/object/apply:os.system ['touch PWNED']"],
     r"--set train\.max_steps=!!python/object/apply:os\.system .*: the tag '!!python/object/apply:os\.system' is not "
     r"allowed: only plain values"),
    (["train", "RECIPE", "--set", "lora.target_modules=" + "[" * 100_000 + "]" * 100_000],
     r"--set lora\.target_modules=\[\[\[.*\.\.\.: nested more than 32 levels deep"),
    (["train", "RECIPE", "--set", "lora.r=[8,"], r"--set lora\.r=\[8,: not valid YAML at line 1, column 4: .*expected the node content"),
    (["train", "DUP_RECIPE"], r"dup\.yaml:\n  - lora\.r: set twice, at line 2 and again at line 4"),
    (["transcribe", "whisper-tiny.en", "FLAC_4H"], r"silence-4h\.flac: " + OVER_HOUR),
):
    @case("cli-" + " ".join((a.split(":")[0] if ":" in a else a)[:60] for a in _argv), "cli", "the `medtune` CLI",
          Refused(_pat), also=lambda r, ctx: assert_cli_clean(r, ctx))
    def _(ctx, _argv=_argv):
        args = []
        for a in _argv:
            if a.startswith("OUT:"):
                a = ctx.up_to_outside(a[4:])
            elif a.startswith("ASSETS:"):
                a = str(ASSETS / a[7:])
            elif a == "QA":
                a = ctx.write("qa.jsonl", jsonl(QA))
            elif a == "QA_TXT":
                a = ctx.write("s.txt", "Start apixaban.\n")
            elif a == "RUN":
                a = ctx.run_id
            elif a == "RECIPE":
                a = str(ctx.ws.root / ctx.write("recipe.yaml", "data:\n  dataset: med-qa\ntrain:\n  max_steps: 1\n"))
            elif a == "DUP_RECIPE":
                a = str(ctx.ws.root / ctx.write("dup.yaml", "lora:\n  r: 8\n  alpha: 16\n  r: 64\n"))
            elif a == "SURROGATE":
                a = ctx.write("surrogate.jsonl", SURROGATE_QA)
            elif a == "FLAC_4H":
                a = str(ctx.ws.root / ctx.write("silence-4h.flac", silent_flac_4h()))
            elif a.startswith("HERE:"):
                a = f"{ctx.rel}/{a[5:]}"
            elif "PWNED" in a:
                a = a.replace("PWNED", str(ctx.outside / "pwned"))
            args.append(a)
        return cli(ctx, *args)


def assert_cli_clean(r: CliResult, ctx: Ctx) -> None:
    assert r.rc == 2, (r.rc, r.err[-2000:])
    assert "Traceback" not in r.err
    evil = ASSETS / "corpus-evil.html"
    if evil.exists():  # never leave it in the repository's assets, even when this row fails
        evil.unlink()
        raise AssertionError(f"{evil} was written: the shipped assets must be read-only")
    assert r.runs_after == r.runs_before, "a refused command created no run (and started no job)"


def tiny_tokenizer(folder: Path) -> str:
    """A character-level tokenizer saved under ``folder`` (synthetic: built at test time)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,?-"))
    tk = Tokenizer(models.WordLevel({c: i for i, c in enumerate(["[UNK]"] + chars)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]").save_pretrained(str(folder))
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))  # what makes a folder a model here
    return str(folder)


def assert_report_exit(r: CliResult, ctx: Ctx) -> None:
    assert r.rc == 1 and "Traceback" not in r.err, (r.rc, r.err[-2000:])
    assert "2 usable example(s) of 2 row(s); 1 error(s)" in r.out, r.out[-2000:]


@case("cli-data validate SURROGATE --tokenizer", "cli", "`medtune data validate --tokenizer`",
      Refused(r"\[error\] .*surrogate\.jsonl, line 3, field 'prompt': " + SURROGATE), also=assert_report_exit)
def _(ctx):
    return cli(ctx, "data", "validate", ctx.write("surrogate.jsonl", SURROGATE_QA), "--tokenizer", tiny_tokenizer(ctx.dir / "tok"))


# ---- UI handlers that take a path ------------------------------------------------------------------
@case("train-form-model-path-outside", "ui", "ui.tabs.train.config_from_form (Train tab model box)", Refused(OUT))
def _(ctx):
    from engine.config import iter_fields
    from ui.context import AppContext
    from ui.tabs.train import config_from_form

    values = [ctx.up_to_outside("model") if (s, n) == ("model", "name") else v for s, n, _, v, _ in iter_fields()]
    return config_from_form(AppContext(workspace=ctx.ws), values)


for _model in ("/etc", "MODEL_OUT", "~"):
    @case(f"playground-model-path-{_model}", "ui", "ui.tabs.playground.resolve_user_model (Playground/Compare model box)",
          Refused(OUT))
    def _(ctx, _model=_model):
        from ui.context import AppContext
        from ui.tabs.playground import resolve_user_model

        return resolve_user_model(AppContext(workspace=ctx.ws), ctx.up_to_outside("model") if _model == "MODEL_OUT" else _model)


# ---- invalid hyperparameters: every RunConfig range, choice and type, from the field metadata ---------
def _config_cases() -> None:
    from engine.config import iter_fields

    entry = "preflight.check (Train tab, `medtune train`, jobs.launch)"
    type_word = {bool: "true/false", int: "an integer", float: "a number"}
    for section, name, typ, _default, meta in iter_fields():
        key = f"{section}.{name}"
        bad: list[tuple[str, Any, str]] = []
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None:
            below = lo if meta.get("exclusive_min") else (lo - 1 if typ is int else lo - 0.25)
            bad.append(("below-min", below, r"must be (positive|a positive integer|at least|greater than)"))
        if hi is not None:
            above = hi if meta.get("exclusive_max") else (hi + 1 if typ is int else hi * 2 + 1)
            bad.append(("above-max", above, r"must be (less than|at most)"))
        if typ is float:
            bad.append(("nan", float("nan"), r"must be a finite number, got nan"))
            if hi is None:
                bad.append(("inf", float("inf"), r"must be a finite number, got inf"))
        if "choices" in meta:
            bad.append(("bad-choice", "no-such-choice", r"must be one of .*got 'no-such-choice'"))
        if typ in type_word:
            bad.append(("wrong-type", "lots", rf"expected {type_word[typ]}, got 'lots'"))
        for label, value, pattern in bad:
            CASES.append(Case(f"hyperparameter-{key}-{label}", "config", entry,
                              lambda ctx, s=section, n=name, v=value: check_config(ctx, {s: {n: v}}),
                              Refused(rf"^{re.escape(key)}: {pattern}", field=key)))


_config_cases()


# ---- recipe YAML ---------------------------------------------------------------------------------
YAML = "load_config (`medtune train RECIPE.yaml`, a run's config.yaml)"


@case("yaml-unknown-key", "yaml", YAML, Refused(r"lora\.rank: unknown key \(known: .*\br\b", "unknown.yaml", field="lora.rank"))
def _(ctx):
    return yaml_config(ctx, "unknown.yaml", "lora:\n  rank: 8\n  alpha: 16\n")


@case("yaml-unknown-section", "yaml", YAML, Refused(r"optimizer: unknown section \(expected one of model, data",
                                                    "unknown.yaml", field="optimizer"))
def _(ctx):
    return yaml_config(ctx, "unknown.yaml", "optimizer:\n  name: adamw\n")


@case("yaml-syntax-error", "yaml", YAML, Refused(r"not valid YAML at line 5, column 2: .*expected <block end>", "syntax.yaml"))
def _(ctx):
    return yaml_config(ctx, "syntax.yaml", "model:\n  name: x\ntrain:\n  lr: 1\n bad: 2\n")


@case("yaml-tab-indent", "yaml", YAML, Refused(r"not valid YAML at line 2, column 1: .*'\\t'", "tab.yaml"))
def _(ctx):
    return yaml_config(ctx, "tab.yaml", "lora:\n\tr: 8\n")


@case("yaml-unclosed-bracket", "yaml", YAML, Refused(r"not valid YAML at line \d+", "bracket.yaml"))
def _(ctx):
    return yaml_config(ctx, "bracket.yaml", "lora:\n  target_modules: [q_proj, v_proj\n  r: 8\n")


@case("yaml-top-level-list", "yaml", YAML, Refused(r"top level: expected a mapping", "list.yaml"))
def _(ctx):
    return yaml_config(ctx, "list.yaml", "- model\n- data\n")


@case("yaml-section-not-a-mapping", "yaml", YAML, Refused(r"lora: expected a mapping, got 'sixteen'", "sec.yaml", field="lora"))
def _(ctx):
    return yaml_config(ctx, "sec.yaml", "lora: sixteen\n")


@case("yaml-empty-file", "yaml", YAML, Refused(r"the file holds no settings \(it is empty or only comments\)", "empty.yaml"))
def _(ctx):
    return yaml_config(ctx, "empty.yaml", "# nothing here\n")


@case("yaml-python-tag", "yaml", YAML, Refused(r"line 1, column 8: the tag '!!python/object/apply:os\.system' is not allowed: "
                                               r"only plain values \(text, numbers, true/false, lists, mappings\) are read, "
                                               r"no objects are built", "pwn.yaml"))
def _(ctx):
    # safe_load: no object is built, no command runs (the outside folder must gain no file)
    return yaml_config(ctx, "pwn.yaml", f"model: !!python/object/apply:os.system ['touch {ctx.outside}/pwned']\n")


# Issue #8 item 5: nesting that crashed PyYAML's recursive composer, and keys YAML keeps last-wins
@case("yaml-nested-100k-deep", "yaml", YAML, Refused(r"^line 2, column 49: nested more than 32 levels deep", "deep.yaml"))
def _(ctx):
    return yaml_config(ctx, "deep.yaml", "lora:\n  target_modules: " + "[" * 100_000 + "]" * 100_000 + "\n")


@case("yaml-indented-1000-deep", "yaml", YAML, Refused(r"^line 32, column 63: nested more than 32 levels deep", "indent.yaml"))
def _(ctx):
    return yaml_config(ctx, "indent.yaml", "".join(f"{'  ' * i}k{i}:\n" for i in range(1000)) + "  " * 1000 + "x\n")


@case("yaml-duplicate-key", "yaml", YAML, Refused(
    r"lora\.r: set twice, at line 2 and again at line 4 \(YAML would silently keep the last one\); keep one", "dup.yaml",
    field="lora.r"))
def _(ctx):
    return yaml_config(ctx, "dup.yaml", "lora:\n  r: 8\n  alpha: 16\n  r: 64\n")


@case("yaml-duplicate-section", "yaml", YAML, Refused(r"^lora: set twice, at line 1 and again at line 5", "dup.yaml", field="lora"))
def _(ctx):
    return yaml_config(ctx, "dup.yaml", "lora:\n  r: 8\ntrain:\n  max_steps: 5\nlora:\n  alpha: 16\n")


@case("yaml-duplicate-key-spelled-differently", "yaml", YAML,
      Refused(r"lora\.use_dora: set twice, at line 2 and again at line 3", "dup.yaml", field="lora.use_dora"))
def _(ctx):
    # "use_dora" and a quoted "use_dora" are one key once read
    return yaml_config(ctx, "dup.yaml", "lora:\n  use_dora: true\n  'use_dora': false\n")


@case("yaml-merge-key-override", "yaml", YAML, Accepted(
    lambda cfg, ctx: (assert_eq(cfg.lora.r, 4), assert_eq(cfg.lora.alpha, 16.0)),
    "a << merge key's values may be overridden: that is what it is for, not a duplicate"))
def _(ctx):
    return yaml_config(ctx, "merge.yaml", "lora:\n  <<: {r: 8, alpha: 16}\n  r: 4\n")


def assert_eq(a, b) -> None:
    assert a == b, (a, b)


@case("yaml-alias-bomb", "yaml", YAML, Refused(r"lora\.target_modules: expected a string, got \[\[", "bomb.yaml",
                                               field="lora.target_modules"))
def _(ctx):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdef", "bcdefg")]
    t0 = time.monotonic()
    try:
        yaml_config(ctx, "bomb.yaml", "\n".join(levels) + "\nlora:\n  target_modules: *g\n")
    except ConfigError as e:
        assert len(str(e)) < 2000, f"a {len(str(e)):,}-character message for a 9^7-element alias bomb"
        assert time.monotonic() - t0 < 5
        raise
    raise AssertionError("accepted")


@case("yaml-is-a-folder", "yaml", YAML, Refused(r"cannot read the file \(Is a directory\)"))
def _(ctx):
    from engine.preflight import load_config

    return load_config(ctx.dir)


@case("yaml-missing", "yaml", YAML, Refused(r"file not found"))
def _(ctx):
    from engine.preflight import load_config

    return load_config(ctx.dir / "nope.yaml")


# =============================================================================================
# The test: one row at a time
# =============================================================================================
@pytest.fixture(scope="module")
def corpus_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    ws = Workspace.open(root / "ws")
    outside = Outside(root / "outside")
    WATCH.roots = (str(outside.root.resolve()),)
    from engine.config import RunConfig
    from engine.runs import create_run

    run = create_run(ws, RunConfig(), name="corpus")
    yield ws, outside, run.id
    WATCH.active = False


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input(c: Case, corpus_env):
    ws, outside, run_id = corpus_env
    folder = ws.uploads / "corpus" / re.sub(r"[^A-Za-z0-9._-]+", "_", c.id)
    folder.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(ws, outside.root, folder, run_id)
    outside.reset_atimes()
    before = outside.snapshot()
    WATCH.hits.clear()
    outcome, err = None, None
    WATCH.active = True
    try:
        outcome = c.run(ctx)
    except MedtuneError as e:
        err = e
    except Exception as e:  # noqa: BLE001 - a crash is exactly what this corpus hunts
        WATCH.active = False
        TALLY[c.id] = {"area": c.area, "entry": c.entry, "result": "crash", "detail": repr(e)[:300]}
        raise AssertionError(f"CRASH: {type(e).__name__} instead of a MedtuneError for {c.id}") from e
    finally:
        WATCH.active = False
    found = findings(outcome, err)
    text = outcome_text(outcome, err)
    try:
        # 1. the expected clear message (or the accepted result)
        if isinstance(c.expect, Accepted):
            assert err is None, f"{c.id}: expected to be accepted ({c.expect.why}), got: {err}"
            c.expect.check(outcome, ctx)
            result = "accepted"
        else:
            hit = [f for f in found if matches(f, c.expect)]
            assert hit, (f"{c.id}: expected {c.expect}\n got: " + "\n      ".join(
                f"[{f.severity}] file={f.file} line={f.line} field={f.field}: {f.text[:300]}" for f in found)
                + ("" if found else f"nothing (accepted silently: {text[:300]})"))
            assert "Traceback" not in hit[0].text
            result = "flagged" if c.expect.severity == "warning" else "refused"
        if c.also is not None:
            c.also(err if err is not None else outcome, ctx)
        # 2. nothing outside the workspace was read or written, nor echoed back
        assert not WATCH.hits, f"{c.id}: read/touched outside the workspace: {WATCH.hits[:5]}"
        problems = guard_problems(before, outside.snapshot(), outside)
        assert not problems, f"{c.id}: {problems}"
        assert SENTINEL not in text, f"{c.id}: the content of a file outside the workspace came back"
    except AssertionError as e:
        TALLY[c.id] = {"area": c.area, "entry": c.entry, "result": "failed", "detail": str(e)[:300]}
        raise
    TALLY[c.id] = {"area": c.area, "entry": c.entry, "result": result,
                   "message": (hit[0].text.split("\n")[0][:200] if result != "accepted" else c.expect.why)}


def test_guard_notices_reads_and_writes(tmp_path):
    """The confinement checks themselves can fail: a Python read, a C read (libsndfile) and
    a write outside are each noticed."""
    outside = Outside(tmp_path / "outside")
    WATCH.roots, saved = (str(outside.root.resolve()),), WATCH.roots
    try:
        WATCH.hits.clear()
        WATCH.active = True
        (outside.root / "secret.txt").read_text()
        WATCH.active = False
        assert WATCH.hits and WATCH.hits[0][0] == "open"
        if outside.atime_works:
            before = outside.snapshot()
            sf.info(str(outside.root / "secret.wav"))
            sf.read(str(outside.root / "secret.wav"))
            assert "outside/secret.wav was read (its access time changed)" in guard_problems(
                before, outside.snapshot(), outside)
        before = outside.snapshot()
        (outside.root / "new.txt").write_text("x")
        assert guard_problems(before, outside.snapshot(), outside) == ["outside/new.txt was created"]
    finally:
        WATCH.active, WATCH.roots = False, saved
        WATCH.hits.clear()


def test_corpus_left_no_trace(corpus_env):
    """After the whole table: the outside files are byte-identical, and no workspace file
    (datasets, uploads, runs, caches) holds their secret text."""
    ws, outside, _ = corpus_env
    for p, digest in outside.hashes.items():
        assert hashlib.sha1(p.read_bytes()).hexdigest() == digest, p
    assert not (outside.root / "pwned").exists()
    for p in ws.root.rglob("*"):
        if p.is_file() and ws.contains(p):  # the rows' symlinks out are not followed here either
            assert SENTINEL.encode() not in p.read_bytes(), f"{p} holds text from outside the workspace"


# =============================================================================================
# The REAL app keeps serving: a subset of the corpus over HTTP
# =============================================================================================
@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from appserver import running_app

    root = tmp_path_factory.mktemp("corpus-http")
    outside = Outside(root / "outside")
    with running_app(root / "ws", log_name="app-server-bad-input.log") as srv:
        yield srv, outside


def _upload(srv, name: str, data: bytes) -> str:
    import httpx

    r = httpx.post(srv.url + "gradio_api/upload", files={"files": (name, data)}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    (path,) = r.json()
    return path


def _call(srv, api: str, data: list) -> tuple[str, str]:
    """POST /gradio_api/call/<api>, then read its event stream: (event, data)."""
    import httpx

    r = httpx.post(f"{srv.url}gradio_api/call/{api}", json={"data": data}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    stream = httpx.get(f"{srv.url}gradio_api/call/{api}/{r.json()['event_id']}", timeout=120).text
    events = re.findall(r"^event: (\w+)\ndata: (.*)$", stream, re.M)
    assert events, stream[:500]
    return events[-1]


def _file(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


DATA_LOAD = "on_load_1"  # the Data tab's Load button (Source, Dataset, Upload, Path, Hub id, Hub split, Preset)


def test_app_keeps_serving(app):
    """Bad files and paths pushed through the running app: each answered with a clear message
    in the page (never 'Unexpected error'), nothing outside the workspace read or written or
    served, and the page still answers 200 afterwards."""
    import httpx

    srv, outside = app
    ws_root = srv.workspace.root
    before = outside.snapshot()
    up_out = os.path.relpath(outside.root, ws_root)
    junk, empty = _upload(srv, "junk.wav", os.urandom(4096)), _upload(srv, "empty.wav", b"")
    flac = audio_bytes(tone(2.0), fmt="FLAC")
    cut = _upload(srv, "cut.flac", flac[: len(flac) * 6 // 10])
    latin = _upload(srv, "latin1.csv", LATIN1_QA)
    header = _upload(srv, "header.csv", b"prompt,response\n")
    evil = _upload(srv, "../../../../outside-evil.txt", b"x")
    huge, silent = _upload(srv, "huge.wav", wav_claiming_4gb()), _upload(srv, "silence-4h.flac", silent_flac_4h())
    speech = ["whisper-tiny.en", "none", "auto"]

    rows: list[tuple[str, Callable[[], tuple[str, str]], str]] = [
        ("upload junk.wav, clip check", lambda: _call(srv, "on_audio", [_file(junk)]), r"cannot decode audio: its header is unreadable"),
        ("upload 0-byte wav, clip check", lambda: _call(srv, "on_audio", [_file(empty)]), r"empty \(0 bytes\)"),
        ("upload truncated FLAC, transcribe", lambda: _call(srv, "on_transcribe", speech + [_file(cut), ""]),
         r"cannot decode audio"),
        # Issue #8 item 4(b)/5: refused from the header, before any decoding or the model lock
        ("upload WAV claiming 4 GB, clip check", lambda: _call(srv, "on_audio", [_file(huge)]), FOUR_GB),
        ("upload 4 h silent FLAC, clip check", lambda: _call(srv, "on_audio", [_file(silent)]), OVER_HOUR),
        ("upload 4 h silent FLAC, transcribe", lambda: _call(srv, "on_transcribe", speech + [_file(silent), ""]), OVER_HOUR),
        ("upload Latin-1 CSV, Data Load", lambda: _call(srv, DATA_LOAD, ["Upload", "med-qa", _file(latin), "", "", "train", "auto"]),
         r"line 3: not UTF-8 text: byte 0xe9"),
        ("upload header-only CSV, Data Load", lambda: _call(srv, DATA_LOAD, ["Upload", "med-qa", _file(header), "", "", "train", "auto"]),
         r"no data rows \(only a header\)"),
        ("Data path ../outside", lambda: _call(srv, DATA_LOAD, ["Workspace path", "med-qa", None, f"{up_out}/secret.jsonl", "", "train",
                                                                 "auto"]), OUT),
        ("Data path /etc/passwd", lambda: _call(srv, DATA_LOAD, ["Workspace path", "med-qa", None, "/etc/passwd", "", "train", "auto"]),
         OUT),
        ("Data hub a/..", lambda: _call(srv, DATA_LOAD, ["Hugging Face hub", "med-qa", None, "", "a/..", "train", "auto"]),
         r"does not look like a hub id"),
        ("Playground path ../outside", lambda: _call(srv, "on_transcribe", speech + [None, f"{up_out}/secret.wav"]), OUT),
        ("Compare dataset ../outside", lambda: _call(srv, "_use_row", [f"{up_out}/dataset", "train", 0]), OUT),
        ("Compare split traversal (a dropdown)", lambda: _call(srv, "_use_row", [f"{up_out}/dataset", "../../secret", 0]),
         r"is not in the list of choices"),
        ("forged upload outside (Data)", lambda: _call(srv, DATA_LOAD, ["Upload", "med-qa", _file(str(outside.root / "secret.jsonl")),
                                                                         "", "", "train", "auto"]), r"not uploaded by a user"),
        ("forged upload /etc/passwd (clip)", lambda: _call(srv, "on_audio", [_file("/etc/passwd")]), r"not uploaded by a user"),
    ]
    tried = refused = 0
    for label, call, pattern in rows:
        event, payload = call()
        tried += 1
        assert re.search(pattern, payload), f"{label}: {event} {payload[:400]}"
        assert "Unexpected error" not in payload and "Traceback" not in payload, f"{label}: {payload[:400]}"
        assert SENTINEL not in payload, label
        refused += 1
    # the upload named ../../outside-evil.txt stayed in the workspace
    assert Path(evil).resolve().is_relative_to(ws_root) and not (ws_root.parent / "outside-evil.txt").exists()
    tried, refused = tried + 1, refused + 1

    # the file route: nothing outside the workspace is served, however it is spelled
    link = ws_root / "uploads" / "link-out.txt"
    os.symlink(outside.root / "secret.txt", link)
    for spelled in (str(outside.root / "secret.txt"), f"{ws_root}/../outside/secret.txt",
                    f"{ws_root}/uploads/%2e%2e/%2e%2e/outside/secret.txt", str(link), "/etc/passwd",
                    f"{ws_root}/uploads/..%2f..%2foutside%2fsecret.txt"):
        r = httpx.get(f"{srv.url}gradio_api/file={spelled}", timeout=30)
        tried += 1
        assert r.status_code in (403, 404), (spelled, r.status_code, r.text[:200])
        assert SENTINEL not in r.text and "root:" not in r.text, spelled
        refused += 1

    # ...and the app keeps serving
    assert httpx.get(srv.url, timeout=30).status_code == 200
    assert httpx.get(srv.url + "config", timeout=30).status_code == 200
    log = srv.log()
    assert "unexpected error in a UI handler" not in log, log[-3000:]
    # Gradio logs its own refusals (forged file paths, a value not among a dropdown's choices)
    # with a traceback; none may pass through the workbench's code.
    repo = str(Path(__file__).resolve().parent.parent)
    for tb in log.split("Traceback (most recent call last)")[1:]:
        frames = re.findall(r'File "([^"]+)"', tb[:6000])
        assert frames and not [f for f in frames if f.startswith(repo) and "/.venv/" not in f], tb[:3000]
        assert "gradio.exceptions." in tb[:6000], tb[:3000]
    assert not guard_problems(before, outside.snapshot(), outside)
    for p, digest in outside.hashes.items():
        assert hashlib.sha1(p.read_bytes()).hexdigest() == digest, p
    TALLY["http"] = {"area": "http", "entry": "the running app over HTTP", "result": "refused",
                     "tried": tried, "refused": refused}


# =============================================================================================
# The figures
# =============================================================================================
def test_tally(artifacts_dir):
    """Counts for the closing note: tried / refused cleanly / flagged / accepted by design."""
    rows = [v for k, v in TALLY.items() if k != "http"]
    if len(rows) < len(CASES):
        pytest.skip(f"only {len(rows)} of {len(CASES)} rows ran (a -k selection); no tally")
    counts = {k: sum(1 for v in rows if v["result"] == k) for k in ("refused", "flagged", "accepted", "failed", "crash")}
    by_area: dict[str, int] = {}
    for v in rows:
        by_area[v["area"]] = by_area.get(v["area"], 0) + 1
    http = TALLY.get("http", {})
    summary = {"tried": len(rows), **counts, "by_area": by_area,
               "http_tried": http.get("tried", 0), "http_refused": http.get("refused", 0), "rows": TALLY}
    (artifacts_dir / "bad-input-corpus.json").write_text(json.dumps(summary, indent=2))
    print(f"\nbad inputs tried {len(rows)}: refused cleanly {counts['refused']}, flagged {counts['flagged']}, "
          f"accepted by design {counts['accepted']}, failed {counts['failed'] + counts['crash']}; "
          f"over HTTP: {http.get('refused', 0)}/{http.get('tried', 0)} refused; by area {by_area}")
    assert counts["failed"] == counts["crash"] == 0
    assert counts["refused"] + counts["flagged"] + counts["accepted"] == len(CASES)
