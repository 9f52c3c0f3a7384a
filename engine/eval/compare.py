"""Base vs tuned with ONE copy of the base weights.

A run's adapter is attached to the base model once (a ``PeftModel``); the base pass runs
inside ``model.disable_adapter()``, which bypasses the LoRA layers without touching their
weights, and the tuned pass runs with them on. So the base side is bit-for-bit the base
model, and memory holds one model, not two. The toggle is model-wide state, so callers
serialise passes (the UI holds ``ctx.model_lock``; a job is single-threaded).

A full fine-tune (run/model/ instead of run/adapter/) has no adapter to toggle; then the
tuned side is a second model (documented fallback, twice the memory).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from engine.errors import ModelError
from engine.eval.metrics import WER_NORMALISER, utterance_terms, wer, word_diff
from engine.infer import answer, stream_answer, transcribe
from engine.models.loader import LoadedModel, get_cached, load_model


@dataclass
class Pair:
    """What a comparison runs on: ``base`` alone, or base + tuned."""

    base: LoadedModel
    tuned_model: LoadedModel | None = None   # only for full fine-tunes (a second model)

    @property
    def kind(self) -> str:
        return self.base.kind

    @property
    def has_tuned(self) -> bool:
        return self.tuned_model is not None or _is_peft(self.base.model)

    @contextlib.contextmanager
    def side(self, which: str) -> Iterator[LoadedModel]:
        """Context in which the returned LoadedModel behaves as ``which`` ("base"/"tuned")."""
        if which == "base":
            if _is_peft(self.base.model):
                with self.base.model.disable_adapter():
                    yield self.base
            else:
                yield self.base
        elif which == "tuned":
            if self.tuned_model is not None:
                yield self.tuned_model
            elif _is_peft(self.base.model):
                yield self.base
            else:
                raise ModelError("This comparison has no tuned model (pick a run with an adapter).")
        else:
            raise ValueError(f"side must be 'base' or 'tuned', not {which!r}")


def _is_peft(model: Any) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def run_weights(run) -> tuple[str, Path | None, Path | None]:
    """(base model name, adapter dir or None, full-model dir or None) of a training run."""
    cfg = run.config()
    if run.rehearsal_path.is_file():
        raise ModelError(f"Run {run.id} is a rehearsal: its weights are random, at the real model's shapes, and "
                         "only measure memory and speed; there is nothing to compare or evaluate.",
                         hint="Pick a run trained on real weights.")
    adapter = run.adapter_dir if (run.adapter_dir / "adapter_config.json").is_file() else None
    full = run.model_dir if (run.model_dir / "config.json").is_file() else None
    if adapter is None and full is None:
        raise ModelError(f"Run {run.id} has no trained adapter yet ({run.adapter_dir} is empty).",
                         hint="Wait for training to complete, or compare the base model alone.")
    return cfg.model.name, adapter, full


def open_pair(model: str, *, adapter: str | Path | None = None, full_model: str | Path | None = None,
              quant: str = "none", cached: bool = False, progress=None) -> Pair:
    """Load a comparison pair. ``cached`` uses the UI's one-slot model cache."""
    load = get_cached if cached else load_model
    base = load(model, quant=quant, adapter=str(adapter) if adapter else None, progress=progress)
    tuned = None
    if full_model is not None and adapter is None:
        tuned = load_model(str(full_model), quant=quant)
    return Pair(base=base, tuned_model=tuned)


def open_run_pair(run, *, cached: bool = False, progress=None) -> Pair:
    """The pair of a training run: its base model with its adapter attached."""
    name, adapter, full = run_weights(run)
    quant = run.config().model.quantization
    return open_pair(name, adapter=adapter, full_model=full, quant=quant, cached=cached, progress=progress)


def sides(pair: Pair) -> tuple[str, ...]:
    return ("base", "tuned") if pair.has_tuned else ("base",)


def answer_both(pair: Pair, question: str, **gen: Any) -> dict[str, str]:
    """Base and tuned answers to one question (same generation settings for both)."""
    out = {}
    for s in sides(pair):
        with pair.side(s) as lm:
            out[s] = answer(lm, question, **gen)
    return out


def stream_both(pair: Pair, question: str, **gen: Any) -> Iterator[dict[str, str]]:
    """Yield {"base": text, "tuned": text} as each side's answer grows (base first, then
    tuned: the adapter toggle cannot change in the middle of a generation)."""
    out = {s: "" for s in sides(pair)}
    for s in sides(pair):
        with pair.side(s) as lm:
            for text in stream_answer(lm, question, **gen):
                out[s] = text
                yield dict(out)
    yield dict(out)


def transcribe_both(pair: Pair, audio, reference: str | None = None, terms=(), *,
                    normaliser: str = WER_NORMALISER, **gen: Any) -> dict:
    """Base and tuned transcripts of one clip and, when a reference is given, each side's
    WER and word diff (after ``normaliser``, named in the result) and term hits/misses."""
    out: dict[str, Any] = {"reference": reference}
    for s in sides(pair):
        with pair.side(s) as lm:
            text = transcribe(lm, audio, **gen)
        item: dict[str, Any] = {"text": text}
        if reference:
            hits, misses = utterance_terms(reference, text, terms)
            item.update(wer=wer(reference, text, normaliser=normaliser), normaliser=normaliser,
                        diff=word_diff(reference, text, normaliser=normaliser), hits=hits, misses=misses)
        out[s] = item
    return out
