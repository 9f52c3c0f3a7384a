"""Inference on a :class:`~engine.models.loader.LoadedModel`: chat answers and transcripts.

Text: the tokenizer's chat template is always applied (instruct models answer badly to raw
prompts); ``temperature == 0`` means greedy decoding, so answers are reproducible.

Speech: Whisper sees at most 30 s at a time. Longer clips are cut into windows of at most
30 s, each cut placed at the quietest 100 ms in the window's last 5 s (so a cut rarely
splits a word), transcribed as one batch, and the pieces joined. This is simpler and more
predictable than Whisper's timestamp-driven long-form mode, and good enough for dictation.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from engine.audio import SAMPLE_RATE, WHISPER_MAX_SECONDS, load_audio
from engine.errors import DataError, ModelError
from engine.models.loader import LoadedModel

# Whisper checkpoints keep max_length (448) in their generation config, so every generate()
# given max_new_tokens logs that both are set (max_new_tokens wins, as intended): once per
# batch, it buried the evaluation log. Only that message is dropped.
logging.getLogger("transformers.generation.utils").addFilter(
    lambda record: not str(record.msg).startswith("Both `max_new_tokens`"))

_SEARCH_S = 5.0   # look this far back from a window's end for a quiet place to cut
_FRAME_S = 0.1


# ----------------------------------------------------------------------------- text
def _require(lm: LoadedModel, kind: str) -> None:
    if lm.spec.kind != kind:
        verb = "answer questions" if kind == "text" else "transcribe audio"
        raise ModelError(f"'{lm.spec.name}' is a {lm.spec.kind} model and cannot {verb}; pick a {kind} model.")


def chat_prompt(lm: LoadedModel, question: str, system: str | None = None) -> str:
    """The exact prompt string the model sees (chat template + generation prompt)."""
    if not str(question or "").strip():
        raise DataError("The question is empty.")
    tok = lm.tokenizer
    messages = ([{"role": "system", "content": system}] if system else []) + \
        [{"role": "user", "content": str(question)}]
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Base models (Llama-2-7b-hf, phi-2) have no template: a plain Q/A frame works best.
    return (f"{system}\n\n" if system else "") + f"Question: {question}\nAnswer:"


def _gen_kwargs(lm: LoadedModel, max_new_tokens: int, temperature: float, top_p: float,
                extra: dict[str, Any]) -> dict[str, Any]:
    if max_new_tokens < 1:
        raise DataError(f"max_new_tokens must be at least 1 (got {max_new_tokens}).")
    if temperature < 0:
        raise DataError(f"temperature must be >= 0 (got {temperature}).")
    tok = lm.tokenizer
    kw: dict[str, Any] = {"max_new_tokens": int(max_new_tokens),
                          "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id}
    if temperature == 0:
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kw.update(do_sample=True, temperature=float(temperature), top_p=float(top_p))
    kw.update(extra)
    return kw


def _encode(lm: LoadedModel, prompts: list[str]):
    tok = lm.tokenizer
    # The template already holds any BOS token; adding special tokens again would double it.
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return {k: v.to(lm.device) for k, v in enc.items()}


def answer(lm: LoadedModel, question: str, *, system: str | None = None, max_new_tokens: int = 256,
           temperature: float = 0.0, top_p: float = 1.0, **gen: Any) -> str:
    """One answer to ``question`` (chat template applied; temperature 0 = greedy)."""
    return generate_batch(lm, [question], batch_size=1, system=system, max_new_tokens=max_new_tokens,
                          temperature=temperature, top_p=top_p, **gen)[0]


def stream_answer(lm: LoadedModel, question: str, *, system: str | None = None, max_new_tokens: int = 256,
                  temperature: float = 0.0, top_p: float = 1.0, **gen: Any) -> Iterator[str]:
    """Like :func:`answer`, but yields the growing answer text as tokens arrive."""
    import torch  # noqa: PLC0415 - seconds to import; the UI imports this module
    from transformers import TextIteratorStreamer  # noqa: PLC0415 - seconds to import; the UI imports this module

    _require(lm, "text")
    kw = _gen_kwargs(lm, max_new_tokens, temperature, top_p, gen)
    inputs = _encode(lm, [chat_prompt(lm, question, system)])
    streamer = TextIteratorStreamer(lm.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    failure: list[BaseException] = []

    def _run() -> None:
        try:
            with torch.inference_mode():
                lm.model.generate(**inputs, streamer=streamer, **kw)
        except BaseException as e:  # surfaced in the consumer's thread below
            failure.append(e)
            streamer.end()

    thread = threading.Thread(target=_run, name="medtune-generate", daemon=True)
    thread.start()
    text = ""
    for piece in streamer:
        text += piece
        yield text.strip()
    thread.join()
    if failure:
        raise failure[0]


def generate_batch(lm: LoadedModel, questions: list[str], batch_size: int = 8, *, system: str | None = None,
                   max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
                   **gen: Any) -> list[str]:
    """Answers to many questions, ``batch_size`` at a time (left padding, so every row's
    new tokens start at the same column)."""
    import torch  # noqa: PLC0415 - seconds to import; the UI imports this module

    _require(lm, "text")
    kw = _gen_kwargs(lm, max_new_tokens, temperature, top_p, gen)
    tok = lm.tokenizer
    prompts = [chat_prompt(lm, q, system) for q in questions]
    out: list[str] = []
    old_side = tok.padding_side
    tok.padding_side = "left"
    try:
        for i in range(0, len(prompts), max(1, batch_size)):
            inputs = _encode(lm, prompts[i:i + batch_size])
            with torch.inference_mode():
                ids = lm.model.generate(**inputs, **kw)
            new = ids[:, inputs["input_ids"].shape[1]:]
            out.extend(t.strip() for t in tok.batch_decode(new, skip_special_tokens=True))
    finally:
        tok.padding_side = old_side
    return out


# ----------------------------------------------------------------------------- speech
def _as_audio(audio: str | Path | np.ndarray) -> tuple[np.ndarray, str]:
    if isinstance(audio, (str, Path)):
        return load_audio(audio), str(audio)
    arr = np.asarray(audio, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr.mean(axis=1) if arr.shape[1] <= 8 else arr.mean(axis=0)
    if arr.ndim != 1:
        raise DataError(f"audio array must be mono samples at {SAMPLE_RATE} Hz (got shape {arr.shape}).")
    return arr, "<array>"


def split_long(audio: np.ndarray, max_s: float = WHISPER_MAX_SECONDS) -> list[np.ndarray]:
    """Cut audio into pieces of at most ``max_s`` seconds, at quiet places (see module doc)."""
    limit = int(max_s * SAMPLE_RATE)
    frame, search = int(_FRAME_S * SAMPLE_RATE), int(_SEARCH_S * SAMPLE_RATE)
    pieces, start = [], 0
    while len(audio) - start > limit:
        window = audio[start + limit - search:start + limit]
        n = len(window) // frame
        energy = (window[:n * frame].reshape(n, frame) ** 2).mean(axis=1)
        cut = start + limit - search + int(np.argmin(energy)) * frame + frame // 2
        pieces.append(audio[start:cut])
        start = cut
    pieces.append(audio[start:])
    return pieces


def transcribe(lm: LoadedModel, audio: str | Path | np.ndarray, **gen: Any) -> str:
    """Transcript of one clip (file path, or float32 mono samples at 16 kHz). Greedy."""
    return transcribe_batch(lm, [audio], batch_size=8, **gen)[0]


def transcribe_batch(lm: LoadedModel, audios: list, batch_size: int = 8, **gen: Any) -> list[str]:
    """Transcripts of many clips, ``batch_size`` windows per forward pass. Clips longer than
    30 s are split and their pieces joined; an empty or silent-length clip is a DataError."""
    import torch  # noqa: PLC0415 - seconds to import; the UI imports this module

    _require(lm, "speech")
    pieces: list[np.ndarray] = []
    owner: list[int] = []
    for i, a in enumerate(audios):
        arr, name = _as_audio(a)
        if arr.size < SAMPLE_RATE // 100:  # < 10 ms: nothing Whisper could hear
            raise DataError("audio is empty or shorter than 10 ms", file=name)
        for p in split_long(arr):
            pieces.append(p)
            owner.append(i)
    fe = lm.processor.feature_extractor
    texts: list[str] = []
    for i in range(0, len(pieces), max(1, batch_size)):
        feats = fe(pieces[i:i + batch_size], sampling_rate=SAMPLE_RATE, return_tensors="pt")
        x = feats.input_features.to(lm.device, dtype=lm.dtype)
        with torch.inference_mode():
            ids = lm.model.generate(input_features=x, **gen)
        texts.extend(t.strip() for t in lm.processor.batch_decode(ids, skip_special_tokens=True))
    joined = [""] * len(audios)
    for text, i in zip(texts, owner):
        joined[i] = f"{joined[i]} {text}".strip() if text else joined[i]
    return joined
