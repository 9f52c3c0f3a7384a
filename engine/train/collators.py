"""Batch collators: pad each batch only to its own longest member (dynamic padding).

They also count the real (non-pad) tokens/samples they hand out, which the metrics
callback turns into tokens_per_s / samples_per_s (dataloader workers are 0, so the count
lives in the training process).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers.modeling_outputs import BaseModelOutput

from engine.audio import load_audio

IGNORE = -100


class Counter:
    def __init__(self) -> None:
        self.tokens = 0
        self.samples = 0


def _pad(seqs: list[list[int]], value: int, multiple: int = 8) -> torch.Tensor:
    n = max(len(s) for s in seqs)
    n = ((n + multiple - 1) // multiple) * multiple
    return torch.tensor([list(s) + [value] * (n - len(s)) for s in seqs], dtype=torch.long)


class TextCollator:
    """input_ids / attention_mask / labels for causal-LM SFT."""

    def __init__(self, pad_id: int, counter: Counter | None = None):
        self.pad_id = pad_id
        self.counter = counter or Counter()

    def __call__(self, feats: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [f["input_ids"] for f in feats]
        input_ids = _pad(ids, self.pad_id)
        mask = _pad([[1] * len(s) for s in ids], 0)
        labels = _pad([f["labels"] for f in feats], IGNORE)
        self.counter.tokens += int(mask.sum())
        self.counter.samples += len(feats)
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


class SpeechCollator:
    """Whisper decoder inputs plus either cached encoder outputs or log-mel features.

    ``decoder_input_ids`` = prompt + text; ``labels`` = the same shifted left, with the
    positions that would predict prompt tokens masked, so the loss is on the transcript
    (and end-of-text) only.
    """

    def __init__(self, pad_id: int, feature_extractor: Any = None, counter: Counter | None = None):
        self.pad_id = pad_id
        self.fe = feature_extractor
        self.counter = counter or Counter()

    def __call__(self, feats: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {
            "decoder_input_ids": _pad([f["decoder_input_ids"] for f in feats], self.pad_id),
            "labels": _pad([f["labels"] for f in feats], IGNORE),
        }
        if feats[0].get("cache"):
            hidden = torch.stack([load_cached(f["cache"]) for f in feats]).float()
            batch["encoder_outputs"] = BaseModelOutput(last_hidden_state=hidden)
        else:
            audio = [load_audio(f["audio"]) for f in feats]
            batch["input_features"] = self.fe(audio, sampling_rate=16000, return_tensors="pt").input_features
        self.counter.samples += len(feats)
        self.counter.tokens += int((batch["labels"] != IGNORE).sum())
        return batch


def load_cached(path: str | Path) -> torch.Tensor:
    return load_file(str(path))["h"]
