"""Readers: JSONL, CSV, Parquet, NeMo manifests, a folder of audio + .txt transcripts, and
Hugging Face hub ids, all normalised through a :mod:`engine.data.presets` mapping; and term lists.

A reader never raises for a bad row: the row becomes an :class:`Issue` naming the file,
line/row and field. A whole-file problem (unreadable file, a required column missing from
the header) raises :class:`DataError`, because no row of it could be right.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path

from engine.audio import WHISPER_MAX_SECONDS, audio_info, check_duration
from engine.data.presets import AUDIO_COLS, Preset, RowContext, RowProblem, detect_preset, get_preset, preset_for_hub_id
from engine.data.schema import SPEECH, Issue, LoadResult, surrogate_issue
from engine.errors import DataError, MissingDependency
from engine.progress import Progress, report
from engine.workspace import inside_any

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
TABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")

#: Most characters of text one example (one line/row) may hold. Far above the longest
#: ``train.max_length`` (131072 tokens); a longer row is a broken export or a whole document
#: pasted into one cell, and is refused (named) instead of being carried through memory.
MAX_ROW_CHARS = 1_000_000

SAVE_AS_UTF8 = ("Save the file as UTF-8 (Excel: 'CSV UTF-8'; text editors: 'Save with encoding UTF-8'). "
                "Latin-1 / Windows-1252 exports are the usual cause.")

#: (line or row number, row dict); numbering is 1-based like an editor's line numbers.
Rows = list[tuple[int, dict]]


def utf8_error(data: bytes, err: UnicodeDecodeError, name: str) -> DataError:
    """A DataError naming the line, column and byte offset of the first byte that is not UTF-8."""
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return DataError("the file is UTF-16 text (it starts with a UTF-16 byte-order mark); UTF-8 is expected",
                         file=name, line=1, hint=SAVE_AS_UTF8)
    start = err.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)
    line = data.count(b"\n", 0, start) + 1
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    return DataError(f"not UTF-8 text: byte 0x{data[start]:02x} at byte offset {start} (column {column}) "
                     f"is not valid UTF-8 ({err.reason}); UTF-8 is expected",
                     file=name, line=line, hint=SAVE_AS_UTF8)


def read_text_utf8(path: Path) -> str:
    """The whole text of ``path`` decoded as UTF-8 (a UTF-8 byte-order mark is dropped).

    Anything else raises :class:`DataError` naming the line and byte of the first bad byte."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read file ({e.strerror or e})", file=name) from e
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise utf8_error(data, e, name) from None


def split_lines(text: str) -> list[str]:
    """Lines split on \\n (and \\r\\n) only: unlike ``str.splitlines`` a U+2028 or form feed inside
    a JSON string does not cut a record in two, so line numbers match an editor's."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def parse_json_line(raw: str) -> tuple[object, str | None]:
    """(value, None) or (None, why-not) for one JSONL line; never raises."""
    if len(raw) > MAX_ROW_CHARS:
        return None, (f"line is {len(raw):,} characters long; one example may hold at most "
                      f"{MAX_ROW_CHARS:,} (split the text or drop the row)")
    try:
        return json.loads(raw), None
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg} at column {e.colno})"
    except RecursionError:
        return None, "not usable JSON (nested too deeply)"


def read_jsonl_rows(path: Path) -> tuple[Rows, list[Issue], list[str]]:
    """Rows of a JSON Lines file (or a JSON array file). Bad lines become issues."""
    rows: Rows = []
    issues: list[Issue] = []
    name = str(path)
    text = read_text_utf8(path)
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg})", file=name, line=e.lineno) from e
        except RecursionError:
            raise DataError("not usable JSON (nested too deeply)", file=name) from None
        lines = [(i + 1, item) for i, item in enumerate(data)]
    else:
        lines = []
        for lineno, raw in enumerate(split_lines(text), start=1):
            if not raw.strip():
                issues.append(Issue("empty line", name, lineno, severity="warning", code="empty"))
                continue
            value, problem = parse_json_line(raw)
            if problem is None:
                lines.append((lineno, value))
            else:
                issues.append(Issue(problem, name, lineno,
                                    code="too_large" if len(raw) > MAX_ROW_CHARS else "malformed"))
    columns: list[str] = []
    for lineno, obj in lines:
        if not isinstance(obj, dict):
            issues.append(Issue(f"expected a JSON object, got {type(obj).__name__}", name, lineno,
                                code="malformed"))
            continue
        bad_text = surrogate_issue(obj, name, lineno)
        if bad_text is not None:
            issues.append(bad_text)
            continue
        for k in obj:
            if k not in columns:
                columns.append(k)
        rows.append((lineno, obj))
    return rows, issues, columns


def read_csv_rows(path: Path) -> tuple[Rows, list[Issue], list[str]]:
    """Rows of a CSV/TSV file; the line number is where the row starts in the file."""
    name = str(path)
    rows: Rows = []
    issues: list[Issue] = []
    # Decoded whole first: a file object decodes in 8 KB chunks, so a bad byte on line 900
    # would surface while reading the header, with no usable line number.
    with io.StringIO(read_text_utf8(path), newline="") as f:
        reader = csv.reader(f, delimiter="\t" if path.suffix == ".tsv" else ",")
        try:
            header = next(reader)
        except StopIteration:
            raise DataError("empty file (no header row)", file=name) from None
        except csv.Error as e:
            raise DataError(f"cannot parse header ({_csv_problem(e)})", file=name, line=1) from e
        header = [h.strip() for h in header]
        start = reader.line_num + 1
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                issues.append(Issue(f"cannot parse row ({_csv_problem(e)})", name, start,
                                    code="too_large" if "field limit" in str(e) else "malformed"))
                start = reader.line_num + 1
                continue
            lineno, start = start, reader.line_num + 1
            if not any(v.strip() for v in values):
                issues.append(Issue("empty row", name, lineno, severity="warning", code="empty"))
                continue
            if len(values) != len(header):
                why = f"has {len(values)} fields, header has {len(header)}"
                if reader.line_num > lineno and any("\n" in v for v in values):
                    why += f" (a quoted field runs on from here to line {reader.line_num}: an unclosed quote?)"
                issues.append(Issue(why, name, lineno, code="malformed"))
                continue
            rows.append((lineno, dict(zip(header, values))))
    return rows, issues, header


def _csv_problem(err: csv.Error) -> str:
    if "field limit" in str(err):
        return (f"a field is longer than {csv.field_size_limit():,} characters, the CSV limit; "
                "put long text in JSONL or Parquet")
    return str(err)


def read_parquet_rows(path: Path) -> tuple[Rows, list[Issue], list[str]]:
    """Rows of a Parquet file, numbered from 1 (``line`` means row here)."""
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415 - only Parquet files need it; the CLI imports this module
    except ImportError as e:  # pragma: no cover - pyarrow comes with datasets
        raise MissingDependency("pyarrow", "Reading Parquet") from e
    try:
        table = pq.read_table(path)
    except Exception as e:
        raise DataError(f"cannot read Parquet ({e})", file=str(path)) from e
    return [(i + 1, r) for i, r in enumerate(table.to_pylist())], [], list(table.column_names)


def normalise_rows(rows: Iterable[tuple[int, dict]], preset: Preset, *, file: str, base_dir: Path,
                   audio_cache: Path | None = None, columns: list[str] | None = None,
                   issues: list[Issue] | None = None, check_audio: bool = True,
                   progress: Progress | None = None, roots: list[Path] | None = None) -> LoadResult:
    """Map raw rows through ``preset``; every row that fails becomes an issue.

    With ``roots`` (a workspace's :meth:`~engine.workspace.Workspace.roots`), an audio path
    that resolves outside them (``../``, absolute, or a symlink out) is refused before the
    file is opened."""
    rows = list(rows)
    issues = list(issues or [])
    if columns is not None:
        missing = preset.missing_columns(columns)
        if missing and rows:
            raise DataError(f"required column missing (columns are: {', '.join(columns) or 'none'})",
                            file=file, field=missing[0],
                            hint=f"The '{preset.name}' layout needs: "
                                 + ", ".join("|".join(a) for a in preset.required))
    examples: list[dict] = []
    stem = Path(file).stem
    for n, (lineno, row) in enumerate(rows):
        ctx = RowContext(base_dir=base_dir, audio_cache=audio_cache, row_id=f"{stem}-{lineno}")
        try:
            ex = preset.map_row(row, ctx)
        except RowProblem as p:
            issues.append(Issue(p.message, file, lineno, p.field, code=p.code))
            continue
        ex["meta"].setdefault("source_line", lineno)
        too_big = _oversized(ex)
        if too_big:
            issues.append(Issue(f"{too_big[1]:,} characters of text; one example may hold at most "
                                f"{MAX_ROW_CHARS:,}", file, lineno, too_big[0], code="too_large"))
            continue
        if preset.kind == SPEECH and roots is not None and not inside_any(ex["audio"], roots):
            col = next((c for c in AUDIO_COLS if c in row), "audio")
            shown = row.get(col) if isinstance(row.get(col), str) else ex["audio"]
            issues.append(Issue(f"audio path '{shown}' is outside the workspace (not read)", file, lineno,
                                col, code="outside_workspace"))
            continue
        if preset.kind == SPEECH and check_audio:
            problem = _check_speech(ex)
            if problem is not None:
                problem.file, problem.line = file, lineno
                issues.append(problem)
                if problem.severity == "error":
                    continue
        examples.append(ex)
        if progress and n % 50 == 0:
            report(progress, n / max(len(rows), 1), f"read {n}/{len(rows)} rows")
    return LoadResult(preset.kind, examples, issues, file, list(columns or []), len(rows))


def _oversized(ex: dict) -> tuple[str, int] | None:
    """(largest text field, total characters) when an example is over MAX_ROW_CHARS."""
    sizes = {k: len(ex[k]) for k in ("prompt", "response", "text") if isinstance(ex.get(k), str)}
    total = sum(sizes.values())
    return (max(sizes, key=sizes.get), total) if total > MAX_ROW_CHARS else None


def _check_speech(ex: dict) -> Issue | None:
    """Read the audio header: fills duration, flags >30 s clips; None when all is well."""
    path = Path(ex["audio"])
    if not path.exists():
        return Issue(f"audio file not found: {path}", field="audio", code="audio_missing")
    try:
        info = audio_info(path)
    except DataError as e:
        return Issue(f"unreadable audio {path.name}: {e.message}", field="audio", code="audio_unreadable")
    try:  # refused here, by its header, rather than decoded later by validation or training
        check_duration(info["duration"], path.name)
    except DataError as e:
        return Issue(e.message, field="audio", code="audio_too_long")
    if info["duration"] <= 0:
        return Issue(f"audio {path.name} holds no samples (0.0 s)", field="audio", code="empty_audio")
    ex["meta"].setdefault("sample_rate", info["sample_rate"])
    ex["meta"].setdefault("channels", info["channels"])
    if ex["duration"] < 0:
        ex["duration"] = round(info["duration"], 3)
    if info["duration"] > WHISPER_MAX_SECONDS:
        ex["meta"]["too_long_for_whisper"] = True
        return Issue(f"{info['duration']:.1f} s is longer than Whisper's {WHISPER_MAX_SECONDS:.0f} s window: "
                     f"training would see only the first {WHISPER_MAX_SECONDS:.0f} s of it (cut the recording into "
                     f"clips of at most {WHISPER_MAX_SECONDS:.0f} s); evaluation transcribes it window by window",
                     field="audio", severity="warning", code="too_long")
    return None


def read_table(path: str | Path, *, preset: str | None = None, audio_cache: Path | None = None,
               check_audio: bool = True, progress: Progress | None = None,
               roots: list[Path] | None = None) -> LoadResult:
    """Read a JSONL/JSON/CSV/TSV/Parquet file or a NeMo manifest into normalised examples."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES and path.is_file() and path.stat().st_size == 0:
        raise DataError("empty file (0 bytes)", file=str(path))
    if suffix in (".jsonl", ".json"):
        rows, issues, columns = read_jsonl_rows(path)
    elif suffix in (".csv", ".tsv"):
        rows, issues, columns = read_csv_rows(path)
    elif suffix == ".parquet":
        rows, issues, columns = read_parquet_rows(path)
    else:
        raise DataError(f"unsupported file type '{suffix or path.name}'", file=str(path),
                        hint="Use .jsonl, .json, .csv, .tsv, .parquet, a NeMo manifest (.json lines), "
                             "or a folder of audio files with .txt transcripts.")
    if not rows and not any(i.severity == "error" for i in issues):
        raise DataError("no data rows" + (" (only a header)" if suffix in (".csv", ".tsv")
                                          else " (only blank lines)" if issues else ""), file=str(path))
    chosen = get_preset(preset) if preset else detect_preset(columns)
    if chosen is None:
        if not rows:
            return LoadResult("text", [], issues, str(path), columns, 0)
        raise DataError(f"cannot tell what the columns mean ({', '.join(columns)})", file=str(path),
                        hint="Name them prompt/response (text) or audio/text (speech), or pick a preset.")
    return normalise_rows(rows, chosen, file=str(path), base_dir=path.parent, audio_cache=audio_cache,
                          columns=columns, issues=issues, check_audio=check_audio, progress=progress,
                          roots=roots)


def read_audio_folder(folder: str | Path, *, check_audio: bool = True,
                      progress: Progress | None = None, roots: list[Path] | None = None) -> LoadResult:
    """A folder of audio files, each with a same-named ``.txt`` transcript beside it.

    With ``roots``, a clip or transcript that is a symlink out of them is refused unread."""
    folder = Path(folder)
    audio = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not audio:
        raise DataError("no audio files found (looked for " + ", ".join(AUDIO_SUFFIXES) + ")",
                        file=str(folder))
    rows: Rows = []
    issues: list[Issue] = []
    for i, p in enumerate(audio, start=1):
        txt = p.with_suffix(".txt")
        rel = str(p.relative_to(folder))
        if not txt.exists():
            issues.append(Issue(f"no transcript {txt.name} next to the audio", rel, None, "text",
                                code="missing_transcript"))
            continue
        outside = [f for f in (p, txt) if roots is not None and not inside_any(f, roots)]
        if outside:
            issues.append(Issue(f"{outside[0].name} links outside the workspace (not read)",
                                str(outside[0].relative_to(folder)), None,
                                "audio" if outside[0] == p else "text", code="outside_workspace"))
            continue
        try:
            text = read_text_utf8(txt).strip()
        except DataError as e:
            issues.append(Issue(e.message, str(txt.relative_to(folder)), e.line, "text", code="encoding"))
            continue
        rows.append((i, {"id": p.stem, "audio": str(p), "text": text}))
    res = normalise_rows(rows, get_preset("speech"), file=str(folder), base_dir=folder, columns=None,
                         issues=issues, check_audio=check_audio, progress=progress, roots=roots)
    # Name the audio file rather than a row number: a folder has no lines.
    by_line = {n: r["audio"] for n, r in rows}
    for issue in res.issues:
        if issue.file == str(folder) and issue.line in by_line:
            issue.file, issue.line = by_line[issue.line], None
    for ex in res.examples:
        ex["meta"]["source_file"] = ex["audio"]
        ex["meta"].pop("source_line", None)
    return res


def read_hub(hub_id: str, *, preset: str | None = None, split: str = "train", config: str | None = None,
             limit: int | None = 1000, audio_cache: Path | None = None,
             progress: Progress | None = None, roots: list[Path] | None = None) -> LoadResult:
    """Load a Hugging Face hub dataset (or a local folder ``datasets`` can read) and map it.

    Audio columns are read undecoded (bytes or path) and written into ``audio_cache``, so
    no audio decoding backend beyond soundfile is needed.
    """
    chosen = get_preset(preset) if preset else preset_for_hub_id(hub_id)
    try:
        import datasets  # noqa: PLC0415 - ~0.5 s to import, only the hub needs it
    except ImportError as e:  # pragma: no cover
        raise MissingDependency("datasets", "Loading hub datasets") from e
    if config is None and chosen is not None and hub_id in chosen.hub_ids:
        config = chosen.extra.get("hub_config")
    report(progress, None, f"loading {hub_id} ({split})")
    try:
        ds = datasets.load_dataset(hub_id, config, split=split)
    except Exception as e:  # offline, unknown id, bad split: all land here with terse text
        raise DataError(f"cannot load hub dataset ({type(e).__name__}: {str(e).splitlines()[0][:300]})",
                        file=hub_id, hint="Check the id and split; the Hub may be unreachable from this "
                                          "machine (download the files and open them as local files).") from e
    for name, feat in ds.features.items():
        if type(feat).__name__ == "Audio":
            ds = ds.cast_column(name, datasets.Audio(decode=False))
    columns = list(ds.column_names)
    chosen = chosen or detect_preset(columns)
    if chosen is None:
        raise DataError(f"cannot tell what the columns mean ({', '.join(columns)})", file=hub_id,
                        hint="Pick a preset.")
    n = len(ds) if limit is None else min(len(ds), limit)
    rows = [(i + 1, ds[i]) for i in range(n)]
    return normalise_rows(rows, chosen, file=f"{hub_id}[{split}]", base_dir=Path.cwd(),
                          audio_cache=audio_cache, columns=columns, progress=progress, roots=roots)


def read_terms(path: Path) -> list[str]:
    """One term per line; blank lines and ``#`` comments ignored; order kept, no duplicates."""
    seen: dict[str, None] = {}
    for line in split_lines(read_text_utf8(path)):
        t = line.split("#", 1)[0].strip()
        if t:
            seen.setdefault(t, None)
    return list(seen)
