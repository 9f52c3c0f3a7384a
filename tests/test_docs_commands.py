"""Every `medtune ...` line a user is told to run (recipe headers, README code blocks) is a real
command: the CLI's own parser accepts it. (A GPU recipe once opened with `medtune data import`,
a command that never existed, so a GPU user's first step failed.)"""

from __future__ import annotations

import re
import shlex

import pytest

from engine.cli import build_parser
from engine.workspace import ASSETS, REPO_ROOT


def _commands() -> list[tuple[str, str]]:
    found = []
    for recipe in sorted((ASSETS / "recipes").glob("*.yaml")):
        for line in recipe.read_text().splitlines():
            if line.startswith("#") and re.search(r"(^|\s)medtune\s", line):
                found.append((recipe.name, line.lstrip("# ")))
    in_block = False
    for line in (REPO_ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif in_block and re.match(r"^([A-Z_]+=\S+\s+)*medtune\s", line):
            found.append(("README.md", line))
    return found


COMMANDS = _commands()


def test_the_docs_show_commands_at_all():
    assert {src for src, _ in COMMANDS} >= {"README.md", "llama31-8b-qlora-healthcaremagic.yaml"}
    assert len(COMMANDS) > 30


@pytest.mark.parametrize(("source", "line"), COMMANDS, ids=[f"{s}:{line[:60]}" for s, line in COMMANDS])
def test_documented_command_parses(source, line):
    text = re.split(r"\s{2,}#", line)[0]  # a trailing comment after two spaces
    words = shlex.split(text)
    while words and re.match(r"^[A-Z_]+=", words[0]):  # HF_TOKEN=... medtune ...
        words.pop(0)
    assert words[0] == "medtune", line
    argv = [re.sub(r"^\[(.*)\]$", r"\1", w) for w in words[1:]]  # "[--force]": an optional flag
    try:
        build_parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{source}: `{text}` is not a command `medtune` accepts (exit {e.code})")
