"""Reading audio the way every model here wants it: float32 mono at 16 kHz.

Errors name the file, so a corrupt clip in a 10,000-row manifest can be found.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from engine.errors import DataError

SAMPLE_RATE = 16_000
WHISPER_MAX_SECONDS = 30.0


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    if orig_sr == target_sr or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = np.gcd(int(orig_sr), int(target_sr))
    return resample_poly(audio, target_sr // g, orig_sr // g).astype(np.float32)


def to_mono(audio: np.ndarray) -> np.ndarray:
    return audio.mean(axis=1) if audio.ndim == 2 else audio


def load_audio(source: str | os.PathLike | bytes, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read a file (any format libsndfile reads: WAV, FLAC, OGG, MP3) as float32 mono at
    ``sr``. Raises :class:`DataError` naming the file when it cannot be decoded."""
    import soundfile as sf

    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes):
        if not Path(source).exists():
            raise DataError("audio file not found", file=name)
        if Path(source).stat().st_size == 0:
            raise DataError("audio file is empty (0 bytes)", file=name)
    try:
        data, file_sr = sf.read(io.BytesIO(source) if isinstance(source, bytes) else source,
                                dtype="float32", always_2d=False)
    except Exception as e:  # libsndfile raises LibsndfileError/RuntimeError with terse text
        raise DataError(f"cannot decode audio ({e})", file=name,
                        hint="Use WAV, FLAC, OGG or MP3; the file may be truncated or not audio.") from e
    return resample(to_mono(np.asarray(data, dtype=np.float32)), int(file_sr), sr)


def audio_info(path: str | os.PathLike) -> dict:
    """Duration, sample rate and channels without decoding the whole file."""
    import soundfile as sf

    if not Path(path).exists():
        raise DataError("audio file not found", file=str(path))
    if Path(path).stat().st_size == 0:
        raise DataError("audio file is empty (0 bytes)", file=str(path))
    try:
        info = sf.info(str(path))
    except Exception as e:
        raise DataError(f"cannot read audio header ({e})", file=str(path)) from e
    return {"duration": float(info.frames) / info.samplerate if info.samplerate else 0.0,
            "sample_rate": int(info.samplerate), "channels": int(info.channels)}


def write_flac(path: str | os.PathLike, audio: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write 16-bit FLAC atomically (temp file + rename)."""
    import soundfile as sf

    from engine.atomic import write_bytes

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1, 1), sr, format="FLAC", subtype="PCM_16")
    write_bytes(path, buf.getvalue())
