"""Start the MedTune Workbench in the browser: ``python launch.py`` -> http://127.0.0.1:7860

Binds 127.0.0.1 unless ``--host`` says otherwise; ``--share`` is off unless asked for.
Set ``MEDTUNE_AUTH=user:password`` (several separated by commas) to require a login.
"""

from __future__ import annotations

import argparse
import os
import sys

# Before gradio is imported: no usage analytics leave this machine (medical data lives here).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")


def parse_auth(value: str | None) -> list[tuple[str, str]] | None:
    """``user:pass[,user2:pass2]`` -> [(user, pass), ...]; None when unset."""
    if not value:
        return None
    pairs = []
    for item in value.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user or not password:
            raise SystemExit("MEDTUNE_AUTH must look like 'user:password' (comma-separate several).")
        pairs.append((user, password))
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="MedTune Workbench (browser app)")
    # Spaces sets GRADIO_SERVER_NAME/PORT; locally the default stays on loopback.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--workspace", default=None, help="workspace folder (default ./workspace)")
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link (off by default)")
    args = parser.parse_args(argv)

    from engine.workspace import Workspace
    from ui.app import build_app
    from ui.context import AppContext

    ws = Workspace.open(args.workspace)
    demo = build_app(AppContext(workspace=ws))
    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        auth=parse_auth(os.environ.get("MEDTUNE_AUTH")),
        allowed_paths=[str(ws.root)],
        show_error=True,
    )


if __name__ == "__main__":
    sys.exit(main())
