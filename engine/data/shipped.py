"""How each shipped set is built from its text under ``assets/datasets/``.

Dictation voices: every training sentence is spoken by all default voices (4x the
training clips, and voice variety is what makes the LoRA learn the words rather than one
voice); each validation/test sentence by one voice, rotating, so evaluation stays cheap
on a CPU while still covering every voice.
"""

from __future__ import annotations

from pathlib import Path

from engine.data.datasets import BUILD_VERSION, SHIPPED, SHIPPED_DIR, read_terms, source_hash, write_dataset
from engine.data.readers import read_table
from engine.data.split import DEFAULT_SEED, split_examples
from engine.data.synth import read_sentences, synthesize_items
from engine.errors import DataError
from engine.progress import Progress, report
from engine.tts import DEFAULT_VOICES


def _speech(name: str, out: Path, *, held_out_only: bool, limit: int | None,
            progress: Progress | None) -> None:
    src = SHIPPED_DIR / SHIPPED[name].source
    sentences = read_sentences(src)[:limit]
    terms_file = src.parent / "terms.txt"
    terms = read_terms(terms_file) if terms_file.exists() else []
    voices = DEFAULT_VOICES
    if held_out_only:  # a check set: everything is test
        by_split = {"test": sentences}
    else:
        by_split = split_examples(sentences, seed=DEFAULT_SEED, cover_terms=terms or None)
    items, split_of = [], {}
    for split, sents in by_split.items():
        for i, s in enumerate(sents):
            chosen = voices if split == "train" else (voices[i % len(voices)],)
            for v in chosen:
                items.append((s, v))
                split_of[(s["id"], v.label)] = split
    examples = synthesize_items(items, out / "audio", rel_to=out, progress=progress)
    splits: dict[str, list[dict]] = {s: [] for s in by_split}
    for ex in examples:
        splits[split_of[(ex["meta"]["sentence_id"], ex["meta"]["voice"])]].append(ex)
    # write_dataset wants absolute paths to decide what is inside the folder
    for exs in splits.values():
        for ex in exs:
            ex["audio"] = str(out / ex["audio"])
    write_dataset(out, splits, name=name, kind="speech", seed=None if held_out_only else DEFAULT_SEED,
                  source=f"assets/datasets/{SHIPPED[name].source}", terms=terms,
                  extra={"build_version": BUILD_VERSION, "source_hash": source_hash(name),
                         "voices": [v.label for v in voices],
                         "synthetic": True, "grouped_by": "meta.sentence_id",
                         "sentences": {s: len(v) for s, v in by_split.items()}})


def _text(name: str, out: Path, *, preset: str, stratify: str | None, limit: int | None) -> None:
    src = SHIPPED_DIR / SHIPPED[name].source
    res = read_table(src, preset=preset)
    if res.errors:  # shipped data is ours: a bad row is a bug to fix, not to skip
        raise res.errors[0].to_error()
    examples = res.examples[:limit]
    splits = split_examples(examples, seed=DEFAULT_SEED, stratify=stratify)
    write_dataset(out, splits, name=name, kind="text", seed=DEFAULT_SEED,
                  source=f"assets/datasets/{SHIPPED[name].source}",
                  extra={"build_version": BUILD_VERSION, "source_hash": source_hash(name), "synthetic": True,
                         "stratified_by": stratify})


def build_shipped(name: str, out: Path, *, limit: int | None = None, progress: Progress | None = None) -> None:
    """Write shipped set ``name`` as a dataset folder into ``out`` (``limit``: first N
    sentences/items only, for quick tests)."""
    if name == "med-dictation":
        _speech(name, out, held_out_only=False, limit=limit, progress=progress)
    elif name == "general-english":
        _speech(name, out, held_out_only=True, limit=limit, progress=progress)
    elif name == "med-qa":
        _text(name, out, preset="text", stratify=None, limit=limit)
    elif name == "pubmedqa-synth":
        _text(name, out, preset="pubmedqa", stratify="meta.label", limit=limit)
    else:
        raise DataError(f"unknown shipped dataset '{name}'", field="dataset")
    report(progress, 1.0, f"built {name}")
