"""Acceptance on the embedded models: SmolLM2-135M-Instruct and Whisper tiny.en runs export a
merged model that loads without peft and decodes exactly like base + adapter, and ONNX
graphs within tolerance of PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from export_runs import greedy_generate, make_run

from engine.export import verify
from engine.export.job import ExportOptions, export_run

TESTS = Path(__file__).resolve().parent
QUESTION = "What is the first-line treatment for uncomplicated hypertension in adults?"


@pytest.fixture(scope="module")
def smol_export(smollm2_dir, tmp_path_factory):
    from engine.workspace import Workspace

    ws = Workspace.open(tmp_path_factory.mktemp("smol") / "ws")
    # B x0.3: the adapter changes the answer but keeps it fluent (x1 turns it into noise).
    run = make_run(ws, smollm2_dir, name="smol-run", model_name="smollm2-135m-instruct", lora_b_scale=0.3)
    export_run(run, ExportOptions(merged=True, adapter_zip=True, onnx=True))
    return run


def test_smollm2_merged_generates_like_base_plus_adapter_without_peft(smol_export, smollm2_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged_dir = smol_export / "export" / "merged"
    script = f"""
import sys, json
sys.modules["peft"] = None  # the merged model must load and run with peft unimportable
sys.path.insert(0, {str(TESTS)!r})
from transformers import AutoModelForCausalLM, AutoTokenizer
from export_runs import greedy_generate
m = AutoModelForCausalLM.from_pretrained({str(merged_dir)!r}).eval()
t = AutoTokenizer.from_pretrained({str(merged_dir)!r})
print(json.dumps(greedy_generate(m, t, {QUESTION!r}, 24)))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    merged_tokens = json.loads(out.stdout.strip().splitlines()[-1])

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32),
                                    smol_export / "adapter").eval()
    assert merged_tokens == greedy_generate(ref, tok, QUESTION, 24)
    with ref.disable_adapter():
        assert greedy_generate(ref, tok, QUESTION, 24) != merged_tokens  # the adapter is really in there
    ver = json.loads((smol_export / "export" / "verification.json").read_text())
    for key in ("in_memory", "reloaded_without_peft"):
        assert ver["merged"][key]["passed"] and ver["merged"][key]["greedy_identical"]
        assert ver["merged"][key]["max_abs_logit_diff"] <= verify.MERGE_TOLERANCE["float32"]


def test_smollm2_onnx_parity(smol_export):
    onnx = json.loads((smol_export / "export" / "verification.json").read_text())["onnx"]
    assert onnx["passed"] and onnx["greedy_identical"]
    assert onnx["max_abs_logit_diff"] <= verify.ONNX_TOLERANCE
    assert (smol_export / "export" / "onnx" / "model.onnx").is_file()


def test_smollm2_card_and_adapter_zip_name_the_hub_base(smol_export):
    card = (smol_export / "export" / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "license: apache-2.0" in card
    with zipfile.ZipFile(smol_export / "export" / "adapter.zip") as zf:
        cfg = json.loads(zf.read("adapter/adapter_config.json"))
    assert cfg["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_whisper_tiny_en_merged_and_onnx(whisper_dir, tmp_path):
    from transformers import AutoModelForSpeechSeq2Seq

    from engine.workspace import Workspace

    run = make_run(Workspace.open(tmp_path / "ws"), whisper_dir, kind="speech", model_name="whisper-tiny.en",
                   lora_b_scale=5.0)
    export_run(run, ExportOptions(merged=True, adapter_zip=False, onnx=True))
    exp = run / "export"
    ver = json.loads((exp / "verification.json").read_text())
    merged, onnx = ver["merged"]["reloaded_without_peft"], ver["onnx"]
    assert merged["passed"] and merged["greedy_identical"]
    assert merged["max_abs_logit_diff"] <= verify.MERGE_TOLERANCE["float32"]
    assert onnx["passed"] and onnx["greedy_identical"] and onnx["max_abs_logit_diff"] <= verify.ONNX_TOLERANCE
    assert onnx["graphs"] == ["encoder_model.onnx", "decoder_model.onnx"]
    assert [c["input"] for c in onnx["cases"]] == list(verify.SPEECH_SENTENCES)
    assert all(c["reference_text"].strip() for c in onnx["cases"])  # it transcribed something
    model = AutoModelForSpeechSeq2Seq.from_pretrained(exp / "merged")
    assert not any("lora_" in k for k in model.state_dict())
    assert "license: mit" in (exp / "README.md").read_text()
