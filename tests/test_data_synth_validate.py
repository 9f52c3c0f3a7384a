"""Speech synthesis, the validation report, and splitting + saving a loaded dataset."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from engine.data.datasets import load_source, split_and_save
from engine.data.readers import read_audio_folder, read_table
from engine.data.schema import LoadResult
from engine.data.synth import parse_voice, synthesize_sentences
from engine.data.validate import validate
from engine.tts import Voice


def test_synthesize_sentences_writes_flac_and_nemo_manifest(tmp_path):
    sents = [{"id": "a", "text": "Start apixaban five milligrams twice daily."},
             {"id": "b", "text": "Levetiracetam was continued."}]
    steps = []
    manifest = synthesize_sentences(sents, tmp_path, voices=(Voice("en-us", 160), parse_voice("en+m3@140:40")),
                                    speeds=(1.0, 1.25), progress=lambda f, m: steps.append(f))
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert len(lines) == 8 and steps[-1] == 1.0
    for row in lines:
        info = sf.info(row["audio_filepath"])
        assert info.samplerate == 16000 and info.channels == 1
        assert abs(info.duration - row["duration"]) < 0.01 and row["duration"] > 0.5
    # a faster voice gives a shorter clip of the same sentence
    by = {(r["text"], r["audio_filepath"].split("__")[1]): r["duration"] for r in lines}
    assert by[(sents[0]["text"], "en-us-160-50")] > by[(sents[0]["text"], "en-us-200-50")]
    # the manifest reads back through the NeMo reader
    res = read_table(manifest)
    assert res.kind == "speech" and len(res.examples) == 8 and not res.issues
    # re-running reuses clips; an edited sentence under the same id gets a new clip
    again = synthesize_sentences([{"id": "a", "text": "Start apixaban today."}], tmp_path, voices=(Voice("en-us", 160),))
    new = json.loads(again.read_text().splitlines()[0])
    assert new["audio_filepath"] not in {r["audio_filepath"] for r in lines}


def test_validation_report_finds_problems(tmp_path):
    sf.write(tmp_path / "ok.wav", (0.3 * np.sin(np.arange(16000) / 3)).astype("float32"), 16000)
    (tmp_path / "ok.txt").write_text("start amiodarone")
    sf.write(tmp_path / "silent.wav", np.zeros(16000, dtype="float32"), 16000)
    (tmp_path / "silent.txt").write_text("nothing")
    rep = validate(read_audio_folder(tmp_path))
    assert not rep.ok and rep.counts()["silent"] == 1
    assert any(i.file.endswith("silent.wav") and i.field == "audio" for i in rep.errors)

    f = tmp_path / "qa.jsonl"
    rows = [{"prompt": "q1", "response": "a1", "meta": {"label": "yes"}}] * 2
    rows += [{"prompt": f"q{i}", "response": "a", "meta": {"label": "yes"}} for i in range(2, 20)]
    rows += [{"prompt": "qn", "response": "a", "meta": {"label": "no"}}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{bad\n")
    rep = validate(read_table(f))
    counts = rep.counts()
    assert counts["duplicate"] == 1 and counts["malformed"] == 1 and counts["label_imbalance"] == 1
    dup = next(i for i in rep.issues if i.code == "duplicate")
    assert dup.line == 2 and "line 1" in dup.message
    assert rep.label_balance == {"yes": 20, "no": 1}
    assert "| error |" in rep.to_markdown() and rep.to_dict()["errors"] == 1


def test_validation_tokenizer_check(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{c: i + 1 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz.")}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]")
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps({"prompt": "dose", "response": "five mg."}) + "\n"
                 + json.dumps({"prompt": "temp", "response": "38.5 °c"}) + "\n")
    rep = validate(read_table(f), tokenizer=tok)
    bad = [i for i in rep.issues if i.code == "unencodable"]
    assert len(bad) == 1 and bad[0].line == 2 and bad[0].field == "response"
    assert set(rep.unencodable_chars) == {"3", "8", "5", "°"}


def test_split_and_save_speech_groups_by_sentence(workspace, tmp_path):
    src = workspace.uploads / "set"
    src.mkdir()
    for i in range(10):
        for v in range(2):  # the same sentence spoken twice -> must stay together
            sf.write(src / f"s{i}_{v}.wav", (0.2 * np.sin(np.arange(8000) / (2 + v))).astype("float32"), 16000)
            (src / f"s{i}_{v}.txt").write_text(f"sentence number {i}")
    res, _ = load_source("uploads/set", workspace)
    d, summary = split_and_save(res, workspace, "my-set", seed=5)
    assert d.kind == "speech" and d.info["grouped_by"] == "text" and d.info["seed"] == 5
    texts = {s: {e["text"] for e in d.load_split(s)} for s in d.split_names()}
    assert not texts["train"] & (texts["validation"] | texts["test"])
    assert summary["train"]["examples"] + summary["validation"]["examples"] + summary["test"]["examples"] == 20
    assert "split" not in d.load_split("train")[0]["meta"]
    again, _ = load_source("my-set", workspace)  # a saved dataset opens by name
    assert len(again.examples) == 20


def test_split_refuses_empty(workspace):
    import pytest

    from engine.errors import DataError

    with pytest.raises(DataError, match="nothing to split"):
        split_and_save(LoadResult("text", [], [], "x.jsonl"), workspace, "empty")
