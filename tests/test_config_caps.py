"""Caps on config text and config files, and run listings that read a small head of each
config: a 50 MB system prompt once grew a job to 4.8 GB and made every `medtune runs list` and
Train-tab refresh take ~30 s. Real files, the real CLI (engine.cli.main), real workspaces."""

from __future__ import annotations

import json

import pytest
import yaml

from engine.cli import main
from engine.config import MAX_CONFIG_BYTES, MAX_PROMPT_CHARS, RunConfig, iter_fields
from engine.errors import ConfigError
from engine.preflight import load_config, validate
from engine.runs import SUMMARY_READ_BYTES, create_run, list_runs
from ui.context import AppContext
from ui.tabs.train import TABLE_COLS, runs_table


def test_every_free_text_field_has_a_cap():
    for section, name, typ, default, meta in iter_fields():
        if typ is str and "choices" not in meta:
            assert isinstance(meta.get("max_len"), int), f"{section}.{name}: give it max_len"
            assert len(default) <= meta["max_len"]


def test_text_over_its_cap_is_refused_naming_the_field():
    at_cap = RunConfig().with_overrides({"data.system_prompt": "x" * MAX_PROMPT_CHARS})
    assert validate(at_cap) == []
    over = RunConfig().with_overrides({"data.system_prompt": "x" * (MAX_PROMPT_CHARS + 1),
                                       "lora.target_modules": "q_proj," * 1000})
    assert validate(over) == [
        f"data.system_prompt: must be at most {MAX_PROMPT_CHARS:,} characters, got {MAX_PROMPT_CHARS + 1:,}",
        "lora.target_modules: must be at most 2,000 characters, got 7,000"]


def test_cli_refuses_an_over_long_prompt_without_a_traceback(workspace, capsys):
    path = workspace.root / "long.yaml"
    # lora.r is out of range as well, so even a regression of the cap could not start a job.
    path.write_text(yaml.safe_dump({"data": {"system_prompt": "y" * 100_000}, "lora": {"r": 0}}))
    assert main(["--workspace", str(workspace.root), "train", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"data.system_prompt: must be at most {MAX_PROMPT_CHARS:,} characters, got 100,000" in err
    assert str(path) in err and "Traceback" not in err
    assert list_runs(workspace) == []


def test_config_file_over_the_size_cap_is_refused_unparsed(workspace, capsys, monkeypatch):
    path = workspace.root / "huge.yaml"
    path.write_text(yaml.safe_dump({"data": {"system_prompt": "z" * MAX_CONFIG_BYTES}}))
    monkeypatch.setattr(yaml.reader.Reader, "__init__", _no_parse)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.problems == [f"the file is larger than {MAX_CONFIG_BYTES:,} bytes, the most a config may be "
                                f"(data.system_prompt holds at most {MAX_PROMPT_CHARS:,} characters)"]
    assert str(path) in str(e.value)
    assert main(["--workspace", str(workspace.root), "train", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and f"larger than {MAX_CONFIG_BYTES:,} bytes" in err and "Traceback" not in err
    assert list_runs(workspace) == []


def _no_parse(self, stream):
    raise AssertionError("the YAML parser was run on an oversized file")


def test_a_run_with_a_huge_config_lists_from_the_head_of_its_config(workspace, capsys, monkeypatch):
    """An old run whose config.yaml holds a huge system prompt (written directly, bypassing
    validation, as runs made before the cap could have) lists with the same row as any run, and
    listing never hands more than the head of that file to the YAML parser."""
    normal = create_run(workspace, RunConfig().with_overrides({"model.name": "whisper-tiny.en",
                                                                "data.dataset": "med-dictation"}), "normal")
    cfg = RunConfig().with_overrides({"model.name": "someone/med-model: v2", "data.dataset": "my set"})
    old = create_run(workspace, cfg, "old")
    cfg.data.system_prompt = "é" * (MAX_CONFIG_BYTES // 2)  # > MAX_CONFIG_BYTES once written as YAML
    old.config_path.write_text(cfg.to_yaml("# run old"))
    assert old.config_path.stat().st_size > MAX_CONFIG_BYTES

    parsed: list[int] = []
    real_init = yaml.reader.Reader.__init__

    def spy(self, stream):
        parsed.append(len(stream))
        assert len(stream) <= SUMMARY_READ_BYTES, "a whole config.yaml was handed to the YAML parser"
        real_init(self, stream)
    monkeypatch.setattr(yaml.reader.Reader, "__init__", spy)

    rows = {r.id: r.summary() for r in list_runs(workspace)}
    assert (rows[old.id]["model"], rows[old.id]["data"]) == ("someone/med-model: v2", "my set")
    assert (rows[normal.id]["model"], rows[normal.id]["data"]) == ("whisper-tiny.en", "med-dictation")
    assert rows[old.id]["state"] == "queued"

    assert main(["--workspace", str(workspace.root), "runs", "list", "--json"]) == 0
    listed = {r["run"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed == rows

    table = {row[0]: dict(zip(TABLE_COLS, row)) for row in runs_table(AppContext(workspace=workspace))}
    assert (table[old.id]["model"], table[old.id]["data"]) == ("someone/med-model: v2", "my set")
    assert parsed  # the spy saw the (small) reads

    # Reading the whole config is refused at once, naming the file, not parsed for seconds.
    with pytest.raises(ConfigError, match=f"larger than {MAX_CONFIG_BYTES:,} bytes") as e:
        old.config()
    assert str(old.config_path) in str(e.value)
