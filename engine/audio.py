"""Reading audio the way every model here wants it: float32 mono at 16 kHz.

Errors name the file, so a corrupt clip in a 10,000-row manifest can be found. Every file is
read through :func:`audio_info` first: the header alone says how long the clip is, so a clip
over the length limit (:func:`max_audio_seconds`) or a WAV whose header claims more audio
than the file holds is refused before a single sample is decoded.
"""

from __future__ import annotations

import io
import math
import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from engine.atomic import write_bytes
from engine.errors import ConfigError, DataError

SAMPLE_RATE = 16_000
WHISPER_MAX_SECONDS = 30.0

#: Environment variable that sets the longest recording read, in seconds.
MAX_AUDIO_ENV = "MEDTUNE_MAX_AUDIO_S"
#: One hour: a long dictation fits (transcription cuts it into 30 s windows) and decodes to about
#: 230 MB at 16 kHz, while a 730 KB FLAC of 4 h of silence (2 GB decoded, minutes of the
#: Playground's model lock) is refused from its header. One limit for every reader, since
#: datasets, the Playground and `medtune transcribe` all chunk long clips the same way.
DEFAULT_MAX_AUDIO_S = 3600.0

_WAV_IDS = (b"RIFF", b"RF64", b"BW64")
_MAX_WAV_CHUNKS = 64  # a real WAV has a handful before "data"; a longer walk is junk


def max_audio_seconds() -> float:
    """The length limit: ``$MEDTUNE_MAX_AUDIO_S`` seconds, else :data:`DEFAULT_MAX_AUDIO_S`."""
    raw = os.environ.get(MAX_AUDIO_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_AUDIO_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError([f"{MAX_AUDIO_ENV}: must be a positive number of seconds, got {raw[:40]!r}"],
                          source="the environment")
    return value


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    if orig_sr == target_sr or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # noqa: PLC0415 - scipy.signal takes ~0.6 s to import; the UI and CLI import this module

    g = np.gcd(int(orig_sr), int(target_sr))
    return resample_poly(audio, target_sr // g, orig_sr // g).astype(np.float32)


def to_mono(audio: np.ndarray) -> np.ndarray:
    return audio.mean(axis=1) if audio.ndim == 2 else audio


def load_audio(source: str | os.PathLike | bytes, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read a file (any format libsndfile reads: WAV, FLAC, OGG, MP3) as float32 mono at
    ``sr``. Raises :class:`DataError` naming the file when it cannot be decoded, or when its
    header declares more than :func:`max_audio_seconds` of audio (checked before decoding)."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    info = audio_info(source)
    check_duration(info["duration"], name)
    try:
        data, file_sr = sf.read(io.BytesIO(source) if isinstance(source, bytes) else source,
                                dtype="float32", always_2d=False)
    except Exception as e:  # libsndfile raises LibsndfileError/RuntimeError with terse text
        raise DataError(f"cannot decode audio ({e})", file=name,
                        hint="Use WAV, FLAC, OGG or MP3; the file may be truncated or not audio.") from e
    return resample(to_mono(np.asarray(data, dtype=np.float32)), int(file_sr), sr)


def audio_info(source: str | os.PathLike | bytes) -> dict:
    """Duration, sample rate and channels from the header, without decoding the file.

    Refuses (DataError naming the file) a missing, empty or unreadable file, and a WAV whose
    header declares more audio than the file holds: libsndfile would quietly read what is
    there (a 44-byte file claiming 4 GB reads as a 0.0 s clip)."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes):
        if not Path(source).exists():
            raise DataError("audio file not found", file=name)
        if Path(source).stat().st_size == 0:
            raise DataError("audio file is empty (0 bytes)", file=name)
    elif not source:
        raise DataError("audio file is empty (0 bytes)", file=name)
    try:
        info = sf.info(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    except Exception as e:
        raise DataError(f"cannot decode audio: its header is unreadable ({e})", file=name,
                        hint="Use WAV, FLAC, OGG or MP3; the file may be truncated or not audio.") from e
    duration = float(info.frames) / info.samplerate if info.samplerate else 0.0
    with (io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")) as f:
        claim = _wav_data_claim(f)
    if claim is not None and claim[0] > claim[1]:
        declared, held = claim
        bytes_per_s = info.samplerate * info.channels * _sample_bytes(info.subtype)
        said = f", {_span(declared / bytes_per_s)}," if bytes_per_s else ""
        raise DataError(f"the WAV header declares {declared:,} bytes of audio{said} but the file holds only "
                        f"{held:,} after the header: it is truncated or its header is corrupt",
                        file=name, hint="Copy the file again, or re-export the recording as WAV or FLAC.")
    return {"duration": duration, "sample_rate": int(info.samplerate), "channels": int(info.channels),
            "frames": int(info.frames)}


def check_duration(seconds: float, name: str) -> None:
    """DataError naming ``name`` when ``seconds`` (a header's declared length) is over the limit."""
    limit = max_audio_seconds()
    if seconds > limit:
        raise DataError(f"the header declares {_span(seconds)} of audio, over the {_span(limit)} limit "
                        f"({MAX_AUDIO_ENV}), so it is not decoded", file=name,
                        hint=f"Cut the recording into shorter files, or raise the limit with {MAX_AUDIO_ENV}=SECONDS.")


def _wav_data_claim(f: BinaryIO) -> tuple[int, int] | None:
    """(bytes the WAV "data" chunk declares, bytes the file holds after that chunk's header);
    None when ``f`` is not a RIFF/RF64 WAV or has no data chunk where a WAV would."""
    size = f.seek(0, io.SEEK_END)
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:4] not in _WAV_IDS or head[8:12] != b"WAVE":
        return None
    big = None  # RF64: the real data size lives in the ds64 chunk, "data" says 0xFFFFFFFF
    pos = 12
    for _ in range(_MAX_WAV_CHUNKS):
        f.seek(pos)
        hdr = f.read(8)
        if len(hdr) < 8:
            return None
        cid, n = hdr[:4], struct.unpack("<I", hdr[4:])[0]
        if cid == b"ds64" and n >= 16:
            big = struct.unpack("<Q", f.read(16)[8:16])[0]
        if cid == b"data":
            return (big if n == 0xFFFFFFFF and big is not None else n), size - pos - 8
        pos += 8 + n + (n & 1)
    return None


def _sample_bytes(subtype: str) -> int:
    """Bytes per sample of a PCM/float subtype ('PCM_16' -> 2); 0 when not fixed-size."""
    return {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8,
            "ULAW": 1, "ALAW": 1}.get(subtype, 0)


def _span(seconds: float) -> str:
    """'4.0 h (14,400 s)', '12.5 min (750 s)', '2.0 s'."""
    if seconds >= 60:
        big = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
        return f"{big} ({seconds:,.0f} s)"
    return f"{seconds:.1f} s"


def write_flac(path: str | os.PathLike, audio: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write 16-bit FLAC atomically (temp file + rename)."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1, 1), sr, format="FLAC", subtype="PCM_16")
    write_bytes(path, buf.getvalue())
