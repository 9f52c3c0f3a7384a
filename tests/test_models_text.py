"""SmolLM2 from its GGUF: a plain transformers checkpoint with its chat template, answering
medical questions sensibly; 4-bit loading on a CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.workspace import REPO_ROOT


@pytest.fixture(scope="module")
def smol(smollm2_dir):
    from engine.models.loader import load_model

    return load_model("smollm2-135m-instruct", device="cpu")


def test_converted_checkpoint_is_plain_safetensors(smollm2_dir):
    cfg = json.loads((smollm2_dir / "config.json").read_text())
    assert cfg["model_type"] == "llama" and "quantization_config" not in cfg
    assert cfg.get("dtype", cfg.get("torch_dtype")) == "float32"
    assert (smollm2_dir / "model.safetensors").is_file()
    assert not list(smollm2_dir.glob("*.gguf"))


def test_chat_template_is_applied(smol):
    from engine.infer import chat_prompt

    prompt = chat_prompt(smol, "What is a fever?")
    assert prompt.startswith("<|im_start|>system\n")  # SmolLM's default system turn
    assert "<|im_start|>user\nWhat is a fever?<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    custom = chat_prompt(smol, "What is a fever?", system="You are a nurse.")
    assert "<|im_start|>system\nYou are a nurse.<|im_end|>" in custom
    assert smol.tokenizer.eos_token == "<|im_end|>"  # generation stops at the end of the turn


def test_answers_are_relevant_and_greedy_is_deterministic(smol):
    from engine.infer import answer, generate_batch, stream_answer

    q = "Which organ pumps blood through the body?"
    a = answer(smol, q, max_new_tokens=10)
    assert "heart" in a.lower(), a
    streamed = list(stream_answer(smol, q, max_new_tokens=10))
    # Grows token by token to the same answer: a second greedy run (temperature 0) agrees.
    assert len(streamed) > 1 and streamed[-1] == a
    # Left-padded batch: row 0 matches the single answer; row 1 (shorter, so padded on the
    # left) still answers correctly - broken padding/position handling yields garbage here.
    # (Its greedy answer, checked by hand: "...insulin, which is produced by the pancreas, ...")
    batch = generate_batch(smol, [q, "What organ produces insulin?"], max_new_tokens=20)
    assert batch[0].startswith(a), batch
    assert "pancrea" in batch[1].lower(), batch


def test_text_model_refuses_audio(smol):
    from engine.errors import DataError, ModelError
    from engine.infer import answer, transcribe

    with pytest.raises(ModelError, match="text model"):
        transcribe(smol, "x.wav")
    with pytest.raises(DataError, match="empty"):
        answer(smol, "   ")


def test_cli_ask_streams_a_relevant_answer(smollm2_dir):
    """The real console entry point in a child process, as a user runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "ask", "smollm2-135m-instruct",
         "Which organ pumps blood through the body?", "--max-new-tokens", "8"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "heart" in proc.stdout.lower(), proc.stdout
    assert "Traceback" not in proc.stderr


def test_4bit_load_on_cpu_produces_text(smollm2_dir):
    import bitsandbytes as bnb

    from engine.infer import answer
    from engine.models.loader import load_model

    lm = load_model("smollm2-135m-instruct", quant="4bit", device="cpu")
    assert lm.quant == "4bit"
    assert isinstance(lm.model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    text = answer(lm, "Which organ pumps blood through the body?", max_new_tokens=3)
    assert any(c.isalpha() for c in text), text
