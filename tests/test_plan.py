"""The memory planner (engine.plan): its parameter counts against real models, its activation
inventory against the tensors a real forward pass saves, its CPU prediction against measured
peaks of real training steps, its advice, `medtune train --plan` and the Train form's view."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import plan
from engine.config import RunConfig
from engine.errors import ModelError
from engine.models import architectures
from engine.models.shapes import shapes
from engine.preflight import load_config

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted((REPO / "assets" / "recipes").glob("*.yaml"))
LLAMA31 = REPO / "assets" / "recipes" / "llama31-8b-qlora-healthcaremagic.yaml"
GPU_MODELS = ("llama-3.1-8b", "llama-2-7b", "phi-2", "whisper-small", "qwen3-1.7b")
GB = plan.GIB


def _facts(name: str, smollm2_dir: Path) -> dict:
    return json.loads((smollm2_dir / "config.json").read_text()) if name == "smollm2" else architectures.facts(name)


# ---- parameter counts ------------------------------------------------------------------------
@pytest.mark.parametrize("name", GPU_MODELS + ("smollm2",))
def test_parameter_counts_match_the_full_model_on_the_meta_device(name, smollm2_dir):
    import torch
    from transformers import AutoModelForCausalLM, WhisperForConditionalGeneration

    f = _facts(name, smollm2_dir)
    with torch.device("meta"):
        cfg = architectures.hf_config(f)
        model = WhisperForConditionalGeneration._from_config(cfg) if f["model_type"] == "whisper" \
            else AutoModelForCausalLM.from_config(cfg)
    assert shapes(f).params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", GPU_MODELS)
def test_parameter_counts_match_two_layer_random_builds(name):
    import torch

    f = architectures.with_layers(architectures.facts(name), 2)
    model = architectures.build_random(f, dtype=torch.bfloat16, quant="none")
    assert shapes(f).params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("quant", ["4bit", "8bit"])
def test_quantized_weights_cost_what_bitsandbytes_stores(quant):
    """Every tensor of a built quantized model (packed weights, NF4 block statistics with the
    double quantization's own, 8-bit row scales) against the plan's weights."""
    import bitsandbytes as bnb
    import torch

    f = _narrow("llama", layers=2)
    model = architectures.build_random(f, dtype=torch.float32, quant=quant)
    stored = sum(p.numel() * p.element_size() for p in model.parameters())
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            stored += _quant_state_bytes(m.weight.quant_state)
        elif isinstance(m, bnb.nn.Linear8bitLt):
            stored += m.weight.SCB.numel() * m.weight.SCB.element_size()
    cfg = RunConfig().with_values({"model.quantization": quant})
    assert plan.plan_for(cfg, f, "cpu").weights == stored


def _quant_state_bytes(qs) -> int:
    import torch

    total = 0
    for key, value in vars(qs).items():
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
        elif key == "state2" and value is not None:
            total += _quant_state_bytes(value)
    return total


# ---- the activation inventory ----------------------------------------------------------------
#: The facts at a width a CPU runs in milliseconds; the inventory is per tensor, so width does
#: not change what is kept, only how big.
NARROW = {
    "llama": ("llama-3.1-8b", dict(hidden_size=256, intermediate_size=512, num_attention_heads=4,
                                   num_key_value_heads=2, head_dim=64, vocab_size=1000)),
    "qwen3": ("qwen3-1.7b", dict(hidden_size=256, intermediate_size=512, num_attention_heads=4,
                                 num_key_value_heads=2, head_dim=64, vocab_size=1000)),
    "phi": ("phi-2", dict(hidden_size=320, intermediate_size=1024, num_attention_heads=4, num_key_value_heads=4,
                          vocab_size=1000)),
    "whisper": ("whisper-small", dict(d_model=256, encoder_ffn_dim=1024, decoder_ffn_dim=1024,
                                      encoder_attention_heads=4, decoder_attention_heads=4, vocab_size=51865,
                                      max_source_positions=100, max_target_positions=64)),
}


def _narrow(family: str, layers: int = 2) -> dict:
    name, widths = NARROW[family]
    f = architectures.with_layers(architectures.facts(name), layers)
    f.update(widths)
    return f


INVENTORY = [
    ("llama", {}), ("llama", {"lora.dropout": 0.0}), ("llama", {"lora.target_modules": "q_proj,v_proj"}),
    ("llama", {"model.quantization": "4bit"}), ("llama", {"lora.full_finetune": True}),
    ("qwen3", {}), ("qwen3", {"lora.dropout": 0.0, "lora.target_modules": "q_proj,v_proj"}),
    ("qwen3", {"lora.full_finetune": True}),
    ("phi", {}), ("phi", {"lora.target_modules": "q_proj,k_proj,v_proj,dense"}), ("phi", {"lora.dropout": 0.0}),
    ("phi", {"lora.full_finetune": True}),
    ("whisper", {}), ("whisper", {"lora.dropout": 0.0}), ("whisper", {"lora.encoder_lora": True}),
    ("whisper", {"lora.full_finetune": True}),
]


@pytest.mark.parametrize("family,values", INVENTORY, ids=[f"{f}-{v}" for f, v in INVENTORY])
def test_activation_inventory_is_what_a_real_forward_pass_saves(family, values):
    """On a CPU (float32, no autocast) the planned activations, less the loss backward's two
    gradients (which are not saved tensors), equal the bytes autograd saves for the backward
    pass in a real forward through engine.train.model.apply_lora's model: every tensor that is
    neither a parameter nor seen before, by storage."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    from engine.train.model import apply_lora

    f = _narrow(family)
    batch, length = 2, 64
    cfg = RunConfig().with_values({**values, "train.batch_size": batch, "train.max_length": length})
    speech = family == "whisper"
    torch.manual_seed(0)
    model = apply_lora(cfg, architectures.build_random(f, dtype=torch.float32, quant=cfg.model.quantization),
                       "speech" if speech else "text")
    model.train()
    ids = torch.randint(0, f["vocab_size"], (batch, length))
    if not speech:
        inputs = {"input_ids": ids, "labels": ids}
    elif cfg.lora.encoder_lora or cfg.lora.full_finetune:  # the encoder runs on log-mel features
        inputs = {"input_features": torch.randn(batch, f["num_mel_bins"], 2 * f["max_source_positions"]),
                  "decoder_input_ids": ids, "labels": ids}
    else:  # cached encoder outputs, as engine.train.speech feeds them
        frames = torch.randn(batch, f["max_source_positions"], f["d_model"])
        inputs = {"encoder_outputs": BaseModelOutput(last_hidden_state=frames), "decoder_input_ids": ids,
                  "labels": ids}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in params:
            seen.setdefault(key, t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**inputs)
    planned = plan.plan_for(cfg, f, "cpu").activations - 8 * batch * length * f["vocab_size"]
    saved = sum(seen.values())
    # within the rotary cos/sin tables (planned once even where the first layer never keeps them)
    assert abs(planned - saved) <= 0.005 * saved + 32 * 1024, (planned, saved)


# ---- the CPU prediction against measured peaks -------------------------------------------------
MEASURED = {
    "smollm2-lora": {"model": "smollm2", "cfg": {"lora.r": 16, "train.batch_size": 2, "train.max_length": 128}},
    "smollm2-lora-checkpointing": {"model": "smollm2", "cfg": {
        "lora.r": 16, "train.batch_size": 2, "train.max_length": 128, "train.gradient_checkpointing": True}},
    "llama31-2layers-4bit": {"model": "llama-3.1-8b", "layers": 2, "cfg": {
        "model.quantization": "4bit", "lora.r": 16, "train.batch_size": 1, "train.max_length": 64}},
}


@pytest.fixture(scope="module")
def measured(smollm2_dir):
    """The three measurements, each in its own child process, started together (RSS is per process)."""
    env = {**os.environ, **plan.LIVE_MEMORY_ENV, "HF_HUB_OFFLINE": "1"}  # RSS = live tensors (see there)
    script = str(REPO / "tests" / "plan_measure.py")
    procs = {k: subprocess.Popen([sys.executable, script, json.dumps(spec)], cwd=REPO, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k, spec in MEASURED.items()}
    out = {}
    for key, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
        out[key] = json.loads(line[7:]) if proc.returncode == 0 and line else {"error": stderr[-3000:]}
    return out


@pytest.mark.slow
@pytest.mark.parametrize("key", list(MEASURED))
def test_cpu_plan_is_within_20_percent_of_the_measured_peak(key, measured):
    m = measured[key]
    assert "error" not in m, m.get("error")
    spec = MEASURED[key]
    cfg = RunConfig().with_values(spec["cfg"])
    p = plan.plan_for(cfg, m["facts"], "cpu", layers=spec.get("layers"))
    peak = m["peak"] - m["floor"]
    ratio = p.total / peak
    print(f"{key}: planned {p.total / 2**20:.0f} MiB (weights {p.weights / 2**20:.0f}, LoRA + optimizer "
          f"{p.lora_and_optimizer / 2**20:.0f}, activations {p.activations / 2**20:.0f}); measured peak above the "
          f"floor {peak / 2**20:.0f} MiB (model built {(m['built'] - m['floor']) / 2**20:.0f}); ratio {ratio:.3f}")
    assert 0.8 <= ratio <= 1.2


# ---- what the plan says ----------------------------------------------------------------------
def _recipe(**values) -> RunConfig:
    return load_config(LLAMA31).with_values(values)


def test_quantization_checkpointing_and_batch_move_the_plan_the_right_way():
    four, eight, none = (plan.estimate(_recipe(**{"model.quantization": q})) for q in ("4bit", "8bit", "none"))
    assert four.weights < eight.weights < none.weights
    assert four.total < eight.total < none.total
    on = plan.estimate(_recipe())
    off = plan.estimate(_recipe(**{"train.gradient_checkpointing": False}))
    assert on.activations < off.activations / 3
    for ckpt in (True, False):
        small = plan.estimate(_recipe(**{"train.gradient_checkpointing": ckpt}))
        big = plan.estimate(_recipe(**{"train.gradient_checkpointing": ckpt, "train.batch_size": 8}))
        assert 1.9 <= big.activations / small.activations <= 2.05
    assert plan.estimate(_recipe(**{"lora.r": 64})).lora_and_optimizer > 3.5 * on.lora_and_optimizer


def test_the_8b_qlora_recipe_fits_24gb_and_a_full_fp16_fine_tune_fits_no_card():
    qlora = plan.estimate(_recipe())
    assert qlora.fits[24] and qlora.fits[80] and not qlora.advice
    # mixed-precision fp16 needs float32 master weights (fp16 ones fail the GradScaler's unscale):
    # weights, gradients and two AdamW moments at 4 bytes each
    full = plan.estimate(_recipe(**{"model.quantization": "none", "lora.full_finetune": True,
                                    "model.dtype": "float32", "train.precision": "fp16"}))
    assert full.weights > 29 * GB and full.lora_and_optimizer > 3 * full.weights * 0.99
    assert not any(full.fits.values())
    assert "lora.full_finetune" in full.advice and "saves" in full.advice
    # fp16 weights without checkpointing: over 80 GB too
    half = plan.estimate(_recipe(**{"model.quantization": "none", "lora.full_finetune": True,
                                    "model.dtype": "float16", "train.precision": "fp16",
                                    "train.gradient_checkpointing": False}))
    assert not half.fits[80] and half.advice


def test_advice_names_the_knob_that_saves_most_and_says_how_much():
    cfg = _recipe(**{"model.quantization": "none", "train.gradient_checkpointing": False, "train.batch_size": 8})
    p = plan.estimate(cfg)
    assert not p.fits[24]
    assert p.advice.startswith("Turn on train.gradient_checkpointing"), p.advice
    after = plan.estimate(cfg.with_values({"train.gradient_checkpointing": True}))
    assert f"saves {plan.gb(p.total - after.total):.1f} GB" in p.advice
    # the knobs already set are not offered again
    tight = plan.estimate(_recipe(**{"train.batch_size": 16, "train.max_length": 4096}))
    assert tight.advice and "4bit" not in tight.advice and "checkpointing" not in tight.advice


def test_cpu_plan_computes_in_float32_and_planning_by_depth_scales_the_layers():
    cuda, cpu = plan.estimate(_recipe()), plan.estimate(_recipe(), device="cpu")
    assert cpu.overhead == 0 and cuda.overhead == plan.CUDA_OVERHEAD
    assert cpu.weights == cuda.weights  # 4-bit layers, every other parameter upcast to float32 on both
    bf16 = plan.estimate(_recipe(**{"model.quantization": "none", "model.dtype": "auto"}), device="cpu")
    assert bf16.weights == shapes(architectures.facts("llama-3.1-8b")).params * 4
    two = plan.estimate(_recipe(), layers=2)
    assert two.layers == 2 and two.params == shapes(architectures.with_layers(
        architectures.facts("llama-3.1-8b"), 2)).params
    assert "at 2 layers" in two.to_text()


def test_models_without_facts_need_a_config_json(tmp_path, smollm2_dir):
    with pytest.raises(ModelError, match="config.json"):
        plan.estimate(RunConfig().with_values({"model.name": "someone/no-such-model"}))
    with pytest.raises(ModelError, match="NeMo"):
        plan.estimate(load_config(REPO / "assets" / "recipes" / "canary-qwen-lora.yaml"))
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text((smollm2_dir / "config.json").read_text())
    local = plan.estimate(RunConfig().with_values({"model.name": str(folder)}))
    assert local.total == plan.estimate(RunConfig()).total


def test_cli_plan_prints_the_split_and_creates_no_run(tmp_path):
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "engine", "--workspace", str(ws), "train", str(LLAMA31), "--plan",
           "--set", "train.batch_size=2"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for word in ("weights", "LoRA + optimizer", "activations", "overhead", "total", "fits: 16 GB", "on a CPU:"):
        assert word in text, text
    expected = plan.estimate(_recipe(**{"train.batch_size": 2}))
    assert f"{plan.gb(expected.total):.2f} GB peak" in text  # --set applied
    assert not ws.exists()  # no workspace opened, no run created, nothing launched
    cpu = subprocess.run(cmd + ["--plan-device", "cpu"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert cpu.returncode == 0 and "on a CPU" in cpu.stdout.splitlines()[0] and "on a GPU:" in cpu.stdout


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_plan_html_renders_for_every_recipe(recipe, smollm2_dir, whisper_dir):
    from ui.plan_view import plan_html

    page = plan_html(load_config(recipe))
    assert page.startswith("<div id='train-plan-inner'") and "<script" not in page and "http" not in page
    if "canary" in recipe.stem:  # NeMo: a muted note, not an error
        assert "data-state='none'" in page and "NeMo" in page
        return
    assert "data-state='plan'" in page and page.count("class='plan-fit'") == len(plan.CARDS)
    for label in ("weights", "LoRA + optimizer", "activations", "16 GB", "80 GB"):
        assert label in page
