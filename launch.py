"""Start the MedTune Workbench in the browser: ``python launch.py`` -> http://127.0.0.1:7860

Binds 127.0.0.1 unless ``--host`` says otherwise; ``--share`` is off unless asked for.
Set ``MEDTUNE_AUTH=user:password`` (several separated by commas) to require a login: the whole
app then sits behind ui/auth.py's gate (its own sign-in page, wrong passwords throttled).
Uploads are limited to ``--max-upload-mb`` (default 256 MB) and land inside the workspace.
"""

from __future__ import annotations

import argparse
import os
import sys

# Before gradio is imported: no usage analytics or telemetry leave this machine (medical
# data lives here). Forced, not defaulted: a stray GRADIO_ANALYTICS_ENABLED=True in the
# environment must not switch it back on.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["DO_NOT_TRACK"] = "1"

import engine  # noqa: E402,F401 - sets OpenMP's passive wait before anything loads torch (see engine/__init__.py)
from engine.workspace import ASSETS, Workspace  # noqa: E402
from ui.auth import LoginGate, LoginThrottle  # noqa: E402 - starlette only: gradio must wait for GRADIO_TEMP_DIR
from ui.context import AppContext  # noqa: E402 - no gradio here either

DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 256


def parse_auth(value: str | None) -> list[tuple[str, str]] | None:
    """``user:pass[,user2:pass2]`` -> [(user, pass), ...]; None when unset.

    The error message never echoes the value: it holds a password.
    """
    if not value or not value.strip():
        return None
    pairs = []
    for item in value.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user.strip() or not password:
            raise SystemExit("MEDTUNE_AUTH must look like 'user:password' (comma-separate several).")
        pairs.append((user.strip(), password))
    return pairs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="MedTune Workbench (browser app)")
    # Spaces sets GRADIO_SERVER_NAME/PORT; locally the default stays on loopback.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT)),
                        help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--workspace", default=None,
                        help="workspace folder (default: $MEDTUNE_WORKSPACE or ./workspace)")
    parser.add_argument("--share", action="store_true",
                        help="create a public gradio.live link (off by default; exposes the app to the internet)")
    parser.add_argument("--max-upload-mb", type=float,
                        default=float(os.environ.get("MEDTUNE_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB)),
                        help=f"largest accepted upload in MB (default {DEFAULT_MAX_UPLOAD_MB})")
    return parser


def launch_options(args: argparse.Namespace, ws: Workspace, gate: LoginGate | None) -> dict:
    """Keyword arguments for ``Blocks.launch``. With a gate, Gradio's own login stays off (it
    would serve the app's API description to anyone, see ui/auth.py): the gate's middleware
    answers every request without a session, and Gradio asks it who is signed in."""
    from ui.app import launch_kwargs  # noqa: PLC0415 - imports gradio: only once GRADIO_TEMP_DIR is set (main)

    opts = dict(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        allowed_paths=[str(ws.root)] + ([str(ASSETS)] if ASSETS.is_dir() else []),
        max_file_size=int(args.max_upload_mb * 1024 * 1024),
        **launch_kwargs(),
    )
    if gate is not None:
        opts.update(auth_dependency=gate.user_of, app_kwargs={"middleware": [gate.middleware()]})
    return opts


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    auth = parse_auth(os.environ.get("MEDTUNE_AUTH"))
    if args.max_upload_mb <= 0:
        raise SystemExit("--max-upload-mb must be positive.")
    try:
        # Spaces set SYSTEM=spaces (Gradio checks the same): the app is framed by huggingface.co.
        gate = (LoginGate(auth, LoginThrottle.from_env(os.environ), in_space=os.environ.get("SYSTEM") == "spaces")
                if auth else None)
    except ValueError as e:
        raise SystemExit(str(e)) from e

    try:
        ws = Workspace.open(args.workspace)
    except OSError as e:  # a file in the way, no permission, read-only disk
        raise SystemExit(f"Cannot use the workspace {args.workspace or '(default)'}: {e.strerror or e}") from e
    # Browser uploads go to the workspace (not a world-readable /tmp/gradio), so they stay
    # with the rest of the user's data and pass Workspace.resolve(). Gradio reads this
    # variable at import time, hence before the import below.
    os.environ["GRADIO_TEMP_DIR"] = str(ws.uploads / "gradio")

    from ui.app import build_app  # noqa: PLC0415 - imports gradio, which reads GRADIO_TEMP_DIR at import

    demo = build_app(AppContext(workspace=ws), sign_out=gate is not None)
    demo.queue(default_concurrency_limit=4)
    print(f"MedTune Workbench: workspace {ws.root}; auth {'on' if auth else 'off'}; "
          f"binding {args.host}:{args.port}", flush=True)
    try:
        demo.launch(**launch_options(args, ws, gate))
    except OSError as e:  # Gradio's "Cannot find empty port": most often a second launch
        raise SystemExit(f"Cannot serve on {args.host}:{args.port}: the port is in use (is the workbench "
                         f"already running?) or the address is not available. Pick another with --port. ({e})") from e
    return 0


if __name__ == "__main__":
    sys.exit(main())
