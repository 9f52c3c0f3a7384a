"""Base vs tuned on the embedded models, with a real LoRA adapter whose init is non-zero.

The adapter toggle must give the base model exactly (same logits as a freshly loaded base)
and the tuned side must differ; a batch evaluation must write one complete prediction per
example and metrics that agree with the per-item records.
"""

from __future__ import annotations

import json

import pytest
import torch
from export_runs import make_run

from engine.eval.compare import answer_both, open_run_pair, transcribe_both
from engine.eval.job import load_predictions
from engine.eval.job import run as eval_job
from engine.eval.metrics import wer
from engine.models.loader import load_model
from engine.runs import JobContext, Run

QUESTION = "What is the first-line treatment for hypertension?"


@pytest.fixture(scope="module")
def text_setup(smollm2_dir, tmp_path_factory):
    from engine.workspace import Workspace

    ws = Workspace.open(tmp_path_factory.mktemp("evalws"))
    run = Run(make_run(ws, smollm2_dir, name="text-run", kind="text"))
    return ws, run, open_run_pair(run)


def _logits(model, tok, text):
    ids = tok(text, return_tensors="pt")
    with torch.inference_mode():
        return model(**ids).logits


def test_adapter_toggle_gives_base_and_tuned(text_setup, smollm2_dir):
    _, _, pair = text_setup
    fresh = load_model(str(smollm2_dir))
    ref = _logits(fresh.model, fresh.tokenizer, QUESTION)
    with pair.side("base") as lm:
        base = _logits(lm.model, lm.tokenizer, QUESTION)
    with pair.side("tuned") as lm:
        tuned = _logits(lm.model, lm.tokenizer, QUESTION)
    assert torch.allclose(base, ref, atol=1e-5)
    assert not torch.allclose(tuned, ref, atol=1e-2)
    # the toggle is restored after the base pass: the tuned side still has the adapter on
    with pair.side("tuned") as lm:
        assert torch.equal(_logits(lm.model, lm.tokenizer, QUESTION), tuned)

    from engine.infer import answer

    both = answer_both(pair, QUESTION, max_new_tokens=12)
    assert both["base"] == answer(fresh, QUESTION, max_new_tokens=12)
    assert both["tuned"] != both["base"]


def test_eval_job_writes_complete_predictions(text_setup, tmp_path):
    from engine.data.folder import write_dataset

    ws, run, _ = text_setup
    rows = [{"id": f"q{i}", "prompt": p, "response": "Assessment: hypertension.\nPlan: start a thiazide.",
             "meta": {}} for i, p in enumerate(["Raised blood pressure?", "BP 160/100, what now?", "Headache and high BP?"])]
    folder = ws.datasets / "tiny-qa"
    write_dataset(folder, {"test": rows}, name="tiny-qa", kind="text", seed=0, source="test")
    seen = []
    eval_job(JobContext(run, {"dataset": str(folder), "split": "test", "batch_size": 2, "max_new_tokens": 6},
                        lambda f, m: seen.append(f)))
    preds = load_predictions(run.eval_dir)
    assert [p["id"] for p in preds] == ["q0", "q1", "q2"]
    for p in preds:
        assert p["base"] and p["tuned"] and p["reference"] and p["input"]
        assert set(p["metrics"]) == {"base", "tuned"}
        assert 0.0 <= p["metrics"]["tuned"]["rouge_l"] <= 1.0
        assert "improvement" in p
    metrics = json.loads((run.eval_dir / "metrics.json").read_text())
    assert metrics["n"] == 3 and metrics["split"] == "test" and metrics["run"] == run.id
    mean_rouge = sum(p["metrics"]["base"]["rouge_l"] for p in preds) / 3
    assert metrics["base"]["rouge_l"] == pytest.approx(mean_rouge)
    assert metrics["delta"]["rouge_l"] == pytest.approx(metrics["tuned"]["rouge_l"] - metrics["base"]["rouge_l"])
    assert seen and seen[-1] == 1.0

    # A second evaluation (another split here) keeps the first one's files under history/.
    write_dataset(folder, {"test": rows, "other": rows[:1]}, name="tiny-qa", kind="text", seed=0, source="test")
    eval_job(JobContext(run, {"dataset": str(folder), "split": "other", "batch_size": 2, "max_new_tokens": 6},
                        lambda f, m: None))
    assert [p["id"] for p in load_predictions(run.eval_dir)] == ["q0"]
    (old,) = (run.eval_dir / "history").iterdir()
    assert old.name.endswith("-tiny-qa-test")
    assert [p["id"] for p in load_predictions(old)] == ["q0", "q1", "q2"]
    assert json.loads((old / "metrics.json").read_text()) == metrics


def test_speech_toggle_and_eval(whisper_dir, workspace, tmp_path):
    from engine.audio import write_flac
    from engine.data.folder import write_dataset
    from engine.eval.compare import open_pair
    from engine.eval.job import evaluate_dataset
    from engine.infer import transcribe
    from engine.tts import synthesize

    sentences = ["Start metoprolol twice daily.", "The patient has atrial fibrillation."]
    rows = []
    for i, s in enumerate(sentences):
        path = workspace.uploads / f"c{i}.flac"  # dataset audio must lie inside the workspace
        write_flac(path, synthesize(s))
        rows.append({"id": f"c{i}", "audio": str(path), "text": s, "duration": 2.0, "meta": {"voice": f"v{i}"}})
    folder = workspace.datasets / "tiny-dict"
    write_dataset(folder, {"test": rows}, name="tiny-dict", kind="speech", seed=0, source="test",
                  terms=["metoprolol", "atrial fibrillation"])
    run = Run(make_run(workspace, whisper_dir, name="speech-run", kind="speech"))
    pair = open_pair(str(whisper_dir), adapter=run.adapter_dir)
    fresh = load_model(str(whisper_dir))

    out = transcribe_both(pair, rows[0]["audio"], reference=sentences[0], terms=["metoprolol"])
    assert out["base"]["text"] == transcribe(fresh, rows[0]["audio"])
    assert out["tuned"]["text"] != out["base"]["text"]
    assert out["base"]["wer"] == pytest.approx(wer(sentences[0], out["base"]["text"]))
    assert out["base"]["normaliser"] == "whisper"   # the default, named with the number
    assert {o["op"] for o in out["tuned"]["diff"]} <= {"equal", "sub", "ins", "del"}

    m = evaluate_dataset(pair, str(folder), "test", tmp_path / "eval", workspace, batch_size=2, max_new_tokens=40)
    preds = load_predictions(tmp_path / "eval")
    assert [p["id"] for p in preds] == ["c0", "c1"]
    assert preds[0]["base"] == out["base"]["text"]       # batched job == interactive single clip
    assert m["base"]["wer"] == pytest.approx(wer(sentences, [p["base"] for p in preds]))
    assert m["definitions"]["wer"]["name"] == "WER, Whisper-normalised" and preds[0]["normaliser"] == "whisper"
    assert m["definitions"]["term_recall"]["normaliser"] == "medtune"
    assert set(m["base"]["by_group"]) == {"v0", "v1"}
    assert m["base"]["term_total"] == 2
