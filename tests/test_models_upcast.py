"""Half-precision checkpoints loaded as float32 on the CPU (engine/models/upcast.py): the same
weights as a plain float32 load, tied weights still tied, and a lower peak: the checkpoint's
mapped pages are dropped as each tensor is converted (bench/compare_memory.py has figures)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from train_tiny import tiny_llama  # noqa: F401 - fixture


def _bf16_llama(folder, hidden=256, layers=4, vocab=4096):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bf16_small(tmp_path_factory):
    return _bf16_llama(tmp_path_factory.mktemp("bf16-small"))


def test_lean_load_matches_a_plain_float32_load(bf16_small):
    from transformers import AutoModelForCausalLM

    from engine.models.upcast import finish_load, load_dtype

    plain = AutoModelForCausalLM.from_pretrained(bf16_small, dtype=torch.float32)
    assert load_dtype(torch.float32, "cpu", False, str(bf16_small)) == torch.bfloat16
    lean = AutoModelForCausalLM.from_pretrained(bf16_small, dtype=torch.bfloat16)
    assert next(lean.parameters()).dtype == torch.bfloat16  # loaded as stored, lazily mapped
    finish_load(lean, torch.float32, torch.bfloat16)
    p_plain, p_lean = dict(plain.named_parameters()), dict(lean.named_parameters())
    assert p_plain.keys() == p_lean.keys()
    for name, p in p_lean.items():
        assert p.dtype == torch.float32, name
        assert torch.equal(p, p_plain[name]), name
    for name, b in lean.named_buffers():
        if b.is_floating_point():
            assert b.dtype == torch.float32, name
    assert lean.lm_head.weight is lean.model.embed_tokens.weight  # still tied
    assert lean.config.dtype == torch.float32
    ids = torch.tensor([[1, 5, 9, 42]])
    assert torch.equal(lean(ids).logits, plain(ids).logits)


def test_the_workbench_loader_takes_the_lean_path(tiny_llama, tmp_path):
    import shutil

    from transformers import AutoModelForCausalLM

    from engine.infer import answer
    from engine.models.loader import load_model

    folder = shutil.copytree(tiny_llama, tmp_path / "tiny-bf16")
    AutoModelForCausalLM.from_pretrained(folder).to(torch.bfloat16).save_pretrained(folder)
    lm = load_model(str(folder), device="cpu")
    assert lm.dtype == torch.float32
    assert {p.dtype for p in lm.model.parameters()} == {torch.float32}
    assert isinstance(answer(lm, "What is sepsis?", max_new_tokens=4), str)


def test_taken_only_for_half_precision_files_on_a_cpu_float32_load(bf16_small, tiny_llama, tmp_path):
    import shutil

    from engine.models.upcast import load_dtype, stored_half_dtype

    assert stored_half_dtype(str(bf16_small)) == "bfloat16"
    assert stored_half_dtype(str(tiny_llama)) is None  # float32 files
    assert stored_half_dtype(str(tmp_path)) is None    # no checkpoint at all
    assert stored_half_dtype("no-such-org/no-such-model") is None  # hub id not in the cache
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "model.safetensors").write_bytes(b"\xff" * 16)  # absurd header length
    assert stored_half_dtype(str(tmp_path / "junk")) is None
    # the config says bfloat16, the files hold float32: the files decide (no lossy bf16 load)
    lying = shutil.copytree(tiny_llama, tmp_path / "lying")
    cfg = json.loads((lying / "config.json").read_text())
    (lying / "config.json").write_text(json.dumps({**cfg, "dtype": "bfloat16"}))
    assert load_dtype(torch.float32, "cpu", False, str(lying)) == torch.float32
    assert load_dtype(torch.float32, "cuda", False, str(bf16_small)) == torch.float32
    assert load_dtype(torch.float32, "cpu", True, str(bf16_small)) == torch.float32
    assert load_dtype(torch.bfloat16, "cpu", False, str(bf16_small)) == torch.bfloat16


_PEAK = textwrap.dedent("""
    import json, sys, torch
    import engine  # noqa: F401
    from transformers import AutoModelForCausalLM
    from engine.models.upcast import finish_load, load_dtype
    def hwm():
        return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) // 1024
    path, lean = sys.argv[1], sys.argv[2] == 'lean'
    before = hwm()
    m = AutoModelForCausalLM.from_pretrained(path, dtype=load_dtype(torch.float32, 'cpu', False, path) if lean else torch.float32)
    if lean:
        finish_load(m, torch.float32, torch.bfloat16)
    print(json.dumps({'before': before, 'peak': hwm()}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and uses madvise")
def test_peak_memory_holds_no_checkpoint_copy(tmp_path):
    """~96 MB float32 from a ~48 MB bf16 file: a plain float32 load peaks with both (the whole
    mapped file stays resident while converting); the lean load drops each tensor's pages."""
    path = _bf16_llama(tmp_path / "bf16-mid", hidden=512, layers=6, vocab=16384)
    file_mb = sum(f.stat().st_size for f in path.glob("*.safetensors")) / 2**20

    def peak(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _PEAK, str(path), mode], cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                             text=True, timeout=300, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        return r["peak"] - r["before"]

    plain, lean = peak("plain"), peak("lean")
    assert plain - lean > 0.6 * file_mb, (plain, lean, file_mb)
