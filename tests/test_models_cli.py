"""`medtune models|ask|transcribe`: listings, and bad input -> one clear line + non-zero exit.

Error cases fail before any weights load, so these run in-process and fast; the happy paths
run as real child processes in test_models_text.py / test_infer.py."""

from __future__ import annotations

import json

import pytest

from engine.cli import main


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_models_list(capsys):
    rc, out, _ = run(capsys, "models", "list")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("smollm2-135m-instruct") and lines[1].startswith("whisper-tiny.en")
    assert any(line.startswith("nvidia/canary-qwen-2.5b") and "NeMo" in line for line in lines)
    rc, out, _ = run(capsys, "models", "list", "--json")
    rows = json.loads(out)
    assert {r["name"] for r in rows} >= {"microsoft/phi-2", "openai/whisper-small"}
    assert all("license" in r and "kind" in r for r in rows)


def test_models_fetch_embedded_is_cached(capsys, whisper_dir):
    rc, out, _ = run(capsys, "models", "fetch", "whisper-tiny.en")
    assert rc == 0 and out.strip() == str(whisper_dir)


@pytest.mark.parametrize("argv, needle", [
    (("ask", "gpt-17", "hello"), "Unknown model 'gpt-17'"),
    (("transcribe", "whisper-tni.en", "a.wav"), "Available: smollm2-135m-instruct, whisper-tiny.en"),
    (("models", "fetch", "nope"), "Unknown model 'nope'"),
    (("ask", "whisper-tiny.en", "hello"), "is a speech model"),
    (("transcribe", "smollm2-135m-instruct", "a.wav"), "is a text model"),
    (("ask", "smollm2-135m-instruct", "  "), "question is empty"),
])
def test_bad_model_or_question(capsys, argv, needle):
    rc, out, err = run(capsys, *argv)
    assert rc != 0 and needle in err and "Traceback" not in err
    assert err.startswith("error: ")


def test_transcribe_missing_and_corrupt_files(capsys, tmp_path):
    missing = tmp_path / "nothere.wav"
    rc, _, err = run(capsys, "transcribe", "whisper-tiny.en", str(missing))
    assert rc != 0 and str(missing) in err and "not found" in err

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    rc, _, err = run(capsys, "transcribe", "whisper-tiny.en", str(corrupt))
    assert rc != 0 and str(corrupt) in err and "cannot decode audio" in err

    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    rc, _, err = run(capsys, "transcribe", "whisper-tiny.en", str(empty))
    assert rc != 0 and "empty" in err and "Traceback" not in err
