"""ONNX export (torch.onnx + onnxruntime) of a tiny text model, parity with PyTorch.

Whisper's two graphs are checked on the embedded whisper-tiny.en in test_export_embedded.py."""

from __future__ import annotations

import json

import numpy as np
import torch
from export_runs import make_run, tiny_text_base  # noqa: F401 - fixture

from engine.export import verify
from engine.export.job import ExportOptions, export_run


def test_text_onnx_parity_and_padded_batches(tiny_text_base, tmp_path):
    import onnxruntime as ort

    from engine.workspace import Workspace

    run = make_run(Workspace.open(tmp_path / "ws"), tiny_text_base)
    # ONNX without merged/: the merge happens in a scratch folder that is removed afterwards.
    manifest = export_run(run, ExportOptions(merged=False, adapter_zip=False, onnx=True))
    exp = run / "export"
    assert manifest["formats"] == ["onnx"] and not (exp / "merged").exists()
    assert not [p for p in exp.iterdir() if p.name.startswith(".")]
    v = json.loads((exp / "verification.json").read_text())["onnx"]
    assert v["passed"] and v["greedy_identical"] and v["max_abs_logit_diff"] <= verify.ONNX_TOLERANCE
    assert v["graphs"] == ["model.onnx"] and v["kv_cache"] is False

    # Beyond the fixed inputs: a left-padded batch of another length than the traced example.
    merged_ref = _merged_reference(run, tiny_text_base)
    ids = torch.randint(4, 200, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    with torch.no_grad():
        ref = merged_ref(input_ids=ids, attention_mask=mask).logits.numpy()
    sess = ort.InferenceSession(str(exp / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    valid = mask.numpy().astype(bool)  # padded query positions have no meaning
    assert np.abs(ref - got)[valid].max() <= verify.ONNX_TOLERANCE


def _merged_reference(run, base):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), run / "adapter")
    return m.merge_and_unload().eval()
