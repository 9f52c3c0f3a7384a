"""The house's shape is checked, not hoped for: import-linter's contracts (pyproject.toml,
[tool.importlinter]: layers import downward only, the engine never imports the UI, leaves stay
leaves) and ruff's rules (pyproject.toml, [tool.ruff]) run as part of the suite, so a new import
loop or an import hidden in a function fails CI like any other test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> Path:
    exe = BIN / name
    if not exe.exists():
        pytest.fail(f"{name} is not installed in this environment: pip install -c .ci/lock.txt -e '.[test]'")
    return exe


def test_import_contracts_hold():
    out = subprocess.run([str(_tool("lint-imports")), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_ruff_finds_nothing():
    out = subprocess.run([str(_tool("ruff")), "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def test_front_ends_start_without_heavy_packages():
    """The CLI (with every command registered), the app's tabs and the job launcher import no
    torch & co. at start-up: the heavy imports that stay in functions (`# noqa: PLC0415`) are
    what keeps `medtune --help` and the app's start fast; a top-level one creeping in fails here."""
    code = (
        "import importlib, sys\n"
        "import engine.cli, engine.jobs, ui.app\n"
        "engine.cli.build_parser()\n"
        "for _label, mod in ui.app.TABS: importlib.import_module(f'ui.tabs.{mod}')\n"
        "heavy = ('torch', 'transformers', 'peft', 'datasets', 'nemo', 'lightning', 'onnxruntime')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"
