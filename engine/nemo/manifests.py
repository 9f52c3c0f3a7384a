"""Workbench speech dataset folder -> NeMo manifest + Lhotse ``input_cfg`` for speechlm2.

A NeMo manifest is JSON lines ``{"audio_filepath", "duration", "text"}``. speechlm2 reads it
through a Lhotse ``input_cfg`` entry of type ``lhotse_as_conversation``, which turns each
utterance into a chat: [user: <context> <audio>] -> [assistant: text]. The ``context`` tag
is the instruction the model sees before the audio.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from engine.atomic import write_text
from engine.audio import audio_info
from engine.errors import DataError

#: NeMo's audio placeholder token (what Canary-Qwen-2.5B was trained with).
AUDIO_LOCATOR_TAG = "<|audioplaceholder|>"
#: The instruction Canary-Qwen-2.5B is prompted with for plain transcription.
DEFAULT_PROMPT = "Transcribe the following:"


def manifest_lines(rows: Iterable[dict], *, source: str = "<rows>") -> list[dict]:
    """Normalised speech examples -> manifest entries, checking every row.

    ``source`` names the split file in errors; the line number is the row's position (1-based),
    which is its line in the split's jsonl.
    """
    out = []
    for i, row in enumerate(rows, start=1):
        audio, text, dur = row.get("audio"), row.get("text"), row.get("duration")
        if not audio or not Path(str(audio)).is_file():
            raise DataError(f"audio file not found: {audio!r}", file=source, line=i, field="audio")
        if not isinstance(text, str) or not text.strip():
            raise DataError("empty transcript", file=source, line=i, field="text")
        if dur is None:
            dur = audio_info(audio)["duration"]
        try:
            dur = float(dur)
        except (TypeError, ValueError):
            raise DataError(f"duration must be a number, got {dur!r}", file=source, line=i,
                            field="duration") from None
        if dur <= 0:
            raise DataError(f"duration must be > 0, got {dur}", file=source, line=i, field="duration")
        out.append({"audio_filepath": str(Path(str(audio)).resolve()), "duration": round(dur, 4),
                    "text": text.strip()})
    return out


def write_manifest(rows: Iterable[dict], path: str | Path, *, source: str = "<rows>") -> Path:
    """Write rows as a NeMo manifest at ``path`` (atomically); returns the path."""
    lines = manifest_lines(rows, source=source)
    if not lines:
        raise DataError("no examples to write", file=source)
    write_text(path, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    return Path(path)


def dataset_manifests(ds: Any, splits: Iterable[str], out_dir: str | Path,
                      limits: dict[str, int] | None = None) -> dict[str, Path]:
    """Write ``<out_dir>/<split>.json`` for each split of a workbench DatasetDir.

    ``limits`` caps a split's rows (0 = all), matching DataConfig.max_*_samples.
    """
    if getattr(ds, "kind", "speech") != "speech":
        raise DataError(f"dataset {ds.name} holds {ds.kind} examples; a NeMo speech model needs a speech "
                        f"dataset", file=str(ds.path), field="kind")
    out = {}
    for split in splits:
        rows = ds.load_split(split)
        n = (limits or {}).get(split, 0)
        rows = rows[:n] if n else rows
        out[split] = write_manifest(rows, Path(out_dir) / f"{split}.json",
                                    source=str(Path(ds.path) / f"{split}.jsonl"))
    return out


def input_cfg(manifest: str | Path, *, prompt: str = DEFAULT_PROMPT,
              audio_locator_tag: str = AUDIO_LOCATOR_TAG) -> list[dict]:
    """One ``lhotse_as_conversation`` entry reading a NeMo manifest with ``prompt`` as context."""
    return [{"type": "lhotse_as_conversation", "manifest_filepath": str(manifest),
             "audio_locator_tag": audio_locator_tag, "tags": {"context": prompt}}]


def data_config(train_manifest: str | Path, val_manifest: str | Path | None, *, prompt_format: str,
                batch_size: int, seed: int, prompt: str = DEFAULT_PROMPT,
                audio_locator_tag: str = AUDIO_LOCATOR_TAG, token_equivalent_duration: float = 0.08,
                sample_rate: int = 16_000) -> dict:
    """The ``data`` section NeMo's speechlm2 DataModule reads (train_ds + validation_ds)."""
    common = {"sample_rate": sample_rate, "prompt_format": prompt_format,
              "token_equivalent_duration": token_equivalent_duration, "num_workers": 0}
    cfg: dict[str, Any] = {"train_ds": {
        **common, "input_cfg": input_cfg(train_manifest, prompt=prompt, audio_locator_tag=audio_locator_tag),
        "batch_size": batch_size, "seed": seed, "shuffle": True, "shard_seed": seed,
    }}
    if val_manifest is not None:
        cfg["validation_ds"] = {**common, "batch_size": batch_size, "seed": seed, "datasets": {
            "val": {"input_cfg": input_cfg(val_manifest, prompt=prompt, audio_locator_tag=audio_locator_tag)}}}
    return cfg
