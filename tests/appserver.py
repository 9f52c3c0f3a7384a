"""Start the REAL workbench (``python launch.py``) as a child process for tests.

Used by the browser harness (tests/browser/conftest.py) and the plain-HTTP security tests
(tests/test_app_*.py). The child inherits the environment (so ``MEDTUNE_CACHE`` and the
converted embedded models are reused) minus anything that would change what is under test
(``MEDTUNE_AUTH``, ``MEDTUNE_LOGIN_*`` limits, ``GRADIO_*`` overrides, uvicorn's
``FORWARDED_ALLOW_IPS``) unless the caller sets it explicitly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO_ROOT / ".test-artifacts"
#: Cold start on a busy 2-core box: importing gradio + torch takes a while; never the models.
START_TIMEOUT_S = float(os.environ.get("MEDTUNE_TEST_START_TIMEOUT", "180"))


@dataclass
class AppServer:
    """A running ``launch.py`` child: where it serves, its workspace, its process and log."""

    url: str
    port: int
    workspace: "object"  # engine.workspace.Workspace (imported lazily: keep collection light)
    proc: subprocess.Popen
    log_path: Path
    started_in_s: float

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GRADIO_", "MEDTUNE_LOGIN_"))
           and k not in ("MEDTUNE_AUTH", "MEDTUNE_WORKSPACE", "FORWARDED_ALLOW_IPS")}
    env.update({
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1"),
        "TOKENIZERS_PARALLELISM": "false",
    })
    env.update(extra or {})
    return env


def _wait_until_serving(proc: subprocess.Popen, url: str, log_path: Path, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"launch.py exited with code {proc.returncode} before serving.\n"
                               f"--- server log ({log_path}) ---\n{log_path.read_text(errors='replace')}")
        try:
            r = httpx.get(url, timeout=5)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.25)
    raise RuntimeError(f"launch.py did not serve {url} within {timeout:.0f}s (last: {last}).\n"
                       f"--- server log ({log_path}) ---\n{log_path.read_text(errors='replace')}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it lingers; only this child, never a process name."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@contextlib.contextmanager
def running_app(workspace_dir: Path, *, env: dict[str, str] | None = None,
                args: list[str] | None = None, log_name: str = "app-server.log",
                timeout: float = START_TIMEOUT_S) -> Iterator[AppServer]:
    """Start ``launch.py --port <free> --workspace <workspace_dir>``, wait until ``/`` answers
    200, yield an :class:`AppServer`, then stop it. The server log is copied into
    ``.test-artifacts/<log_name>`` at the end (and printed if start-up fails)."""
    from engine.workspace import Workspace

    workspace_dir = Path(workspace_dir)
    workspace_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = workspace_dir.parent / f"{workspace_dir.name}-{log_name}"
    cmd = [sys.executable, str(REPO_ROOT / "launch.py"), "--port", str(port),
           "--workspace", str(workspace_dir), *(args or [])]
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=_child_env(env), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_until_serving(proc, url, log_path, timeout)
        yield AppServer(url=url, port=port, workspace=Workspace.open(workspace_dir), proc=proc,
                        log_path=log_path, started_in_s=time.monotonic() - t0)
    finally:
        stop(proc)
        with contextlib.suppress(OSError):
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copyfile(log_path, ARTIFACTS / log_name)
