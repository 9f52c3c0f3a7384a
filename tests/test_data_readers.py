"""Every reader on small local files, including the broken ones a real dataset contains."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from engine.audio import load_audio
from engine.data.datasets import load_source, read_any, save_upload
from engine.data.readers import read_audio_folder, read_hub, read_table
from engine.errors import DataError, PathError


def tone(path, seconds=1.0, sr=16000, channels=1, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * 220 * t)).astype("float32")
    sf.write(path, np.stack([x] * channels, axis=1) if channels > 1 else x, sr)
    return path


def test_jsonl_malformed_line_is_reported_not_dropped(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text('{"prompt": "What is apixaban?", "response": "An anticoagulant."}\n'
                 '{"prompt": "broken", "response": \n'
                 '\n'
                 '["not", "an", "object"]\n'
                 '{"prompt": "Dose of metformin?", "response": ""}\n'
                 '{"prompt": "What is INR?", "response": "A clotting test ratio."}\n')
    res = read_table(f)
    assert [e["prompt"] for e in res.examples] == ["What is apixaban?", "What is INR?"]
    by_line = {i.line: i for i in res.issues}
    assert "not valid JSON" in str(by_line[2]) and str(by_line[2]).startswith(f"{f}, line 2")
    assert by_line[3].severity == "warning" and by_line[3].code == "empty"
    assert "expected a JSON object" in by_line[4].message
    assert by_line[5].field == "response" and by_line[5].code == "empty"
    # every input line is accounted for: kept or reported
    assert len(res.examples) + len(res.issues) == 6
    with pytest.raises(DataError, match="line 2"):
        res.raise_on_errors()


def test_csv_missing_column_names_file_and_field(tmp_path):
    f = tmp_path / "qa.csv"
    f.write_text("question,notes\nWhat is sepsis?,x\n")
    with pytest.raises(DataError) as e:
        read_table(f, preset="text")
    assert str(f) in str(e.value) and "response" in str(e.value) and e.value.field


def test_csv_bad_rows_have_line_numbers(tmp_path):
    f = tmp_path / "qa.csv"
    f.write_text('prompt,response\n"What is ""DKA""?","Diabetic\nketoacidosis."\nonly-one-field\n'
                 'What is TIA?,\n,\nWhat is COPD?,A lung disease.\n')
    res = read_table(f)
    assert [e["response"] for e in res.examples] == ["Diabetic\nketoacidosis.", "A lung disease."]
    assert res.examples[0]["meta"]["source_line"] == 2  # a quoted field spanning two lines
    lines = {i.line: i for i in res.issues}
    assert "has 1 fields" in lines[4].message
    assert lines[5].field == "response"
    assert lines[6].code == "empty"


def test_parquet_pubmedqa_layout_and_bad_label(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {"pubid": [1, 2], "question": ["Does X help?", "Does Y help?"],
            "context": [{"contexts": ["A trial of 100 adults.", "X halved events."], "labels": ["M", "R"]},
                        {"contexts": ["No difference."], "labels": ["R"]}],
            "long_answer": ["X helped.", "Y did not."], "final_decision": ["yes", "perhaps"]}
    f = tmp_path / "pqa.parquet"
    pq.write_table(pa.table(rows), f)
    res = read_table(f)  # preset detected from the columns
    assert len(res.examples) == 1
    ex = res.examples[0]
    assert ex["meta"]["label"] == "yes" and "X halved events." in ex["prompt"]
    assert ex["response"].startswith("Answer: yes.")
    (issue,) = res.issues
    assert issue.line == 2 and issue.field == "final_decision" and "perhaps" in issue.message


def test_healthcaremagic_and_medimind_presets(tmp_path):
    hcm = tmp_path / "hcm.jsonl"
    hcm.write_text(json.dumps({"instruction": "If you are a doctor, please answer the medical questions.",
                               "input": "I have a cough for 3 weeks.", "output": "Please see a doctor for a chest exam."}) + "\n")
    ex = read_table(hcm).examples[0]
    assert ex["prompt"] == "I have a cough for 3 weeks." and ex["meta"]["instruction"].startswith("If you")
    mm = tmp_path / "medimind.csv"
    mm.write_text("instruction,response,source,safety_level\nWhat is gout?,A crystal arthritis.,synthetic,low\n")
    ex = read_table(mm).examples[0]
    assert ex["response"] == "A crystal arthritis." and ex["meta"]["safety_level"] == "low"


def test_nemo_manifest_relative_audio_and_durations(tmp_path):
    (tmp_path / "wav").mkdir()
    tone(tmp_path / "wav" / "a.wav", 1.5)
    m = tmp_path / "manifest.json"
    m.write_text(json.dumps({"audio_filepath": "wav/a.wav", "duration": 1.5, "text": "start apixaban"}) + "\n"
                 + json.dumps({"audio_filepath": "wav/missing.wav", "duration": 2.0, "text": "x"}) + "\n")
    res = read_table(m)
    assert res.kind == "speech"
    (ex,) = res.examples
    assert ex["audio"] == str(tmp_path / "wav" / "a.wav") and ex["duration"] == 1.5
    (issue,) = res.issues
    assert issue.line == 2 and issue.field == "audio" and "not found" in issue.message


def test_audio_folder_corrupt_stereo_48k_and_long(tmp_path):
    tone(tmp_path / "ok.wav", 1.0)
    (tmp_path / "ok.txt").write_text("continue metoprolol\n")
    tone(tmp_path / "stereo48.flac", 2.0, sr=48000, channels=2)
    (tmp_path / "stereo48.txt").write_text("start levetiracetam")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    (tmp_path / "corrupt.txt").write_text("x")
    tone(tmp_path / "long.wav", 31.0, amp=0.1)
    (tmp_path / "long.txt").write_text("a very long dictation")
    tone(tmp_path / "notext.wav", 0.5)
    res = read_audio_folder(tmp_path)
    got = {e["audio"]: e for e in res.examples}
    assert sorted(e["text"] for e in res.examples) == ["a very long dictation", "continue metoprolol", "start levetiracetam"]
    stereo = next(e for e in got.values() if e["audio"].endswith("stereo48.flac"))
    assert stereo["duration"] == pytest.approx(2.0, abs=0.01)
    assert stereo["meta"]["sample_rate"] == 48000 and stereo["meta"]["channels"] == 2
    audio = load_audio(stereo["audio"])
    assert audio.ndim == 1 and audio.shape[0] == pytest.approx(32000, abs=2)  # mono, 16 kHz
    issues = {i.code: i for i in res.issues}
    assert issues["audio_unreadable"].file.endswith("corrupt.wav")
    assert issues["missing_transcript"].file == "notext.wav"
    assert issues["too_long"].severity == "warning" and issues["too_long"].file.endswith("long.wav")
    long_ex = next(e for e in res.examples if e["audio"].endswith("long.wav"))
    assert long_ex["meta"]["too_long_for_whisper"] is True


def test_hub_path_with_local_folder_hani89_layout(tmp_path):
    """The hub code path (datasets.load_dataset + Audio column) on a local folder laid out
    like a hub dataset: audio bytes embedded in Parquet, as Hani89's set ships them."""
    import datasets

    wav = tone(tmp_path / "clip.wav", 1.0)
    ds = datasets.Dataset.from_dict({"audio": [{"bytes": wav.read_bytes(), "path": "clip.wav"}],
                                     "sentence": ["Patient on amiodarone."]}).cast_column("audio", datasets.Audio())
    hub = tmp_path / "hub" / "data"
    hub.mkdir(parents=True)
    ds.to_parquet(str(hub / "train-00000-of-00001.parquet"))
    res = read_hub(str(tmp_path / "hub"), preset="hani89", audio_cache=tmp_path / "cache")
    (ex,) = res.examples
    assert ex["text"] == "Patient on amiodarone." and ex["audio"].startswith(str(tmp_path / "cache"))
    assert load_audio(ex["audio"]).shape[0] == 16000


def test_yfyeung_layout_jsonl(tmp_path):
    tone(tmp_path / "u1.flac", 0.8)
    f = tmp_path / "medical.jsonl"
    f.write_text(json.dumps({"id": "u1", "audio": "u1.flac", "text": "the patient denies chest pain"}) + "\n")
    (ex,) = read_table(f, preset="yfyeung-medical").examples
    assert ex["id"] == "u1" and ex["duration"] == pytest.approx(0.8, abs=0.01)


def test_hub_unreachable_is_a_clear_error(workspace):
    with pytest.raises(DataError, match="cannot load hub dataset"):
        load_source("hub:someone/not-a-real-set", workspace)


def test_load_source_confines_paths_and_saves_uploads(workspace, tmp_path):
    outside = tmp_path / "outside.jsonl"
    outside.write_text('{"prompt": "a", "response": "b"}\n')
    with pytest.raises(PathError):
        load_source(str(outside), workspace)
    saved = save_upload(workspace, outside)
    assert saved.parent == workspace.uploads and saved.read_text() == outside.read_text()
    again = save_upload(workspace, outside)
    assert again != saved  # never overwrites an earlier upload
    res, terms = load_source(f"uploads/{saved.name}", workspace)
    assert res.examples[0]["prompt"] == "a" and terms == []
    with pytest.raises(DataError, match="unsupported file type"):
        bad = workspace.uploads / "x.docx"
        bad.write_text("x")
        read_any(bad)
