"""launch.py's command line and auth parsing, and the launch settings that keep the app
private (no share link, no run history, no monitoring, no MCP server)."""

from __future__ import annotations

import pytest

import launch
from ui.app import TABS, build_app, launch_kwargs
from ui.context import AppContext


def test_defaults_are_private(monkeypatch):
    for var in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "MEDTUNE_MAX_UPLOAD_MB"):
        monkeypatch.delenv(var, raising=False)
    args = launch.build_parser().parse_args([])
    assert args.host == "127.0.0.1"
    assert args.port == 7860
    assert args.share is False
    assert args.max_upload_mb == launch.DEFAULT_MAX_UPLOAD_MB
    kw = launch_kwargs()
    assert kw["run_history"] is False and kw["enable_monitoring"] is False and kw["mcp_server"] is False


def test_flags():
    args = launch.build_parser().parse_args(["--host", "0.0.0.0", "--port", "9000", "--workspace", "/x",
                                             "--share", "--max-upload-mb", "5"])
    assert (args.host, args.port, args.workspace, args.share, args.max_upload_mb) == ("0.0.0.0", 9000, "/x", True, 5.0)


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), ("  ", None),
    ("alice:pw", [("alice", "pw")]),
    ("alice:p:w,bob:x", [("alice", "p:w"), ("bob", "x")]),
])
def test_parse_auth(value, expected):
    assert launch.parse_auth(value) == expected


@pytest.mark.parametrize("value", ["alice", "alice:", ":pw", "alice:pw,bob"])
def test_parse_auth_rejects_without_echoing_the_secret(value):
    with pytest.raises(SystemExit) as e:
        launch.parse_auth(value)
    assert "user:password" in str(e.value)
    assert "pw" not in str(e.value)


def test_app_builds_with_every_tab(workspace):
    demo = build_app(AppContext(workspace=workspace))
    labels = {getattr(b, "label", None) for b in demo.blocks.values()}
    assert {label for label, _ in TABS} <= labels
    assert demo.title == "MedTune Workbench"
