"""Rehearsals of the GPU recipes on this CPU: each recipe's real architecture (its published
config facts at 2 layers, full width and vocabulary) with random weights, in the recipe's dtype
and quantization, trained a few steps through the real training code, merged, generating."""

from __future__ import annotations

import json

import pytest
from train_tiny import make_speech_dataset

from engine.cli import main
from engine.models import architectures
from engine.runs import list_runs

pytestmark = pytest.mark.slow


def _lora_params_per_layer(f: dict, targets: list[str], r: int) -> int:
    """LoRA's r x (in + out) for each targeted linear layer of one decoder block, from the facts."""
    h = f["hidden_size"]
    heads, kv = f["num_attention_heads"], f.get("num_key_value_heads", f["num_attention_heads"])
    hd = f.get("head_dim") or h // heads
    inter = f["intermediate_size"]
    shapes = {"q_proj": (h, heads * hd), "k_proj": (h, kv * hd), "v_proj": (h, kv * hd), "o_proj": (heads * hd, h),
              "dense": (heads * hd, h), "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h),
              "fc1": (h, inter), "fc2": (inter, h)}
    return sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)


CASES = {
    # recipe: (LoRA targets per block as the recipe resolves them, rank)
    "llama31-8b-qlora-healthcaremagic.yaml": (["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"], 16),
    "phi2-lora-medqa.yaml": (["q_proj", "k_proj", "v_proj", "dense"], 8),
    "llama2-7b-qlora-pubmedqa.yaml": (None, None),  # read from the recipe below
}


@pytest.mark.parametrize("recipe", ["llama31-8b-qlora-healthcaremagic.yaml", "phi2-lora-medqa.yaml",
                                    "llama2-7b-qlora-pubmedqa.yaml"])
def test_text_recipe_rehearses_at_its_real_width(workspace, recipe, capsys):
    from engine.preflight import load_config

    path = f"assets/recipes/{recipe}"
    cfg = load_config(path)
    assert main(["--workspace", str(workspace.root), "rehearse", path, "--layers", "2", "--length", "48",
                 "--steps", "2", "--batch", "1", "--name", "rehearsal"]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    (run,) = list_runs(workspace)
    st = run.status()
    assert st["state"] == "completed", run.log_tail(60)
    assert st["where"] == "this machine (rehearsal, 2 of 32 layers, random weights)"
    assert run.summary()["where"] == st["where"]
    spec = run.rehearsal()
    res = spec["result"]
    f = architectures.facts(cfg.model.name)
    assert spec["of_layers"] == {"num_hidden_layers": 32} and spec["layers"] == 2
    targets, r = CASES.get(recipe, (None, None))
    if targets is None:
        targets, r = [t.strip() for t in cfg.lora.target_modules.split(",")], cfg.lora.r
    assert res["trainable_params"] == 2 * _lora_params_per_layer(f, targets, r)
    assert [row["step"] for row in run.metrics() if "loss" in row] == [1, 2]
    assert len(res["generated_tokens"]) == 8  # merged, and it still generates
    mem = res["memory"]
    assert mem["weights"] > 0 and mem["lora_and_optimizer"] > 0 and mem["activations"] > 0
    assert mem["peak"] >= mem["weights"] + mem["lora_and_optimizer"]
    assert res["memory"]["s_per_step"] > 0
    # the embeddings alone, upcast to float32 by the 4-bit preparation, are in the weights
    assert mem["weights"] > f["vocab_size"] * f["hidden_size"] * 4
    assert (run.adapter_dir / "adapter_config.json").is_file()
    assert json.loads((run.adapter_dir / "adapter_config.json").read_text())["r"] == r
    assert "trainable params" in out and "peak memory" in out
    # random weights are nothing to compare, evaluate or export: every way there says so
    from engine.errors import ModelError
    from engine.eval.compare import run_weights
    from engine.export.checks import ExportError
    from engine.export.source import open_run

    assert not run.has_trained_weights()
    with pytest.raises(ExportError, match="is a rehearsal"):
        open_run(run.path)
    with pytest.raises(ModelError, match="is a rehearsal"):
        run_weights(run)


def test_whisper_small_rehearses_on_speech_rows(workspace, capsys):
    data = make_speech_dataset(workspace.datasets / "dictation-mini", n_train=4, n_eval=2)
    path = "assets/recipes/whisper-small-lora-dictation.yaml"
    assert main(["--workspace", str(workspace.root), "rehearse", path, "--layers", "2", "--steps", "2",
                 "--batch", "2", "--dataset", str(data)]) == 0, capsys.readouterr()
    (run,) = list_runs(workspace)
    assert run.status()["state"] == "completed", run.log_tail(60)
    res = run.rehearsal()["result"]
    assert run.rehearsal()["of_layers"] == {"encoder_layers": 12, "decoder_layers": 12}
    assert res["trainable_params"] > 0 and res["generated_tokens"]
    assert res["memory"]["weights"] > 0


def test_rehearsal_refuses_a_model_without_facts(workspace, capsys):
    assert main(["--workspace", str(workspace.root), "rehearse", "assets/recipes/smollm2-med-qa.yaml"]) == 2
    assert "no architecture facts for smollm2-135m-instruct" in capsys.readouterr().err
    assert list_runs(workspace) == []


@pytest.mark.extra("nemo")
def test_canary_qwen_rehearses_through_the_nemo_backend(workspace, capsys):
    """Canary-Qwen's SALM at its real widths (Qwen3-1.7B and the FastConformer, 2 layers each):
    built, saved as a SALM folder, trained by engine.train.nemo, generating."""
    from engine.data.shipped import build_shipped

    build_shipped("med-dictation", workspace.datasets / "dictation-mini", limit=3)
    path = "assets/recipes/canary-qwen-lora.yaml"
    assert main(["--workspace", str(workspace.root), "rehearse", path, "--steps", "2", "--batch", "2",
                 "--dataset", "dictation-mini"]) == 0, capsys.readouterr()
    (run,) = list_runs(workspace)
    assert run.status()["state"] == "completed", run.log_tail(60)
    spec = run.rehearsal()
    assert spec["of_layers"] == {"num_hidden_layers": 28, "encoder_layers": 32}
    res = spec["result"]
    qwen = architectures.facts("qwen3-1.7b")
    # the LLM's embedding at its real size (tied with the output head) is in the model
    assert res["total_params"] > qwen["vocab_size"] * qwen["hidden_size"]
    assert res["trainable_params"] > 0 and res["steps"] == 2 and res["generated_tokens"] is not None
    assert res["memory"]["weights"] > qwen["vocab_size"] * qwen["hidden_size"] * 4  # float32 on a CPU
    assert "NeMo SALM" in run.log_tail(200)
