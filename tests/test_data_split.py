"""Split invariants, dataset folders, the shipped sets and speech synthesis."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
import soundfile as sf

from engine.data.datasets import open_dataset
from engine.data.folder import DatasetDir
from engine.data.readers import read_table, read_terms
from engine.data.shipped import SHIPPED, SHIPPED_DIR, build_shipped, ensure_shipped
from engine.data.split import split_examples, term_pattern
from engine.data.synth import read_sentences
from engine.errors import DataError


def _pubmedqa():
    return read_table(SHIPPED_DIR / "pubmedqa-synth" / "pubmedqa.jsonl", preset="pubmedqa").examples


def test_split_is_deterministic_and_covers_everything():
    exs = read_table(SHIPPED_DIR / "med-qa" / "qa.jsonl").examples
    a = split_examples(exs, seed=7)
    b = split_examples(list(exs), seed=7)
    c = split_examples(exs, seed=8)
    ids = lambda s: {k: [e["id"] for e in v] for k, v in s.items()}  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)
    assert sorted(i for v in ids(a).values() for i in v) == sorted(e["id"] for e in exs)
    assert [len(a[s]) for s in ("train", "validation", "test")] == [252, 31, 32]


def test_split_stratifies_labels():
    exs = _pubmedqa()
    total = Counter(e["meta"]["label"] for e in exs)
    splits = split_examples(exs, stratify="meta.label", seed=3)
    for label, n in total.items():
        for name, ratio in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
            got = sum(1 for e in splits[name] if e["meta"]["label"] == label)
            assert abs(got - n * ratio) <= 1, (label, name, got)
        assert all(sum(1 for e in splits[s] if e["meta"]["label"] == label) >= 1 for s in splits)


def test_grouped_split_keeps_sentences_together():
    exs = [{"id": f"s{i}-v{v}", "audio": "x", "text": f"sentence {i}", "meta": {"sentence_id": f"s{i}"}}
           for i in range(40) for v in range(4)]
    splits = split_examples(exs, group="meta.sentence_id", seed=11)
    where = {}
    for name, items in splits.items():
        for e in items:
            assert where.setdefault(e["meta"]["sentence_id"], name) == name
    assert Counter(where.values()) == {"train": 32, "validation": 4, "test": 4}


def test_shipped_dictation_split_never_leaks_and_terms_are_learnt():
    """The split the shipped build uses (same function, same seed) over all sentences."""
    sentences = read_sentences(SHIPPED_DIR / "med-dictation" / "sentences.jsonl")
    terms = read_terms(SHIPPED_DIR / "med-dictation" / "terms.txt")
    assert len(sentences) >= 200 and len(terms) >= 80
    low = [s["text"].lower() for s in sentences]
    for t in terms:  # each term in several sentences
        assert sum(bool(term_pattern(t).search(x)) for x in low) >= 2, t
    splits = split_examples(sentences, cover_terms=terms)
    train_text = " ".join(s["text"].lower() for s in splits["train"])
    held = splits["validation"] + splits["test"]
    assert len(splits["test"]) >= 20
    assert not {s["text"] for s in held} & {s["text"] for s in splits["train"]}
    for s in held:
        for t in terms:
            if term_pattern(t).search(s["text"].lower()):
                assert term_pattern(t).search(train_text), (t, s["text"])


def test_shipped_text_sets_sizes_and_contract(workspace):
    qa = open_dataset("med-qa", workspace)
    assert qa.kind == "text" and qa.split_names() == ["train", "validation", "test"]
    rows = [e for s in qa.split_names() for e in qa.load_split(s)]
    assert len(rows) >= 300
    assert all(e["response"].startswith("Assessment:") and "\nPlan:" in e["response"] for e in rows)
    pq = open_dataset("pubmedqa-synth", workspace)
    items = [e for s in pq.split_names() for e in pq.load_split(s)]
    assert len(items) >= 60 and {e["meta"]["label"] for e in items} == {"yes", "no", "maybe"}
    info = json.loads((pq.path / "dataset.json").read_text())
    assert info["seed"] is not None and info["splits"]["test"] == len(pq.load_split("test"))
    assert pq.terms() == []
    # a second call is a no-op returning the same folder
    assert ensure_shipped("pubmedqa-synth", workspace) == pq.path


def test_ensure_shipped_concurrent_callers(workspace):
    paths, errors = [], []

    def go():
        try:
            paths.append(ensure_shipped("med-qa", workspace))
        except Exception as e:  # pragma: no cover - the failure we guard against
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(set(paths)) == 1
    assert not [p for p in workspace.datasets.iterdir() if p.name.startswith((".partial", ".old"))]


def test_small_dictation_build_synthesizes_voices(tmp_path):
    out = tmp_path / "dict"
    seen = []
    build_shipped("med-dictation", out, limit=12, progress=lambda f, m: seen.append(f))
    d = DatasetDir(out)
    assert d.kind == "speech" and len(d.terms()) >= 80
    train, test = d.load_split("train"), d.load_split("test")
    assert {e["meta"]["voice"] for e in train} == {"en-us@160wpm", "en+m3@145wpm", "en-us+f2@175wpm",
                                                   "en-gb-scotland+f3@150wpm"}
    assert not {e["text"] for e in test} & {e["text"] for e in train}
    info = sf.info(test[0]["audio"])
    assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
    assert test[0]["duration"] == pytest.approx(info.duration, abs=0.01)
    # paths are stored relative to the folder, returned absolute
    raw = json.loads((out / "test.jsonl").read_text().splitlines()[0])
    assert raw["audio"].startswith("audio/")
    assert seen and max(f for f in seen if f is not None) == pytest.approx(1.0)


def test_load_split_names_bad_row(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "x", "kind": "text"}))
    (tmp_path / "train.jsonl").write_text('{"id": "1", "prompt": "a", "response": "b"}\n{"id": "2", "prompt": "a"}\n')
    with pytest.raises(DataError) as e:
        DatasetDir(tmp_path).load_split("train")
    assert "train.jsonl" in str(e.value) and "line 2" in str(e.value) and "response" in str(e.value)
    with pytest.raises(DataError, match="no 'test' split"):
        DatasetDir(tmp_path).load_split("test")


def test_open_dataset_errors(workspace):
    with pytest.raises(DataError, match="no dataset"):
        open_dataset("../../etc", workspace)
    with pytest.raises(DataError, match="not a dataset folder"):
        open_dataset("uploads", workspace)
    assert set(SHIPPED) == {"med-dictation", "general-english", "med-qa", "pubmedqa-synth"}


def test_general_english_is_a_test_only_check_set(tmp_path):
    build_shipped("general-english", tmp_path / "ge", limit=4)
    d = DatasetDir(tmp_path / "ge")
    assert d.split_names() == ["test"] and d.info["seed"] is None
    rows = d.load_split("test")
    assert len(rows) == 4 and len({r["meta"]["voice"] for r in rows}) == 4  # rotating voices


def test_assets_stay_under_budget():
    from engine.workspace import ASSETS

    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total < 40 * 1024 * 1024, f"assets/ is {total / 1e6:.1f} MB"


def test_shipped_rebuilds_when_assets_change(workspace, monkeypatch):
    import engine.data.shipped as dsmod

    first = ensure_shipped("general-english", workspace)
    clips = {p.name: p.stat().st_ino for p in (first / "audio").glob("*.flac")}
    assert ensure_shipped("general-english", workspace) == first  # cached
    monkeypatch.setattr(dsmod, "BUILD_VERSION", dsmod.BUILD_VERSION + 1)  # as if the assets changed
    again = ensure_shipped("general-english", workspace)
    reused = {p.name: p.stat().st_ino for p in (again / "audio").glob("*.flac")}
    assert reused == clips  # same sentences -> the very same files (hard links), nothing re-spoken
