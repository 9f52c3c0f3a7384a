"""Every shipped recipe loads, validates, and carries its launch command in its header."""

from __future__ import annotations

import pytest
import yaml

from engine.models.availability import is_nemo_model
from engine.preflight import load_config, validate
from engine.workspace import ASSETS

RECIPES = sorted((ASSETS / "recipes").glob("*.yaml"))


def _recipe_param(path):
    # a NeMo recipe is refused by validation ("install NeMo") where the extra is absent
    model = yaml.safe_load(path.read_text())["model"]["name"]
    return pytest.param(path, marks=[pytest.mark.extra("nemo")] if is_nemo_model(model) else [])


def test_recipes_exist():
    names = {p.name for p in RECIPES}
    assert {"whisper-tiny-med-dictation.yaml", "smollm2-med-qa.yaml", "llama31-8b-qlora-healthcaremagic.yaml",
            "phi2-lora-medqa.yaml", "llama2-7b-qlora-pubmedqa.yaml", "whisper-small-lora-dictation.yaml"} <= names


@pytest.mark.parametrize("path", [_recipe_param(p) for p in RECIPES], ids=lambda p: p.name)
def test_recipe_is_valid(path):
    cfg = load_config(path)
    assert validate(cfg) == []
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert any(f"medtune train assets/recipes/{path.name}" in line for line in header)


def test_gpu_recipes_ask_for_qlora():
    cfg = load_config(ASSETS / "recipes" / "llama31-8b-qlora-healthcaremagic.yaml")
    assert (cfg.model.quantization, cfg.lora.r, cfg.lora.alpha) == ("4bit", 16, 32.0)
    cfg = load_config(ASSETS / "recipes" / "phi2-lora-medqa.yaml")
    assert (cfg.model.quantization, cfg.lora.r, cfg.lora.alpha) == ("4bit", 8, 16.0)
