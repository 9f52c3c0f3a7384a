"""Transcription with a SALM (Compare tab, batch evaluation, in-training WER).

The prompt is the same chat the model is trained on: user = "<prompt> <audio>", and the
assistant turn is generated greedily. Audio is read with engine.audio (float32 mono 16 kHz),
so any format the workbench accepts works here too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from engine.audio import load_audio
from engine.errors import ModelError
from engine.models.availability import require_runnable
from engine.nemo.manifests import DEFAULT_PROMPT
from engine.nemo.model import apply_lora, load_salm

#: What an adapter folder holds besides peft's files (see engine.train.nemo).
TRAINABLE_FILE = "trainable.safetensors"
MEDTUNE_FILE = "medtune.json"


@dataclass
class SalmHandle:
    """A loaded SALM ready to transcribe (what the Compare tab caches)."""

    model: Any
    name: str
    prompt: str = DEFAULT_PROMPT
    adapter: str | None = None

    @property
    def device(self):
        return self.model.device


def load_adapter(model, adapter_dir: str | Path) -> dict:
    """Put a trained adapter folder onto a loaded base SALM (LoRA + projection weights)."""
    adapter_dir = Path(adapter_dir)
    meta_file = adapter_dir / MEDTUNE_FILE
    if not (adapter_dir / TRAINABLE_FILE).is_file() or not meta_file.is_file():
        raise ModelError(f"{adapter_dir} is not a NeMo adapter folder (no {TRAINABLE_FILE} / {MEDTUNE_FILE})")
    meta = json.loads(meta_file.read_text())
    apply_lora(model, meta["lora"])
    state = load_file(str(adapter_dir / TRAINABLE_FILE))
    own = dict(model.named_parameters())
    missing = [k for k in state if k not in own]
    if missing:
        raise ModelError(f"adapter {adapter_dir} does not fit this model ({len(missing)} unknown weights, "
                         f"e.g. {missing[0]})", hint=f"It was trained on {meta.get('base_model')}.")
    for k, v in state.items():
        own[k].data.copy_(v.to(own[k].dtype))
    return meta


def load(name_or_dir: str, adapter: str | Path | None = None, *, device: str = "auto",
         dtype: str = "auto") -> SalmHandle:
    """Load a SALM (and optionally a trained adapter) for transcription."""
    require_runnable(name_or_dir, device)
    model = load_salm(name_or_dir, device=device, dtype=dtype)
    prompt = DEFAULT_PROMPT
    if adapter is not None:
        meta = load_adapter(model, adapter)
        prompt = meta.get("prompt", prompt)
    model.eval()
    return SalmHandle(model, name_or_dir, prompt, str(adapter) if adapter else None)


def _audio_batch(audios: list, device) -> tuple[Any, Any]:
    waves = [a.astype(np.float32) if isinstance(a, np.ndarray) else load_audio(a) for a in audios]
    lens = torch.tensor([len(w) for w in waves], dtype=torch.long)
    batch = torch.zeros(len(waves), int(lens.max()), dtype=torch.float32)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)
    return batch.to(device), lens.to(device)


def generate_texts(model, audios: list, *, prompt: str = DEFAULT_PROMPT, max_new_tokens: int = 128) -> list[str]:
    """Greedy transcripts for one batch of audio (paths or float32 16 kHz arrays)."""
    if not audios:
        return []
    audio, lens = _audio_batch(audios, model.device)
    prompts = [[{"role": "user", "content": f"{prompt} {model.audio_locator_tag}"}] for _ in audios]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            ids = model.generate(prompts=prompts, audios=audio,  # float32, as NeMo's own path-based prompts do
                                 audio_lens=lens, max_new_tokens=max_new_tokens, do_sample=False)
    finally:
        model.train(was_training)
    out = []
    for row in ids.cpu().tolist():
        # generate() returns only new tokens when driven by inputs_embeds; drop padding/eos
        row = [t for t in row if t not in (model.text_pad_id, model.text_eos_id)]
        out.append(model.tokenizer.ids_to_text(row).strip())
    return out


def transcribe_batch(handle: SalmHandle, audios: list, batch_size: int = 8, max_new_tokens: int = 128) -> list[str]:
    """Transcripts for many clips, ``batch_size`` at a time, in input order."""
    out: list[str] = []
    for i in range(0, len(audios), batch_size):
        out += generate_texts(handle.model, audios[i: i + batch_size], prompt=handle.prompt,
                              max_new_tokens=max_new_tokens)
    return out


def transcribe(handle: SalmHandle, audio: str | Path | np.ndarray, max_new_tokens: int = 128) -> str:
    return transcribe_batch(handle, [audio], batch_size=1, max_new_tokens=max_new_tokens)[0]
