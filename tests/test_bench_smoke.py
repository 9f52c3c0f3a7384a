"""Smoke runs of the bench/ scripts in --quick mode: they run end to end as real child
processes and print a table with the ratio as the last line. No timing is asserted (speed
targets live in the scripts' own output and bench/RESULTS.md, never in tests).

The two cheapest scripts always run (~1 min together on 2 busy cores). The heavier ones
(training, the browser and the app start) run only with MEDTUNE_BENCH_SMOKE_ALL=1, so CI
time stays small:  MEDTUNE_BENCH_SMOKE_ALL=1 python -m pytest tests/test_bench_smoke.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RATIO = re.compile(r"^ratio: \d+(\.\d+)?x  \S.*\(goal .+: (met|NOT met)\)$")
ALL = os.environ.get("MEDTUNE_BENCH_SMOKE_ALL") == "1"
heavy = pytest.mark.skipif(not ALL, reason="heavy bench smoke run: set MEDTUNE_BENCH_SMOKE_ALL=1")


def run_bench(script: str, *args: str, workspace: Path | None = None, timeout: float = 600) -> list[str]:
    cmd = [sys.executable, str(REPO / "bench" / script), "--quick", *args]
    if workspace is not None:
        cmd += ["--workspace", str(workspace)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines and RATIO.match(lines[-1]), f"{script}: last line is not a ratio line:\n{proc.stdout[-2000:]}"
    assert any(ln.startswith("| ") for ln in lines[:-1]), f"{script}: no table printed:\n{proc.stdout[-2000:]}"
    return lines


def test_batch_eval_quick(tmp_path):
    lines = run_bench("batch_eval.py", "--kind", "text", "--limit", "2", workspace=tmp_path / "ws")
    row = next(ln for ln in lines if ln.startswith("| text"))
    assert re.search(r"\| [0-2]/2 +\|$", row), row  # identical-outputs column is "k/2"


def test_compare_memory_quick(tmp_path):
    lines = run_bench("compare_memory.py", workspace=tmp_path / "ws")
    assert any("two model copies" in ln for ln in lines) and any("adapter toggled" in ln for ln in lines)
    # correctness (not speed): both ways must give the same answers
    assert "answers identical across variants" in lines[-1], lines[-1]


def _bench_module(name: str):
    """Import a bench/ script as a module (the scripts import their sibling ``_common``)."""
    import importlib.util

    if str(REPO / "bench") not in sys.path:
        sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_compare_memory_shape_real_architecture(tmp_path):
    """``compare_memory.py --shape``: the presets are the published architectures (parameter
    counts on the meta device), a tiny shape builds a folder the ordinary loader reads, with
    the embedded tokenizer and a marker saying the weights are random; bad configs are refused.
    (The end-to-end ``--quick --shape tiny`` run takes as long as the test above, so it is
    left to the script; this checks the new part in-process, in seconds.)"""
    import json

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine import infer
    from engine.errors import ModelError
    from engine.models.loader import load_model

    cm = _bench_module("compare_memory")
    for shape, params, layers in (("smollm2-360m", 361_821_120, 32), ("smollm2-1.7b", 1_711_376_384, 24)):
        cfg = cm.shape_config(shape)
        model_type = cfg.pop("model_type")
        with torch.device("meta"):
            m = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg))
        assert sum(p.numel() for p in m.parameters()) == params, shape
        assert m.config.num_hidden_layers == layers and m.config.tie_word_embeddings and m.config.vocab_size == 49152

    out = tmp_path / "tiny"
    _, n = cm.build_random_model("tiny", out)
    marker = json.loads((out / cm.RANDOM_MARKER).read_text())
    assert marker["weights"] == "random weights, real architecture" and marker["params"] == n
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    lm = load_model(str(out), device="cpu")  # the ordinary path any local folder takes
    assert lm.kind == "text" and lm.model.config.hidden_size == 64 and lm.model.dtype == torch.float32
    assert len(infer.generate_batch(lm, ["What is sepsis?"], max_new_tokens=2)) == 1

    bad = tmp_path / "bad" / "config.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"hidden_size": 64, "vocab_size": 1000}))
    with pytest.raises(ModelError, match=r"config\.json: field vocab_size=1000"):
        cm.shape_config(str(bad.parent))
    huge = tmp_path / "huge.json"  # ~4.4T parameters: two float32 copies fit in no machine's RAM
    huge.write_text(json.dumps({"hidden_size": 65536, "intermediate_size": 262144, "num_hidden_layers": 64,
                                "num_attention_heads": 512, "num_key_value_heads": 512, "head_dim": 128}))
    with pytest.raises(ModelError, match="two-copy baseline needs about"):
        cm.build_random_model(str(huge), tmp_path / "never")
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
@heavy
@pytest.mark.parametrize("script", ["text_train_throughput.py", "speech_train_throughput.py"])
def test_training_benches_quick(tmp_path, script):
    run_bench(script, workspace=tmp_path / "ws", timeout=900)


@pytest.mark.slow
@heavy
def test_app_cold_start_quick():
    run_bench("app_cold_start.py")


@pytest.mark.browser
@heavy
def test_ui_latency_quick():
    run_bench("ui_latency.py")


@heavy
def test_rehearsal_quick(tmp_path):
    lines = run_bench("rehearsal.py", workspace=tmp_path / "ws", timeout=900)
    assert any(ln.startswith("| phi2-lora-medqa.yaml | 2 |") for ln in lines), lines
