"""Tests that need an optional extra (``@pytest.mark.extra("nemo")``): skipped with the install
command where the extra is absent, failed instead where ``MEDTUNE_REQUIRE_EXTRAS`` names it.
.ci/run installs every extra and sets that variable, so a broken extra install shows as red,
not as a quiet row of skips."""

from __future__ import annotations

import os
from typing import Callable

from engine.data.ner import ner_available
from engine.models.availability import nemo_installed

#: extra name -> probe that says whether it is installed (cheap: no heavy imports)
PROBES: dict[str, Callable[[], bool]] = {"nemo": nemo_installed, "deid": ner_available}


def install_command(extra: str) -> str:
    return f"pip install -c .ci/lock.txt -e '.[{extra}]'"


def required_extras(env: dict | None = None) -> set[str]:
    raw = (os.environ if env is None else env).get("MEDTUNE_REQUIRE_EXTRAS", "")
    return set(raw.replace(",", " ").split())


def verdict(extra: str, installed: bool, required: set[str]) -> tuple[str, str] | None:
    """None when the test can run, else ("skip" | "fail", message naming the install command)."""
    if extra not in PROBES:
        return "fail", f"unknown extra {extra!r} in a test marker (known: {', '.join(sorted(PROBES))})"
    if installed:
        return None
    msg = f"needs the optional {extra!r} extra: {install_command(extra)}"
    if extra in required:
        return "fail", msg + " (MEDTUNE_REQUIRE_EXTRAS says this run must have it)"
    return "skip", msg
