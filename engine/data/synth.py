"""Synthetic speech sets: sentences -> 16 kHz FLAC clips in several voices + a NeMo manifest.

This is how public synthetic medical speech sets were made, and it lets a user build an ASR
set for their own vocabulary. A clip that already exists is reused: re-running a build only
pays for what is new. Clips are not bit-identical between builds: eSpeak NG's variant voices
(``+f2``, ``+f3``, ``+m3``) add noise that changes from one synthesis to the next in a process,
even with ``espeak_ng_SetRandSeed`` (and libc's ``srand``) set before each clip (measured: ~6%
RMS difference between two builds of the same clip). So base-model figures on a freshly built
set move a little (shipped test WER 0.52-0.56 for whisper tiny.en over three builds).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from engine.atomic import write_text
from engine.audio import audio_info, write_flac
from engine.data.readers import read_jsonl_rows, read_text_utf8, split_lines
from engine.data.schema import speech_example
from engine.errors import DataError
from engine.progress import Progress, report
from engine.tts import DEFAULT_VOICES, Voice, synthesize


def voice_slug(voice: Voice) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{voice.name}-{voice.rate}-{voice.pitch}".lower()).strip("-")


def parse_voice(spec: str) -> Voice:
    """``"en-us"``, ``"en-us+f2@175"`` or ``"en+m3@145:40"`` (name@rate:pitch)."""
    m = re.fullmatch(r"\s*([A-Za-z0-9_+\-]+)(?:@(\d+))?(?::(\d+))?\s*", spec)
    if not m:
        raise DataError(f"cannot parse voice '{spec}'", field="voice", hint="Use name[@wpm][:pitch], e.g. en-us+f2@170")
    return Voice(m.group(1), int(m.group(2) or 160), int(m.group(3) or 50))


def with_speed(voice: Voice, speed: float) -> Voice:
    return Voice(voice.name, max(80, int(round(voice.rate * speed))), voice.pitch)


def synthesize_items(items: list[tuple[dict, Voice]], audio_dir: Path, *, rel_to: Path | None = None,
                     progress: Progress | None = None) -> list[dict]:
    """Speak each (sentence, voice) pair into ``audio_dir``; returns speech examples.

    A sentence is ``{"id", "text", ...}``; other keys go to ``meta``. Audio paths in the
    result are relative to ``rel_to`` when given (dataset folders), else absolute.
    """
    audio_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for n, (sent, voice) in enumerate(items):
        text = str(sent.get("text", "")).strip()
        if not text:
            raise DataError("empty sentence", field="text", line=n + 1)
        sid = str(sent["id"])
        # The text's hash is part of the name: an edited sentence under the same id (ids of a
        # .txt file are line numbers) must not reuse the old clip.
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
        path = audio_dir / f"{sid}__{voice_slug(voice)}__{digest}.flac"
        if path.exists():
            duration = audio_info(path)["duration"]
        else:
            audio = synthesize(text, voice)
            if audio.size == 0:
                raise DataError("eSpeak produced no audio", field="text", line=n + 1)
            write_flac(path, audio)
            duration = audio.size / 16_000
        meta = {k: v for k, v in sent.items() if k not in ("id", "text")}
        meta.update(voice=voice.label, sentence_id=sid)
        audio_ref = path.relative_to(rel_to).as_posix() if rel_to else str(path)
        out.append(speech_example(f"{sid}-{voice_slug(voice)}", audio_ref, text, round(duration, 3), meta))
        if n % 10 == 0 or n == len(items) - 1:
            report(progress, (n + 1) / len(items), f"synthesized {n + 1}/{len(items)} clips")
    return out


def write_manifest(examples: list[dict], path: Path, base: Path | None = None) -> Path:
    """NeMo manifest: one ``{"audio_filepath", "duration", "text"}`` per line (absolute paths)."""
    lines = []
    for ex in examples:
        audio = Path(ex["audio"])
        if base is not None and not audio.is_absolute():
            audio = base / audio
        lines.append(json.dumps({"audio_filepath": str(audio), "duration": ex["duration"], "text": ex["text"]}))
    write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return path


def read_sentences(path: Path) -> list[dict]:
    """Sentences from a .txt file (one per line) or a .jsonl file with ``text`` (and ``id``)."""
    if path.suffix.lower() in (".jsonl", ".json"):
        rows, issues, _ = read_jsonl_rows(path)
        bad = [i for i in issues if i.severity == "error"]
        if bad:
            raise bad[0].to_error()
        out = []
        for line, row in rows:
            if not str(row.get("text", "")).strip():
                raise DataError("empty or missing", file=str(path), line=line, field="text")
            out.append({"id": str(row.get("id", f"s{line:04d}")), **{k: v for k, v in row.items() if k != "id"}})
        return out
    lines = split_lines(read_text_utf8(path))
    return [{"id": f"s{i:04d}", "text": t.strip()} for i, t in enumerate(lines, start=1) if t.strip()]


def synthesize_sentences(sentences: list[dict], out_dir: Path, *, voices: tuple[Voice, ...] = DEFAULT_VOICES,
                         speeds: tuple[float, ...] = (1.0,), progress: Progress | None = None) -> Path:
    """Every sentence in every voice x speed into ``out_dir/audio``; writes
    ``out_dir/manifest.json`` (NeMo) and returns its path."""
    items = [(s, with_speed(v, sp)) for s in sentences for v in voices for sp in speeds]
    examples = synthesize_items(items, out_dir / "audio", progress=progress)
    return write_manifest(examples, out_dir / "manifest.json")
