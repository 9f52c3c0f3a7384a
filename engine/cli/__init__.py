"""``medtune``: the command-line twin of the browser workbench.

Each area owns one module here with a ``register(subparsers)`` function that adds its
commands; every command calls the same engine function the UI calls. A
:class:`~engine.errors.MedtuneError` is printed as a plain message with exit code 2; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from engine.errors import MedtuneError

#: Modules under engine.cli, each with register(subparsers). Order = order in --help.
COMMAND_MODULES = ("models", "data", "train", "evaluate", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medtune",
        description="MedTune Workbench: LoRA/QLoRA fine-tuning of medical LLMs and speech models.",
    )
    parser.add_argument("--workspace", help="workspace folder (default: $MEDTUNE_WORKSPACE or ./workspace)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"engine.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except MedtuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
