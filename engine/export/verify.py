"""Fixed-input agreement checks: merged vs base+adapter, ONNX vs PyTorch.

Every model under comparison is wrapped in a *scorer* (``prepare(x) -> ctx`` once per input,
``logits(ctx, ids) -> float32 [1, L, V]``). The reference decodes greedily with one loop that
recomputes the whole sequence each step (no KV cache, so PyTorch and ONNX graphs without a
cache are driven identically). The model under test is then scored teacher-forced on the
reference's sequence: max |logit diff| over every position, and greedy agreement as
"same argmax at every generated position", which is equivalent to identical greedy output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from engine.tts import synthesize

#: Fixed inputs. Medical-flavoured on purpose: that is where a broken merge would show first.
TEXT_PROMPTS = (
    "What is the first-line treatment for uncomplicated hypertension in adults?",
    "Is metformin contraindicated in severe renal impairment? Answer briefly.",
    "Summarise: 58-year-old with crushing chest pain radiating to the left arm for 30 minutes.",
)
SPEECH_SENTENCES = (
    "The patient was started on metoprolol twenty five milligrams twice daily.",
    "Levetiracetam was increased to one gram for breakthrough seizures.",
)
MAX_NEW_TOKENS = 12

#: Max |logit difference| accepted for merged vs base+adapter, by the merged weights' dtype.
#: float32 merges differ only by summation order (~1e-5 observed); half precision rounds each
#: merged weight once, which moves logits by a few ulps of their magnitude (~10-30).
MERGE_TOLERANCE = {"float32": 1e-3, "float16": 0.1, "bfloat16": 0.5}
#: Max |logit difference| accepted for ONNX Runtime (float32) vs PyTorch (float32).
ONNX_TOLERANCE = 1e-3


@dataclass
class Scorer:
    """A model seen as ``prepare(input) -> ctx`` and ``logits(ctx, ids[1, L]) -> np.float32[1, L, V]``."""

    prepare: Callable[[Any], Any]
    logits: Callable[[Any, np.ndarray], np.ndarray]


@dataclass
class Case:
    """One fixed input: the model input (None for text) and the token ids decoding starts from."""

    label: str
    x: Any
    start_ids: list[int]


def torch_text_scorer(model: torch.nn.Module) -> Scorer:
    dev = next(model.parameters()).device

    def logits(_ctx: Any, ids: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(ids, dtype=torch.long, device=dev)
        with torch.no_grad():
            out = model(input_ids=t, attention_mask=torch.ones_like(t), use_cache=False).logits
        return out.float().cpu().numpy()

    return Scorer(prepare=lambda x: None, logits=logits)


def torch_speech_scorer(model: torch.nn.Module) -> Scorer:
    p = next(model.parameters())

    def prepare(features: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return model.get_encoder()(torch.as_tensor(features, device=p.device, dtype=p.dtype)).last_hidden_state

    def logits(enc: torch.Tensor, ids: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(ids, dtype=torch.long, device=p.device)
        with torch.no_grad():
            out = model(encoder_outputs=(enc,), decoder_input_ids=t, use_cache=False).logits
        return out.float().cpu().numpy()

    return Scorer(prepare=prepare, logits=logits)


def greedy(scorer: Scorer, case: Case, eos_ids: set[int], max_new_tokens: int = MAX_NEW_TOKENS) -> list[int]:
    """Greedy continuation of ``case.start_ids`` (the new token ids only)."""
    ctx = scorer.prepare(case.x)
    ids = list(case.start_ids)
    new: list[int] = []
    for _ in range(max_new_tokens):
        nxt = int(np.argmax(scorer.logits(ctx, np.array([ids], dtype=np.int64))[0, -1]))
        new.append(nxt)
        ids.append(nxt)
        if nxt in eos_ids:
            break
    return new


@dataclass
class Reference:
    """The reference model's greedy tokens and teacher-forced logits on each fixed case."""

    cases: list[Case]
    new_tokens: list[list[int]]
    logits: list[np.ndarray]
    max_new_tokens: int


def record(ref: Scorer, cases: Sequence[Case], eos_ids: set[int],
           max_new_tokens: int = MAX_NEW_TOKENS) -> Reference:
    """Run the reference once. Kept apart from :func:`check` because merging is in place:
    the base+adapter model no longer exists when the merged one is checked."""
    new_tokens, logits = [], []
    for case in cases:
        new = greedy(ref, case, eos_ids, max_new_tokens)
        seq = np.array([list(case.start_ids) + new], dtype=np.int64)
        new_tokens.append(new)
        logits.append(ref.logits(ref.prepare(case.x), seq))
    return Reference(list(cases), new_tokens, logits, max_new_tokens)


def check(reference: Reference, other: Scorer, eos_ids: set[int], *, tolerance: float,
          decode: Callable[[list[int]], str] | None = None) -> dict:
    """Max |logit diff| vs the reference, and whether ``other`` decodes greedily to the same tokens.

    One teacher-forced pass per case does both: ``other``'s greedy output equals the
    reference's exactly when its argmax at every generated position (given the same prefix)
    is the reference's token, so the first position where they part is where its greedy
    output would part too. That is a forward pass instead of a whole decoding loop, which is
    what makes this affordable on 8B models.
    """
    del eos_ids  # stopping is decided by the tokens themselves, which are compared one by one
    rows, worst = [], 0.0
    for case, ref_new, ref_logits in zip(reference.cases, reference.new_tokens, reference.logits):
        seq = np.array([list(case.start_ids) + ref_new], dtype=np.int64)
        logits = other.logits(other.prepare(case.x), seq)
        diff = float(np.max(np.abs(ref_logits - logits)))
        worst = max(worst, diff)
        n0 = len(case.start_ids)
        picks = [int(t) for t in np.argmax(logits[0, n0 - 1:n0 - 1 + len(ref_new)], axis=-1)]
        parted = next((k for k, (a, b) in enumerate(zip(picks, ref_new)) if a != b), None)
        other_new = ref_new if parted is None else ref_new[:parted] + [picks[parted]]
        rows.append({
            "input": case.label,
            "max_abs_logit_diff": diff,
            "greedy_identical": parted is None,
            "first_difference_at": parted,
            "reference_tokens": ref_new,
            "other_tokens": other_new,
            **({"reference_text": decode(ref_new), "other_text": decode(other_new)} if decode else {}),
        })
    identical = all(r["greedy_identical"] for r in rows)
    return {
        "max_abs_logit_diff": worst,
        "tolerance": tolerance,
        "greedy_identical": identical,
        "passed": bool(identical and worst <= tolerance),
        "max_new_tokens": reference.max_new_tokens,
        "cases": rows,
    }


# ---------------------------------------------------------------------------- fixed inputs

def text_cases(tokenizer: Any) -> list[Case]:
    """The fixed prompts, through the chat template when the tokenizer has one."""
    cases = []
    for q in TEXT_PROMPTS:
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                 add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(q)["input_ids"]
        cases.append(Case(label=q, x=None, start_ids=list(ids)))
    return cases


def text_eos(tokenizer: Any, model_config: Any = None, generation_config: Any = None) -> set[int]:
    eos: set[int] = set()
    for src in (getattr(generation_config, "eos_token_id", None), getattr(model_config, "eos_token_id", None),
                getattr(tokenizer, "eos_token_id", None)):
        if isinstance(src, int):
            eos.add(src)
        elif isinstance(src, (list, tuple)):
            eos.update(int(i) for i in src)
    return eos


def speech_cases(processor: Any, model_config: Any, generation_config: Any = None) -> list[Case]:
    """The fixed sentences spoken by eSpeak NG (deterministic), as log-mel features."""
    prefix = whisper_prefix(model_config, generation_config)
    cases = []
    for sentence in SPEECH_SENTENCES:
        audio = synthesize(sentence)
        feats = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="np").input_features
        cases.append(Case(label=sentence, x=feats.astype(np.float32), start_ids=prefix))
    return cases


def whisper_prefix(model_config: Any, generation_config: Any = None) -> list[int]:
    """Decoder prompt Whisper's own generate() would use for English transcription, no timestamps."""
    gc = generation_config
    start = getattr(gc, "decoder_start_token_id", None) or model_config.decoder_start_token_id
    prefix = [int(start)]
    if gc is not None and getattr(gc, "is_multilingual", False):
        lang = (getattr(gc, "lang_to_id", None) or {}).get("<|en|>")
        task = (getattr(gc, "task_to_id", None) or {}).get("transcribe")
        prefix += [int(t) for t in (lang, task) if t is not None]
    no_ts = getattr(gc, "no_timestamps_token_id", None) if gc is not None else None
    if no_ts is not None:
        prefix.append(int(no_ts))
    return prefix


def speech_eos(model_config: Any, generation_config: Any = None) -> set[int]:
    return text_eos(None, model_config, generation_config)


def fixed_inputs(kind: str, processor: Any, model: torch.nn.Module) -> tuple[list[Case], set[int], Callable]:
    """(cases, eos ids, decode) for a text or speech model and its tokenizer/processor."""
    gc = getattr(model, "generation_config", None)
    if kind == "speech":
        tok = processor.tokenizer
        cases, eos = speech_cases(processor, model.config, gc), speech_eos(model.config, gc)
    else:
        tok = processor
        cases, eos = text_cases(tok), text_eos(tok, model.config, gc)
    return cases, eos, (lambda ids: tok.decode(ids, skip_special_tokens=True))


def scorer_for(kind: str, model: torch.nn.Module) -> Scorer:
    return torch_speech_scorer(model) if kind == "speech" else torch_text_scorer(model)
