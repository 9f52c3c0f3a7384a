"""Merged model, adapter zip and model card from a run folder (tiny random Llama + real LoRA)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from export_runs import greedy_generate, make_run, tiny_text_base  # noqa: F401 - fixture

from engine.eval.definitions import definitions
from engine.export import verify
from engine.export.checks import ExportError
from engine.export.job import ExportOptions, export_run

TESTS = Path(__file__).resolve().parent
# The shape engine.eval.job writes (corpus figures per side, deltas, headline, definitions).
EVAL = {"base": {"accuracy": 0.40, "macro_f1": 0.35, "n": 20}, "tuned": {"accuracy": 0.55, "macro_f1": 0.30, "n": 20},
        "delta": {"accuracy": 0.15, "macro_f1": -0.05}, "headline": "accuracy", "definitions": definitions("text")}


@pytest.fixture(scope="module")
def exported(tiny_text_base, tmp_path_factory):
    from engine.workspace import Workspace

    ws = Workspace.open(tmp_path_factory.mktemp("merge") / "ws")
    run = make_run(ws, tiny_text_base, eval_metrics=EVAL)
    manifest = export_run(run, ExportOptions(merged=True, adapter_zip=True))
    return run, manifest


def test_layout_and_verification_record(exported):
    run, manifest = exported
    exp = run / "export"
    assert sorted(p.name for p in exp.iterdir()) == ["README.md", "adapter.zip", "export.json", "merged",
                                                       "verification.json"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in (exp / "merged").iterdir()}
    assert manifest["formats"] == ["merged", "adapter_zip"] and manifest["dtype"] == "float32"
    v = json.loads((exp / "verification.json").read_text())["merged"]
    for key in ("in_memory", "reloaded_without_peft"):
        assert v[key]["passed"] and v[key]["greedy_identical"]
        assert v[key]["max_abs_logit_diff"] <= verify.MERGE_TOLERANCE["float32"]
        assert len(v[key]["cases"]) == len(verify.TEXT_PROMPTS)
    assert v["merged_into"] == "float32 base"


def test_merged_loads_without_peft_and_generates_like_base_plus_adapter(exported, tiny_text_base):
    """A fresh interpreter where peft cannot even be imported loads merged/ and generates greedily;
    base + adapter (PeftModel, here) must give the very same tokens and near-identical logits."""
    run, _ = exported
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    script = f"""
import sys, json, torch
sys.modules["peft"] = None  # importing peft now raises: the merged model must not need it
from transformers import AutoModelForCausalLM, AutoTokenizer
sys.path.insert(0, {str(TESTS)!r})
from export_runs import greedy_generate
m = AutoModelForCausalLM.from_pretrained({str(run / 'export' / 'merged')!r}).eval()
t = AutoTokenizer.from_pretrained({str(run / 'export' / 'merged')!r})
ids = t("The patient has a fever", return_tensors="pt")["input_ids"]
with torch.no_grad():
    logits = m(input_ids=ids).logits[0].tolist()
print(json.dumps({{"gen": [greedy_generate(m, t, p) for p in {list(verify.TEXT_PROMPTS)!r}], "logits": logits}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    merged = json.loads(out.stdout.strip().splitlines()[-1])

    tok = AutoTokenizer.from_pretrained(tiny_text_base)
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_text_base), run / "adapter").eval()
    assert merged["gen"] == [greedy_generate(ref, tok, p) for p in verify.TEXT_PROMPTS]
    ids = tok("The patient has a fever", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref_logits = ref(input_ids=ids).logits[0]
    assert torch.allclose(torch.tensor(merged["logits"]), ref_logits, atol=1e-4)
    # ...and the adapter matters: without it the logits are clearly different.
    with ref.disable_adapter(), torch.no_grad():
        plain = ref(input_ids=ids).logits[0]
    assert (plain - ref_logits).abs().max() > 100 * 1e-4


def test_verification_fails_for_a_model_without_the_adapter(tiny_text_base, tmp_path):
    """The check can fail: the base model alone is not accepted as 'merged'."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.workspace import Workspace

    run = make_run(Workspace.open(tmp_path / "ws"), tiny_text_base)
    tok = AutoTokenizer.from_pretrained(tiny_text_base)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_text_base), run / "adapter").eval()
    cases, eos, _ = verify.fixed_inputs("text", tok, peft_model)
    reference = verify.record(verify.torch_text_scorer(peft_model), cases, eos)
    base = AutoModelForCausalLM.from_pretrained(tiny_text_base).eval()
    result = verify.check(reference, verify.torch_text_scorer(base), eos, tolerance=1e-3)
    assert not result["passed"] and result["max_abs_logit_diff"] > 1e-2


def test_adapter_zip_reloads_with_peft(exported, tiny_text_base, tmp_path):
    run, _ = exported
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with zipfile.ZipFile(run / "export" / "adapter.zip") as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path)
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/README.md"} <= names
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    orig = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_text_base), run / "adapter").eval()
    again = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_text_base), tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.equal(orig(input_ids=ids).logits, again(input_ids=ids).logits)


def test_model_card_contents(exported):
    run, _ = exported
    text = (run / "export" / "README.md").read_text()
    assert text.startswith("---\nlicense: other\n")  # a local base folder has no known license
    for needle in ("## Base model", "## Intended use", "## Limitations", "not a medical device",
                   "does not give medical advice", "Research use only", "## Training data", "`med-qa`",
                   "## LoRA configuration", "r: 4", "alpha: 8.0", "target_modules: q_proj,v_proj",
                   "## Training configuration", "max_steps: 3", "Training loss: 2.5000 (first) -> 1.9000 (last)",
                   "| Accuracy | 0.4000 | 0.5500 | +0.1500 (better) |", "| Macro-F1 | 0.3500 | 0.3000 | -0.0500 (worse) |",
                   "Metric definitions:", "- Accuracy: medtune-workbench",
                   "## Export verification", "identical greedy output: yes"):
        assert needle in text, needle
    assert (run / "export" / "merged" / "README.md").read_text() == text


def test_card_for_an_embedded_base_names_the_hub_model_and_license():
    from engine.export.card import hub_base_id, hub_license

    assert hub_base_id("smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_base_id("openai/whisper-small") == "openai/whisper-small"
    assert hub_license("Apache-2.0") == "apache-2.0"
    assert hub_license("Llama 3.1 Community License (gated on the Hub)") == "llama3.1"


def test_quantized_run_merges_into_a_dequantized_base(tiny_text_base, tmp_path):
    from engine.workspace import Workspace

    run = make_run(Workspace.open(tmp_path / "ws"), tiny_text_base, quantization="4bit")
    export_run(run, ExportOptions(merged=True, adapter_zip=False))
    v = json.loads((run / "export" / "verification.json").read_text())["merged"]
    assert v["trained_quantization"] == "4bit" and v["merged_into"] == "de-quantized float32 base"
    assert v["passed"]
    card = (run / "export" / "README.md").read_text()
    assert "QLoRA fine-tune" in card and "4bit quantized base" in card
    cfg = json.loads((run / "export" / "merged" / "config.json").read_text())
    assert "quantization_config" not in cfg  # plain weights, loadable without bitsandbytes


def test_failed_verification_writes_no_merged_folder(tiny_text_base, tmp_path, monkeypatch):
    from engine.workspace import Workspace

    run = make_run(Workspace.open(tmp_path / "ws"), tiny_text_base)
    monkeypatch.setitem(verify.MERGE_TOLERANCE, "float32", -1.0)  # nothing can pass
    with pytest.raises(ExportError, match="disagrees with base \\+ adapter"):
        export_run(run, ExportOptions(merged=True, adapter_zip=True))
    leftovers = sorted(p.name for p in (run / "export").iterdir())
    assert leftovers == []  # no merged/, no .partial-*, no card: nothing half-made


def test_options_are_checked():
    with pytest.raises(ExportError, match="Nothing to export"):
        ExportOptions.from_params({"merged": False, "adapter_zip": False, "onnx": False})
    with pytest.raises(ExportError, match="Unknown export option.*token"):
        ExportOptions.from_params({"token": "x"})


def test_cli_export_default_formats(tiny_text_base, tmp_path, capsys):
    from engine.cli import main
    from engine.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    make_run(ws, tiny_text_base, name="cli-run")
    assert main(["--workspace", str(ws.root), "export", "cli-run"]) == 0
    out = capsys.readouterr().out
    assert "merged, adapter_zip" in out and "greedy identical: True" in out
    assert (ws.runs / "cli-run" / "export" / "merged" / "model.safetensors").is_file()
    assert main(["--workspace", str(ws.root), "export", "no-such-run"]) == 2
    assert "No run called 'no-such-run'" in capsys.readouterr().err


def test_bfloat16_merge_is_checked_against_its_own_tolerance(tiny_text_base, tmp_path):
    from safetensors import safe_open

    from engine.workspace import Workspace

    run = make_run(Workspace.open(tmp_path / "ws"), tiny_text_base)
    manifest = export_run(run, ExportOptions(merged=True, adapter_zip=False, dtype="bfloat16"))
    v = json.loads((run / "export" / "verification.json").read_text())["merged"]
    assert manifest["dtype"] == "bfloat16" and v["tolerance"] == verify.MERGE_TOLERANCE["bfloat16"]
    assert v["passed"] and v["merged_into"] == "bfloat16 base"
    with safe_open(str(run / "export" / "merged" / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
