"""The shared base: atomic writes, workspace confinement, error messages, CLI wiring."""

from __future__ import annotations

import os

import pytest

from engine import atomic
from engine.errors import ConfigError, DataError, PathError


def test_write_json_is_atomic_and_leaves_no_temp(tmp_path):
    target = tmp_path / "status.json"
    atomic.write_json(target, {"state": "running"})
    atomic.write_json(target, {"state": "completed"})
    assert target.read_text().count("completed") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_atomic_dir_failure_leaves_nothing(tmp_path):
    final = tmp_path / "export"
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(final) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("disk full")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_success(tmp_path):
    with atomic.atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
    assert (tmp_path / "out" / "a.txt").read_text() == "a"


def test_workspace_refuses_escape(workspace, tmp_path):
    inside = workspace.root / "datasets" / "x.jsonl"
    inside.write_text("{}\n")
    assert workspace.resolve("datasets/x.jsonl", must_exist=True) == inside
    for bad in ("../../etc/passwd", "/etc/passwd", str(tmp_path)):
        with pytest.raises(PathError, match="outside the workspace"):
            workspace.resolve(bad)
    link = workspace.root / "uploads" / "sneaky"
    os.symlink("/etc", link)
    with pytest.raises(PathError):
        workspace.resolve("uploads/sneaky/passwd")


def test_errors_name_file_line_field():
    err = DataError("not valid JSON", file="qa.jsonl", line=7, field="response")
    assert str(err).startswith("qa.jsonl, line 7, field 'response': not valid JSON")
    cerr = ConfigError(["lora.r: must be a positive integer", "train.lr: must be > 0"])
    assert "lora.r" in str(cerr) and "train.lr" in str(cerr)


def test_cli_help_lists_areas(capsys):
    from engine.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "medtune" in capsys.readouterr().out
