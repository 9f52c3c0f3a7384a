"""Whisper seq2seq LoRA with the encoder cache, on a tiny real Whisper and eSpeak clips."""

from __future__ import annotations

import json

from train_tiny import make_speech_dataset, tiny_whisper  # noqa: F401 - fixture

from engine.config import RunConfig
from engine.runs import JobContext, create_run


def _cfg(model, **over):
    base = {"model.name": str(model), "data.dataset": "tiny-dict", "train.batch_size": 4, "train.max_steps": 4,
            "train.logging_steps": 1, "train.eval_steps": 2, "train.save_steps": 2, "lora.r": 4, "lora.alpha": 8.0,
            "eval.max_new_tokens": 6, "eval.wer_samples": 2}
    base.update(over)
    return RunConfig().with_overrides(base)


def test_prompt_masking(tiny_whisper):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from engine.train import speech

    proc = WhisperProcessor.from_pretrained(tiny_whisper)
    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper)
    prefix = speech.prompt_ids(proc, model)
    tok = proc.tokenizer
    assert prefix == [tok.convert_tokens_to_ids("<|startoftranscript|>"), tok.convert_tokens_to_ids("<|notimestamps|>")]
    item = speech.encode_target(proc, prefix, "metoprolol daily", 64)
    dec, labels = item["decoder_input_ids"], item["labels"]
    assert dec[:2] == prefix and len(dec) == len(labels)
    assert labels[0] == -100 and labels[-1] == tok.eos_token_id
    # label i is the token following decoder input i: the transcript, shifted by one
    assert labels[1:-1] == dec[2:]
    assert tok.decode(labels[1:-1]).strip() == "metoprolol daily"


def test_speech_run_with_encoder_cache(workspace, tiny_whisper):
    from engine.train import job

    make_speech_dataset(workspace.datasets / "tiny-dict")
    run = create_run(workspace, _cfg(tiny_whisper), "speech")
    job.run(JobContext(run, {}, lambda f, m: None))
    rows = run.metrics()
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    evals = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 2, 4]
    assert all("wer" in r and "term_recall" in r for r in evals)
    assert all("samples_per_s" in r for r in rows if "loss" in r)
    cache = list((workspace.root / "cache" / "encoder").rglob("*.safetensors"))
    assert len(cache) == 12  # 8 train + 4 eval clips, each encoded once
    mtimes = {p: p.stat().st_mtime_ns for p in cache}
    ac = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    assert "decoder" in str(ac["target_modules"])  # encoder untouched: that is what makes the cache valid
    # a second run reuses the cache instead of re-encoding
    run2 = create_run(workspace, _cfg(tiny_whisper, **{"train.max_steps": 1, "eval.eval_at_start": False}), "again")
    job.run(JobContext(run2, {}, lambda f, m: None))
    assert {p: p.stat().st_mtime_ns for p in cache} == mtimes


def test_speech_run_with_encoder_lora(workspace, tiny_whisper):
    from engine.train import job

    make_speech_dataset(workspace.datasets / "tiny-dict", n_train=4, n_eval=2)
    run = create_run(workspace, _cfg(tiny_whisper, **{"lora.encoder_lora": True, "train.max_steps": 2,
                                                       "eval.eval_at_start": False}), "enc")
    job.run(JobContext(run, {}, lambda f, m: None))
    assert not (workspace.root / "cache").exists()
    ac = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    assert "fc1" in ac["target_modules"]
    assert [r["step"] for r in run.metrics() if "loss" in r] == [1, 2]


def test_clips_longer_than_whisper_window_are_left_out(tiny_whisper, workspace, capsys):
    import numpy as np
    import pytest
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from engine.audio import write_flac
    from engine.errors import DataError
    from engine.train import speech

    proc = WhisperProcessor.from_pretrained(tiny_whisper)
    prefix = speech.prompt_ids(proc, WhisperForConditionalGeneration.from_pretrained(tiny_whisper))
    short, long = workspace.uploads / "short.flac", workspace.uploads / "long.flac"
    write_flac(short, np.zeros(16000 * 2, dtype=np.float32))
    write_flac(long, np.zeros(16000 * 45, dtype=np.float32))
    rows = [{"audio": str(long), "text": "a long dictation"}, {"audio": str(short), "text": "start metoprolol"}]
    ds = speech.build_speech_dataset(proc, prefix, rows, 64, None, "train.jsonl")
    assert len(ds) == 1 and ds[0]["text"] == "start metoprolol"  # references stay paired with their clips
    assert "left out 1 clip(s) of train.jsonl longer than Whisper's 30 s window: line 1 (45 s)" in capsys.readouterr().out
    with pytest.raises(DataError, match="all 1 are longer than 30 s"):
        speech.build_speech_dataset(proc, prefix, rows[:1], 64, None, "train.jsonl")
