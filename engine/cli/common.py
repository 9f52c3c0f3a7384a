"""Helpers shared by the CLI modules."""

from __future__ import annotations

import argparse

from engine.workspace import Workspace


def workspace(args: argparse.Namespace) -> Workspace:
    return Workspace.open(getattr(args, "workspace", None))
