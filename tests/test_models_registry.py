"""Registry resolution and loader argument handling (fast: no large weights are loaded)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from engine.errors import MissingDependency, ModelError
from engine.models.registry import list_models, resolve_model


def test_registry_lists_embedded_first_and_field_presets():
    names = [s.name for s in list_models()]
    assert names[:2] == ["smollm2-135m-instruct", "whisper-tiny.en"]
    for hub_id in ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct", "microsoft/phi-2",
                   "meta-llama/Llama-2-7b-hf", "openai/whisper-small", "openai/whisper-base",
                   "openai/whisper-medium.en", "nvidia/canary-qwen-2.5b"):
        assert hub_id in names
    for s in list_models():
        assert s.kind in ("text", "speech") and s.license and s.description, s
    canary = resolve_model("nvidia/canary-qwen-2.5b")
    assert (canary.backend, canary.needs_gpu, canary.kind) == ("nemo", True, "speech")


def test_resolve_names_and_hub_ids():
    smol = resolve_model("smollm2-135m-instruct")
    assert (smol.kind, smol.source, smol.embedded) == ("text", "embedded:smollm2-135m-instruct", True)
    assert resolve_model("whisper-tiny.en").kind == "speech"
    assert resolve_model("OpenAI/Whisper-Small").name == "openai/whisper-small"  # hub ids ignore case
    other = resolve_model("someone/my-medical-model")
    assert (other.kind, other.source, other.embedded) == ("text", "someone/my-medical-model", False)
    assert resolve_model("distil-whisper/distil-small.en").kind == "speech"


def test_unknown_name_lists_the_choices():
    with pytest.raises(ModelError) as e:
        resolve_model("smollm-135")
    msg = str(e.value)
    assert "Unknown model 'smollm-135'" in msg
    assert "smollm2-135m-instruct" in msg and "whisper-tiny.en" in msg and "microsoft/phi-2" in msg
    with pytest.raises(ModelError, match="No model name"):
        resolve_model("  ")


def test_local_dirs_kind_from_config(tmp_path):
    speech = tmp_path / "my-whisper"
    speech.mkdir()
    (speech / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    text = tmp_path / "my-llm"
    text.mkdir()
    (text / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    s = resolve_model(str(speech))
    assert (s.kind, s.source, s.family) == ("speech", str(speech.resolve()), "whisper")
    assert resolve_model(str(text)).kind == "text"

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(empty))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelError, match="LoRA adapter"):
        resolve_model(str(adapter))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="is a file"):
        resolve_model(str(tmp_path / "weights.bin"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read the model config"):
        resolve_model(str(bad))


def test_embedded_dirs_resolve_as_local_checkpoints(smollm2_dir, whisper_dir):
    from engine.models.loader import model_path

    assert model_path("smollm2-135m-instruct") == str(smollm2_dir)
    assert resolve_model(str(smollm2_dir)).kind == "text"
    assert resolve_model(str(whisper_dir)).kind == "speech"
    assert (smollm2_dir / "medtune-embedded.json").is_file()
    assert not list(smollm2_dir.glob("*.gguf"))  # the extracted GGUF was deleted


def test_hub_id_offline_gives_a_clear_error(monkeypatch, tmp_path):
    from engine.models.loader import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache
    with pytest.raises(ModelError) as e:
        load_model("microsoft/phi-2")
    assert "could not be found locally" in str(e.value) and "offline" in str(e.value)


def test_nemo_backend_needs_nemo_or_a_gpu():
    from engine.models.loader import load_model

    if importlib.util.find_spec("nemo") is None:
        with pytest.raises(MissingDependency) as e:
            load_model("nvidia/canary-qwen-2.5b")
        assert "nemo_toolkit" in str(e.value) and "pip install -e '.[nemo]'" in str(e.value)
    else:  # NeMo installed, but this machine has no CUDA
        with pytest.raises(ModelError, match="CUDA GPU"):
            load_model("nvidia/canary-qwen-2.5b")


def test_bad_loader_arguments():
    from engine.models.loader import load_model, pick_device, pick_dtype, quantization_config

    with pytest.raises(ModelError, match="Unknown quantization"):
        load_model("smollm2-135m-instruct", quant="3bit")
    with pytest.raises(ModelError, match="Unknown dtype"):
        load_model("smollm2-135m-instruct", dtype="float8")
    import torch

    if not torch.cuda.is_available():
        assert pick_device("auto") == "cpu"
        assert pick_dtype("auto", pick_device("auto")) == torch.float32
        with pytest.raises(ModelError, match="no CUDA GPU"):
            pick_device("cuda")
    q4 = quantization_config("4bit", torch.bfloat16)
    assert q4.load_in_4bit and q4.bnb_4bit_quant_type == "nf4" and q4.bnb_4bit_use_double_quant
    assert q4.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config("8bit", torch.float32).load_in_8bit
    assert quantization_config("none", torch.float32) is None
