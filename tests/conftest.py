"""Shared fixtures. Tests run the real thing at small size: real models from the embedded
cache, real child processes, a real Gradio server, Debian's Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No telemetry and no hub traffic from any test, whatever the developer's environment says.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from extras import PROBES, required_extras, verdict  # noqa: E402
from slurm_cluster import slurm_cluster  # noqa: E402,F401 - the real single-node Slurm fixture

import engine  # noqa: E402,F401 - OpenMP passive wait before any test imports torch (engine/__init__.py)

ARTIFACTS = Path(__file__).resolve().parent.parent / ".test-artifacts"


def pytest_runtest_setup(item):
    required = required_extras()
    for mark in item.iter_markers("extra"):
        (name,) = mark.args
        probe = PROBES.get(name)
        found = verdict(name, bool(probe and probe()), required)
        if found:
            kind, msg = found
            (pytest.fail if kind == "fail" else pytest.skip)(msg)


@pytest.fixture
def workspace(tmp_path):
    from engine.workspace import Workspace

    return Workspace.open(tmp_path / "ws")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a local transformers folder (converted once per cache)."""
    from engine.models.embedded import ensure_embedded

    return ensure_embedded("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def whisper_dir() -> Path:
    """The embedded Whisper tiny.en as a local transformers folder (converted once per cache)."""
    from engine.models.embedded import ensure_embedded

    return ensure_embedded("whisper-tiny.en")
