"""The NeMo backend's config side: recipe, SALM cfg, manifests, and the messages a person
sees when NeMo or CUDA is missing. Fast; none of this imports NeMo."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.config import RunConfig
from engine.errors import ConfigError, DataError, MissingDependency, ModelError
from engine.models import availability
from engine.nemo import manifests, salm_config
from engine.preflight import load_config, nemo_problems, validate
from engine.workspace import ASSETS

RECIPE = ASSETS / "recipes" / "canary-qwen-lora.yaml"


@pytest.mark.extra("nemo")  # the recipe validates only where NeMo is installed
def test_canary_recipe_validates_with_public_lora():
    cfg = load_config(RECIPE)
    assert validate(cfg) == []
    assert availability.is_nemo_model(cfg.model.name)
    assert nemo_problems(cfg) == []
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (8, 32.0, 0.1)
    assert (cfg.train.precision, cfg.train.device) == ("bf16", "cuda")
    block = salm_config.lora_block(cfg.lora)
    public = salm_config.PUBLIC_SALM_LORA
    assert {k: block[k] for k in public} == public  # same r/alpha/dropout as NeMo's salm.yaml
    assert "target_modules" not in block  # "auto" = peft's per-family default, as salm.yaml
    header = [ln for ln in RECIPE.read_text().splitlines() if ln.startswith("#")]
    assert any("medtune train assets/recipes/canary-qwen-lora.yaml" in ln for ln in header)


@pytest.mark.extra("nemo")  # the recipe validates only where NeMo is installed
def test_salm_training_cfg_freezes_llm_and_optionally_encoder():
    cfg = load_config(RECIPE)
    base = {"pretrained_llm": "Qwen/Qwen3-1.7B", "lora": {"r": 128}, "perception": {}, "prompt_format": "qwen"}
    out = salm_config.training_cfg(base, cfg, max_steps=100)
    assert out["lora"]["r"] == 8 and out["pretrained_weights"] is False
    assert salm_config.FREEZE_ENCODER[0] in out["freeze_params"]
    assert out["optimizer"]["lr"] == pytest.approx(3e-4)
    assert out["lr_scheduler"]["_target_"].endswith("CosineAnnealing") and out["lr_scheduler"]["max_steps"] == 100
    cfg.lora.encoder_lora = True
    out = salm_config.training_cfg(base, cfg, max_steps=100)
    assert not set(salm_config.FREEZE_ENCODER) & set(out["freeze_params"])
    assert set(salm_config.FREEZE_LLM) <= set(out["freeze_params"])
    cfg.lora.target_modules = "q_proj, k_proj"
    assert salm_config.lora_block(cfg.lora)["target_modules"] == ["q_proj", "k_proj"]


@pytest.mark.extra("nemo")  # the recipe validates only where NeMo is installed
def test_nemo_specific_config_problems_name_fields():
    cfg = load_config(RECIPE)
    cfg.model.quantization = "4bit"
    cfg.lora.full_finetune = True
    cfg.train.device = "cpu"
    cfg.train.precision = "fp16"
    probs = nemo_problems(cfg)
    assert [p.split(":")[0] for p in probs] == ["train.device", "model.quantization", "lora.full_finetune",
                                                "train.precision"]
    assert nemo_problems(RunConfig()) == []  # not a NeMo model: nothing to say


def test_without_nemo_choosing_a_nemo_model_says_how_to_install(monkeypatch):
    real = availability.importlib.util.find_spec
    monkeypatch.setattr(availability.importlib.util, "find_spec",
                        lambda name, *a: None if name == "nemo" else real(name, *a))
    assert not availability.nemo_installed()
    with pytest.raises(MissingDependency) as err:
        availability.require_runnable("nvidia/canary-qwen-2.5b")
    assert "pip install -e '.[nemo]'" in str(err.value) and "nemo_toolkit" in str(err.value)
    assert "pip install -e '.[nemo]'" in availability.machine_problem("nvidia/canary-qwen-2.5b")
    # the recipe (and any form/YAML choosing the model) is refused by validation, saying how to install
    with pytest.raises(ConfigError) as err:
        load_config(RECIPE)
    assert any(p.startswith("model.name:") and "pip install -e '.[nemo]'" in p for p in err.value.problems)


@pytest.mark.extra("nemo")  # the recipe validates only where NeMo is installed
def test_canary_without_cuda_says_it_needs_a_gpu_and_hub_weights(monkeypatch, workspace):
    monkeypatch.setattr(availability, "cuda_available", lambda: False)
    msg = availability.machine_problem("nvidia/canary-qwen-2.5b")
    assert "CUDA GPU" in msg and "Hugging Face Hub" in msg
    with pytest.raises(ModelError) as err:
        availability.require_runnable("nvidia/canary-qwen-2.5b")
    assert "CUDA GPU" in str(err.value) and "huggingface" in str(err.value).lower()
    # the job refuses at once, before touching data or weights, with the same message
    from engine.runs import JobContext, Run
    from engine.train import nemo as nemo_train

    run = Run(workspace.runs / "canary")
    run.path.mkdir(parents=True)
    run.config_path.write_text(RECIPE.read_text())
    with pytest.raises(ModelError, match="CUDA GPU"):
        nemo_train.run(JobContext(run, {}, lambda f, m: None))
    assert not (run.path / "nemo").exists()


def test_local_salm_folder_is_recognised_without_importing_nemo(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"pretrained_llm": "x", "perception": {}}))
    assert availability.is_local_salm(str(tmp_path)) and availability.is_nemo_model(str(tmp_path))
    assert not availability.needs_cuda(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert not availability.is_nemo_model(str(tmp_path))
    assert not availability.is_nemo_model("smollm2-135m-instruct")


def _clip(path, seconds=0.5):
    from engine.audio import write_flac

    write_flac(path, np.zeros(int(16000 * seconds), dtype=np.float32))
    return str(path)


def test_manifest_lines_and_input_cfg(tmp_path):
    a = _clip(tmp_path / "a.flac")
    out = manifests.write_manifest([{"audio": a, "text": " Start metoprolol. ", "duration": 0.5},
                                    {"audio": a, "text": "Aspirin daily."}], tmp_path / "m.json")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0] == {"audio_filepath": a, "duration": 0.5, "text": "Start metoprolol."}
    assert lines[1]["duration"] == pytest.approx(0.5)  # read from the file when the row has none
    ic = manifests.input_cfg(out)
    assert ic == [{"type": "lhotse_as_conversation", "manifest_filepath": str(out),
                   "audio_locator_tag": "<|audioplaceholder|>", "tags": {"context": "Transcribe the following:"}}]
    dc = manifests.data_config(out, out, prompt_format="qwen", batch_size=4, seed=1)
    assert dc["train_ds"]["input_cfg"] == ic and "val" in dc["validation_ds"]["datasets"]


@pytest.mark.parametrize("row,field", [({"audio": "missing.wav", "text": "x", "duration": 1}, "audio"),
                                       ({"text": "  ", "duration": 1}, "text"),
                                       ({"duration": -1, "text": "x"}, "duration"),
                                       ({"duration": "long", "text": "x"}, "duration")])
def test_bad_rows_name_file_line_and_field(tmp_path, row, field):
    good = {"audio": _clip(tmp_path / "a.flac"), "text": "ok", "duration": 0.5}
    row = {"audio": good["audio"], **row}
    with pytest.raises(DataError) as err:
        manifests.manifest_lines([good, row], source="train.jsonl")
    assert (err.value.file, err.value.line, err.value.field) == ("train.jsonl", 2, field)


def test_text_dataset_is_refused(tmp_path):
    class Text:
        kind, name, path = "text", "med-qa", tmp_path

    with pytest.raises(DataError, match="speech dataset"):
        manifests.dataset_manifests(Text(), ["train"], tmp_path / "out")
