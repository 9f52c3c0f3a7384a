"""The optional-extra marker: skip with the install command, fail where CI requires the extra."""

from __future__ import annotations

from pathlib import Path

import pytest
from extras import PROBES, install_command, required_extras, verdict


def test_missing_extra_skips_naming_the_locked_install_command():
    kind, msg = verdict("nemo", installed=False, required=set())
    assert kind == "skip" and "pip install -c .ci/lock.txt -e '.[nemo]'" in msg
    assert verdict("nemo", installed=True, required={"nemo"}) is None


def test_required_extra_that_is_missing_fails_instead_of_skipping():
    assert required_extras({"MEDTUNE_REQUIRE_EXTRAS": "nemo, other"}) == {"nemo", "other"}
    assert required_extras({}) == set()
    kind, msg = verdict("nemo", installed=False, required={"nemo"})
    assert kind == "fail" and install_command("nemo") in msg and "MEDTUNE_REQUIRE_EXTRAS" in msg
    assert verdict("nemo-typo", installed=True, required=set())[0] == "fail"


def test_ci_requires_every_extra_the_markers_name():
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    line = next(ln for ln in ci.splitlines() if "MEDTUNE_REQUIRE_EXTRAS=" in ln)
    assert set(PROBES) <= required_extras({"MEDTUNE_REQUIRE_EXTRAS": line.split("=", 1)[1].strip("'\"")})


@pytest.mark.extra("nemo")
def test_marker_lets_the_test_run_where_the_extra_is_installed():
    assert PROBES["nemo"]()  # reached only where the probe said yes
