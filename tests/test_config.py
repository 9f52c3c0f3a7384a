"""RunConfig: defaults, YAML round-trip, validation that names every bad field at once."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from engine.config import RunConfig, diff_configs, iter_fields
from engine.errors import ConfigError
from engine.preflight import load_config, validate


def test_defaults_valid_and_every_field_has_help():
    cfg = RunConfig()
    assert validate(cfg) == []
    fields = list(iter_fields(cfg))
    assert len(fields) > 30
    for section, name, typ, value, meta in fields:
        assert meta.get("help"), f"{section}.{name} has no help text"
        assert typ in (bool, int, float, str)
        if "choices" in meta:
            assert value in meta["choices"]


def test_yaml_round_trip(tmp_path):
    cfg = RunConfig().with_overrides({"lora.r": 8, "lora.use_rslora": True, "train.learning_rate": 3e-4,
                                      "model.quantization": "4bit"})
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml("# header comment"))
    back = load_config(path)
    assert back == cfg
    assert dataclasses.asdict(back)["lora"]["r"] == 8


def test_yaml_strings_are_coerced(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rate: 1e-3\n  epochs: 2\nlora:\n  target_modules: [q_proj, v_proj]\n")
    cfg = load_config(path)
    assert cfg.train.learning_rate == pytest.approx(1e-3)
    assert cfg.train.epochs == 2.0
    assert cfg.lora.target_modules == "q_proj,v_proj"


def test_invalid_config_reports_all_problems(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"name": "whisper-tiny.en", "quantization": "3bit"},
        "data": {"dataset": "med-qa"},
        "lora": {"r": 0, "alpha": -2, "dropout": 1.0, "rank": 4},
        "train": {"learning_rate": 0, "batch_size": "many"},
        "extra": {},
    }))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    text = "\n".join(problems)
    for needle in ("lora.rank: unknown key", "extra: unknown section", "train.batch_size: expected an integer",
                   "lora.r: must be a positive integer", "lora.alpha: must be positive",
                   "lora.dropout: must be less than 1.0", "train.learning_rate: must be positive",
                   "model.quantization: must be one of", "data.dataset: whisper-tiny.en is a speech model"):
        assert needle in text, f"missing {needle!r} in:\n{text}"
    assert str(path) in str(info.value)


def test_cross_field_checks():
    cfg = RunConfig().with_overrides({"model.quantization": "4bit", "lora.full_finetune": True,
                                      "lora.encoder_lora": True})
    problems = "\n".join(validate(cfg))
    assert "lora.full_finetune" in problems
    assert "lora.encoder_lora: only applies to speech models" in problems


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_diff_configs():
    a = RunConfig()
    b = a.with_overrides({"lora.r": 32})
    rows = diff_configs({"a": a, "b": b})
    assert rows == [{"field": "lora.r", "a": 16, "b": 32}]
