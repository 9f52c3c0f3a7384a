"""Text SFT examples: chat template applied, loss on the response tokens only.

Each example becomes ``input_ids`` (prompt + response, as the chat template lays them out)
and ``labels`` (-100 over the prompt), plus a ``length`` column that the Trainer's
length-grouped sampler uses so batches are padded to similar lengths (dynamic padding in
:mod:`engine.train.collators`; padding to a fixed 512 was measured 5x slower here).
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from engine.errors import DataError
from engine.runs import LOG
from engine.train.collators import IGNORE  # one definition: what the collators pad labels with

#: Used when a tokenizer has no chat template (base models such as Llama-2-7b-hf, phi-2).
PLAIN_TEMPLATE = "### Question:\n{prompt}\n\n### Answer:\n"


def _messages(prompt: str, system: str) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": prompt}]


def prompt_text(tokenizer: Any, prompt: str, system: str = "") -> str:
    """The text the model sees before its answer (generation prompt included)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(_messages(prompt, system), tokenize=False, add_generation_prompt=True)
    return (system + "\n\n" if system else "") + PLAIN_TEMPLATE.format(prompt=prompt)


def encode_example(tokenizer: Any, ex: dict, max_length: int, system: str = "") -> dict[str, list[int]] | None:
    """Token ids + response-only labels, or None when truncation leaves no response token."""
    head = prompt_text(tokenizer, ex["prompt"], system)
    if getattr(tokenizer, "chat_template", None):
        full = tokenizer.apply_chat_template(
            _messages(ex["prompt"], system) + [{"role": "assistant", "content": ex["response"]}],
            tokenize=False)
        if not full.startswith(head):  # templates that rewrite earlier turns: fall back to concat
            full = head + ex["response"] + (tokenizer.eos_token or "")
    else:
        full = head + ex["response"] + (tokenizer.eos_token or "")
    # Tokenize the prompt on its own to find where the response starts; templates already
    # carry their special tokens, so none are added here.
    p_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    n_prompt = len(p_ids) if ids[:len(p_ids)] == p_ids else _common_prefix(ids, p_ids)
    ids = ids[:max_length]
    labels = [IGNORE] * min(n_prompt, len(ids)) + ids[n_prompt:]
    if all(t == IGNORE for t in labels):
        return None
    return {"input_ids": ids, "labels": labels, "length": len(ids)}


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def build_text_dataset(tokenizer: Any, rows: list[dict], max_length: int, system: str, source: str):
    """A datasets.Dataset of encoded rows; DataError (file + row) for unusable rows."""
    enc, skipped = [], 0
    for i, ex in enumerate(rows, start=1):
        for key in ("prompt", "response"):
            if not isinstance(ex.get(key), str) or not ex[key].strip():
                raise DataError("missing or empty text", file=source, line=i, field=key)
        e = encode_example(tokenizer, ex, max_length, system)
        if e is None:
            skipped += 1
            continue
        enc.append(e)
    if not enc:
        raise DataError(f"no usable examples: all {len(rows)} prompts are longer than train.max_length "
                        f"({max_length} tokens)", file=source, hint="Raise train.max_length.")
    if skipped:
        LOG.info(f"skipped {skipped} example(s) of {source} whose prompt fills max_length")
    return Dataset.from_list(enc)
