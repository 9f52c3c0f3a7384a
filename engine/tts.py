"""Speech synthesis with eSpeak NG through ctypes (library and voices from ``espeakng-loader``).

No system packages: the wheel ships ``libespeak-ng.so`` and its data. eSpeak NG keeps global
state, so one process-wide engine is initialised once and guarded by a lock; calls from
several threads are serialised.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

from engine.errors import MissingDependency

TARGET_SR = 16_000  # Whisper and NeMo models expect 16 kHz mono

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1

_SYNTH_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Voice:
    """An eSpeak voice (``en-us``, ``en`` = British, ``en-gb-scotland``, variants such as
    ``en-us+f2`` or ``en+m3``), rate in words per minute, and pitch 0-100."""

    name: str = "en-us"  # file names under espeak-ng-data/voices; "en" is British English
    rate: int = 160
    pitch: int = 50

    @property
    def label(self) -> str:
        return f"{self.name}@{self.rate}wpm"


#: A spread of accents, sexes and speeds used for the shipped dictation audio.
DEFAULT_VOICES: tuple[Voice, ...] = (
    Voice("en-us", 160, 50),
    Voice("en+m3", 145, 40),
    Voice("en-us+f2", 175, 60),
    Voice("en-gb-scotland+f3", 150, 55),
)


class _Engine:
    def __init__(self) -> None:
        try:
            import espeakng_loader  # noqa: PLC0415 - loads the eSpeak NG library, only to synthesize
        except ImportError as e:  # pragma: no cover - it is a core dependency
            raise MissingDependency("espeakng-loader", "Speech synthesis") from e
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate})")
        self._chunks: list[np.ndarray] = []

        def _collect(wav, n, _events):  # called by eSpeak from inside espeak_Synth
            if n > 0 and wav:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0  # 0 = continue synthesis

        self._callback = _SYNTH_CB(_collect)  # keep a reference: eSpeak holds a raw pointer
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]

    def synth(self, text: str, voice: Voice) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"Unknown eSpeak voice '{voice.name}'")
        self.lib.espeak_SetParameter(_ESPEAK_RATE, int(voice.rate), 0)
        self.lib.espeak_SetParameter(_ESPEAK_PITCH, int(voice.pitch), 0)
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        self._chunks = []
        rc = self.lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        if rc != 0:
            raise RuntimeError(f"espeak_Synth failed ({rc})")
        if not self._chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._chunks)


_engine: _Engine | None = None
_lock = threading.Lock()


def synthesize(text: str, voice: Voice = Voice(), sample_rate: int = TARGET_SR) -> np.ndarray:
    """Speak ``text`` and return float32 mono samples in [-1, 1] at ``sample_rate``."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = _Engine()
        pcm = _engine.synth(text, voice)
        native = _engine.sample_rate
    audio = pcm.astype(np.float32) / 32768.0
    if sample_rate != native and audio.size:
        from scipy.signal import resample_poly  # noqa: PLC0415 - scipy.signal takes ~0.6 s to import; the UI imports this module

        g = np.gcd(native, sample_rate)
        audio = resample_poly(audio, sample_rate // g, native // g).astype(np.float32)
    return np.clip(audio, -1.0, 1.0)
