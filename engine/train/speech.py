"""Whisper-family seq2seq LoRA: decoder targets, the encoder-output cache, and WER during eval.

With the encoder frozen (no encoder LoRA) its output for a clip never changes, so it is
computed once and stored (fp16 safetensors under ``<workspace>/cache/encoder/``); training
then runs the decoder only (its step: engine/train/speech_step.py). Measured on 2 CPU cores,
whisper tiny.en, batch 8: 0.70 s/step on the cache versus 4.6 s/step with the encoder in the
loop (bench/speech_train_throughput.py).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from safetensors.torch import save_file
from transformers import TrainerCallback
from transformers.modeling_outputs import BaseModelOutput

from engine.audio import WHISPER_MAX_SECONDS, audio_info, load_audio
from engine.errors import DataError
from engine.eval.metrics import term_recall, wer  # the Evaluate tab's definitions
from engine.progress import Progress, report
from engine.train.collators import IGNORE, load_cached  # one definition: what the collators pad labels with
from engine.train.speech_step import CACHE_ARG


def prompt_ids(processor: Any, model: Any) -> list[int]:
    """Decoder prompt: <|startoftranscript|> [<|en|> <|transcribe|>] <|notimestamps|>."""
    tok = processor.tokenizer
    multilingual = model.config.vocab_size >= 51865
    if multilingual:
        tok.set_prefix_tokens(language="en", task="transcribe", predict_timestamps=False)
    else:
        tok.set_prefix_tokens(predict_timestamps=False)
    return list(tok.prefix_tokens)


def encode_target(processor: Any, prefix: list[int], text: str, max_length: int) -> dict[str, list[int]]:
    tok = processor.tokenizer
    body = tok(" " + text.strip(), add_special_tokens=False)["input_ids"]
    seq = (prefix + body)[: max_length - 1] + [tok.eos_token_id]
    # labels[i] is the token after decoder_input_ids[i]; the ones predicting prompt tokens
    # (all but the last prompt position) are masked, so the loss is on the transcript only.
    labels = seq[1:]
    labels = [IGNORE] * (len(prefix) - 1) + labels[len(prefix) - 1:]
    return {"decoder_input_ids": seq[:-1], "labels": labels, "length": len(seq) - 1}


def _model_key(model_path: str, quant: str) -> str:
    p = Path(model_path)
    stamp = ""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (p / name).exists():
            st = (p / name).stat()
            stamp = f"{st.st_size}-{st.st_mtime_ns}"
    return hashlib.sha1(f"{p.resolve() if p.exists() else model_path}|{stamp}|{quant}".encode()).hexdigest()[:16]


def _clip_key(audio: str) -> str:
    st = os.stat(audio)
    return hashlib.sha1(f"{os.path.abspath(audio)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]


@torch.no_grad()
def build_encoder_cache(model: Any, processor: Any, audios: list[str], cache_dir: Path,
                        progress: Progress | None = None, batch_size: int = 8) -> dict[str, str]:
    """Encoder outputs for every clip (computed once, reused by later runs); {audio: file}."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = {a: str(cache_dir / f"{_clip_key(a)}.safetensors") for a in audios}
    todo = [a for a in dict.fromkeys(audios) if not Path(out[a]).exists()]
    encoder = model.get_encoder()
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        try:
            audio = [load_audio(a) for a in chunk]
        except Exception as err:  # noqa: BLE001 - name the clip that broke
            raise DataError(f"cannot read audio: {err}", file=str(chunk)) from None
        feats = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
        dtype = next(encoder.parameters()).dtype
        hidden = encoder(feats.to(device=device, dtype=dtype if dtype.is_floating_point else torch.float32)
                         ).last_hidden_state
        for a, h in zip(chunk, hidden):
            tmp = out[a] + f".{os.getpid()}.tmp"
            save_file({"h": h.to(torch.float16).contiguous().cpu()}, tmp)
            os.replace(tmp, out[a])  # atomic: a killed job leaves no half file behind
        report(progress, min(1.0, (i + len(chunk)) / max(1, len(todo))),
               f"encoder cache {i + len(chunk)}/{len(todo)} clips")
    model.train(was_training)
    return out


def build_speech_dataset(processor: Any, prefix: list[int], rows: list[dict], max_length: int,
                         cache: dict[str, str] | None, source: str):
    items, too_long = [], []
    for i, ex in enumerate(rows, start=1):
        if not isinstance(ex.get("text"), str) or not ex["text"].strip():
            raise DataError("missing or empty transcript", file=source, line=i, field="text")
        if not ex.get("audio") or not Path(ex["audio"]).is_file():
            raise DataError(f"audio file not found: {ex.get('audio')}", file=source, line=i, field="audio")
        seconds = ex.get("duration") or audio_info(ex["audio"])["duration"]
        if seconds > WHISPER_MAX_SECONDS + 0.5:
            # Whisper hears only the first 30 s, so the whole transcript would teach it to
            # invent the rest: such clips are left out, and the log says which.
            too_long.append(f"line {i} ({seconds:.0f} s)")
            continue
        item = encode_target(processor, prefix, ex["text"], max_length)
        item["audio"], item["text"] = ex["audio"], ex["text"]
        item["cache"] = cache[ex["audio"]] if cache else ""
        items.append(item)
    if too_long:
        print(f"[medtune] left out {len(too_long)} clip(s) of {source} longer than Whisper's "
              f"{WHISPER_MAX_SECONDS:.0f} s window: {', '.join(too_long[:10])}"
              f"{' ...' if len(too_long) > 10 else ''}. Cut them into shorter clips to train on them.", flush=True)
    if not items:
        raise DataError(f"no usable clips: all {len(rows)} are longer than {WHISPER_MAX_SECONDS:.0f} s",
                        file=source, field="audio", hint="Cut the audio into clips of at most 30 s.")
    return Dataset.from_list(items)


@torch.no_grad()
def greedy_transcribe(model: Any, processor: Any, prefix: list[int], items: list[dict], max_new_tokens: int,
                      batch_size: int = 16) -> list[str]:
    """Greedy decoding from cached encoder outputs (or audio), the same for base and tuned."""
    eos = processor.tokenizer.eos_token_id
    device = next(model.parameters()).device
    texts: list[str] = []
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        if chunk[0].get("cache"):
            hidden = torch.stack([load_cached(it["cache"]) for it in chunk]).float().to(device)
        else:
            feats = processor.feature_extractor([load_audio(it["audio"]) for it in chunk], sampling_rate=16000,
                                                return_tensors="pt").input_features.to(device)
            hidden = model.get_encoder()(feats).last_hidden_state
        enc = BaseModelOutput(last_hidden_state=hidden)
        ids = torch.tensor([prefix] * len(chunk), device=device)
        done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
        past, step_in = None, ids
        for _ in range(max_new_tokens):
            out = model(encoder_outputs=enc, decoder_input_ids=step_in, use_cache=True, **{CACHE_ARG: past})
            past = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            ids = torch.cat([ids, nxt[:, None]], 1)
            done |= nxt == eos
            if bool(done.all()):
                break
            step_in = nxt[:, None]
        texts += processor.tokenizer.batch_decode(ids[:, len(prefix):], skip_special_tokens=True)
    return [t.strip() for t in texts]


def wer_and_recall(refs: list[str], hyps: list[str], terms: list[str]) -> tuple[float, float | None]:
    """Corpus WER after the evaluation's default normaliser (Whisper's, as the Evaluate tab's
    and the curves' label say), and the share of reference medical terms recovered."""
    return float(wer(refs, hyps)), term_recall(refs, hyps, terms)[0]


class SpeechEvalCallback(TrainerCallback):
    """Adds eval_wer / eval_term_recall to each evaluation (runs before MetricsCallback)."""

    def __init__(self, processor: Any, prefix: list[int], items: list[dict], refs: list[str], terms: list[str],
                 max_new_tokens: int):
        self.processor, self.prefix, self.items, self.refs, self.terms = processor, prefix, items, refs, terms
        self.max_new_tokens = max_new_tokens

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kw):
        if not self.items or metrics is None or model is None:
            return
        was = model.training
        model.eval()
        hyps = greedy_transcribe(model, self.processor, self.prefix, self.items, self.max_new_tokens)
        model.train(was)
        w, rec = wer_and_recall(self.refs, hyps, self.terms)
        metrics["eval_wer"] = round(w, 4)
        if rec is not None:
            metrics["eval_term_recall"] = round(rec, 4)
        print(f"[medtune] step {state.global_step}: WER {w:.3f}"
              + (f", term recall {rec:.3f}" if rec is not None else "") + f"; e.g. {hyps[0]!r}", flush=True)
