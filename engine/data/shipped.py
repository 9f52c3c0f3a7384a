"""The shipped sets: what they are, and how each is built from its text under
``assets/datasets/`` into ``<workspace>/datasets/<name>/`` (:func:`ensure_shipped`, once),
synthesizing the speech audio there (shipping the audio would cost ~100 KB per clip against
a 40 MB repository budget).

Dictation voices: every training sentence is spoken by all default voices (4x the
training clips, and voice variety is what makes the LoRA learn the words rather than one
voice); each validation/test sentence by one voice, rotating, so evaluation stays cheap
on a CPU while still covering every voice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from engine.atomic import atomic_dir
from engine.data.folder import write_dataset
from engine.data.readers import read_table, read_terms
from engine.data.schema import SPEECH, TEXT
from engine.data.split import DEFAULT_SEED, split_examples
from engine.data.synth import read_sentences, synthesize_items
from engine.errors import DataError
from engine.progress import Progress, report, scaled
from engine.tts import DEFAULT_VOICES
from engine.workspace import ASSETS, Workspace

SHIPPED_DIR = ASSETS / "datasets"
#: Bump when a shipped set's build changes, so stale workspace copies are rebuilt.
BUILD_VERSION = 1


@dataclass(frozen=True)
class ShippedSet:
    kind: str
    description: str
    source: str  # file under assets/datasets/


SHIPPED: dict[str, ShippedSet] = {
    "med-dictation": ShippedSet(SPEECH, "Synthetic clinical dictation, 4 eSpeak voices, with a medical term list",
                                "med-dictation/sentences.jsonl"),
    "general-english": ShippedSet(SPEECH, "Plain English sentences (checks tuning does not harm ordinary speech)",
                                  "general-english/sentences.jsonl"),
    "med-qa": ShippedSet(TEXT, "Synthetic medical Q/A with structured 'Assessment: ... Plan: ...' answers",
                         "med-qa/qa.jsonl"),
    "pubmedqa-synth": ShippedSet(TEXT, "Synthetic PubMedQA-style items (question, context, yes/no/maybe)",
                                 "pubmedqa-synth/pubmedqa.jsonl"),
}


@contextlib.contextmanager
def _build_lock(workspace: Workspace, name: str):
    # The UI and a training job may ask for the same shipped set at once: one builds, the
    # other waits and then finds it built.
    lock_path = workspace.datasets / f".{name}.lock"
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def source_hash(name: str) -> str:
    """Fingerprint of a shipped set's text (and build version): edited assets -> rebuild."""
    h = hashlib.sha1(f"v{BUILD_VERSION}".encode())
    src = SHIPPED_DIR / SHIPPED[name].source
    for f in (src, src.parent / "terms.txt"):
        if f.exists():
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def is_current(folder: Path) -> bool:
    """True when ``folder`` holds the current build of the shipped set it is named after."""
    try:
        info = json.loads((folder / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return info.get("source_hash") == source_hash(folder.name) if folder.name in SHIPPED else False


def ensure_shipped(name: str, workspace: Workspace, progress: Progress | None = None) -> Path:
    """Build shipped dataset ``name`` into ``<workspace>/datasets/<name>/`` once; return the folder.

    Speech sets are synthesized here (a minute or so for med-dictation on 2 cores); later
    calls return at once.
    """
    if name not in SHIPPED:
        raise DataError(f"unknown shipped dataset '{name}'", field="dataset",
                        hint=f"Shipped sets: {', '.join(SHIPPED)}")
    final = workspace.datasets / name
    if is_current(final):
        return final
    with _build_lock(workspace, name):
        if is_current(final):  # another process built it while we waited
            return final
        report(progress, 0.0, f"building shipped dataset {name}")
        with atomic_dir(final, overwrite=True) as tmp:
            _reuse_audio(final / "audio", tmp / "audio")
            build_shipped(name, tmp, progress=scaled(progress, 0.0, 0.99))
        report(progress, 1.0, f"{name} ready")
    return final


def _reuse_audio(old: Path, new: Path) -> None:
    """Hard-link clips of an older build into the new one (names carry the text's hash, so
    only unchanged sentence+voice pairs are reused); unused ones vanish with the old folder."""
    if not old.is_dir():
        return
    new.mkdir(parents=True, exist_ok=True)
    for f in old.glob("*.flac"):
        try:
            os.link(f, new / f.name)
        except OSError:
            shutil.copy2(f, new / f.name)


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
