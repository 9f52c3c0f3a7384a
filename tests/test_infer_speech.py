"""Transcription: batches, clips longer than Whisper's 30 s window, the CLI's happy path."""

from __future__ import annotations

import numpy as np
import pytest

from engine.audio import SAMPLE_RATE, write_flac
from engine.errors import DataError, ModelError
from engine.infer import split_long
from engine.tts import Voice, synthesize

FIRST = "The patient reports a mild headache since yesterday."
LAST = "Follow up with the clinic next week."


@pytest.fixture(scope="module")
def whisper(whisper_dir):
    from engine.models.loader import load_model

    return load_model("whisper-tiny.en", device="cpu")


def test_split_long_cuts_at_silence():
    sr = SAMPLE_RATE
    t = np.arange(sr * 44) / sr
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    audio[int(27.2 * sr):int(27.8 * sr)] = 0.0  # the one quiet place in the last 5 s of the window
    pieces = split_long(audio)
    assert len(pieces) == 2
    assert all(len(p) <= 30 * sr for p in pieces)
    assert np.array_equal(np.concatenate(pieces), audio)
    assert 27.2 * sr <= len(pieces[0]) <= 27.8 * sr  # cut inside the gap, not mid-sound
    three = split_long(np.concatenate([audio, audio]))
    assert all(len(p) <= 30 * sr for p in three) and sum(map(len, three)) == 2 * len(audio)
    assert split_long(audio[: 5 * sr])[0].shape == (5 * sr,)


def test_long_clip_is_chunked_and_joined(whisper):
    from engine.infer import transcribe

    pause = np.zeros(SAMPLE_RATE * 12, np.float32)
    audio = np.concatenate([synthesize(FIRST), pause, synthesize("The blood test was normal."), pause,
                            synthesize(LAST)])
    assert len(audio) > 30 * SAMPLE_RATE
    text = transcribe(whisper, audio).lower()
    assert "headache" in text and "clinic" in text and "blood test" in text, text


def test_batch_of_file_and_array(whisper, tmp_path):
    from engine.infer import transcribe_batch

    write_flac(tmp_path / "a.flac", synthesize(FIRST, Voice("en-us", 160, 50)))
    b = synthesize(LAST, Voice("en+m3", 145, 40))
    batch = transcribe_batch(whisper, [tmp_path / "a.flac", b], batch_size=2)
    assert "headache" in batch[0].lower() and "clinic" in batch[1].lower(), batch


def test_bad_audio_and_wrong_kind(whisper, tmp_path):
    from engine.infer import answer, transcribe

    with pytest.raises(DataError, match="empty"):
        transcribe(whisper, np.zeros(10, np.float32))
    with pytest.raises(DataError, match="not found"):
        transcribe(whisper, tmp_path / "missing.wav")
    with pytest.raises(ModelError, match="speech model"):
        answer(whisper, "hello")


def test_cli_transcribe_several_files(whisper_dir, tmp_path, capsys):
    from engine.cli import main

    write_flac(tmp_path / "one.flac", synthesize(FIRST))
    write_flac(tmp_path / "two.flac", synthesize(LAST))
    rc = main(["transcribe", "whisper-tiny.en", str(tmp_path / "one.flac"), str(tmp_path / "two.flac")])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(tmp_path / "one.flac") + "\t")
    assert "headache" in lines[0].lower() and "clinic" in lines[1].lower()
