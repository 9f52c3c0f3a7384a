"""The running app over plain HTTP (no browser): bind address, auth on every route, upload
size limit, file serving confined to the workspace, secrets kept out of the log.

Each fixture starts the REAL ``launch.py`` as a child process (tests/appserver.py).
"""

from __future__ import annotations

import time

import os
import subprocess
import sys

import httpx
import psutil
import pytest

from appserver import REPO_ROOT, running_app

USER, PASSWORD = "alice", "s3cret-Pa55word"


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """No auth, uploads capped at 1 MB."""
    with running_app(tmp_path_factory.mktemp("http-plain") / "ws", args=["--max-upload-mb", "1"],
                     log_name="app-server-plain.log") as srv:
        print(f"cold start to first page: {srv.started_in_s:.1f} s")
        yield srv


@pytest.fixture(scope="module")
def authed(tmp_path_factory):
    """MEDTUNE_AUTH set: everything but the login page must be refused without a session."""
    with running_app(tmp_path_factory.mktemp("http-auth") / "ws",
                     env={"MEDTUNE_AUTH": f"{USER}:{PASSWORD}"}, log_name="app-server-auth.log") as srv:
        yield srv


def _listening(pid: int) -> set[str]:
    return {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def test_binds_loopback_only_by_default(plain):
    assert _listening(plain.proc.pid) == {"127.0.0.1"}


def test_page_says_what_it_is(plain):
    r = httpx.get(plain.url)
    assert r.status_code == 200
    assert '<meta property="og:title" content="MedTune Workbench"' in r.text
    cfg = httpx.get(plain.url + "config").json()
    assert cfg["title"] == "MedTune Workbench"
    assert cfg["analytics_enabled"] is False
    labels = {c.get("props", {}).get("label") for c in cfg["components"]}
    assert {"Playground", "Data", "Train", "Compare", "Evaluate", "Export"} <= labels
    assert cfg.get("max_file_size") == 1024 * 1024


def test_upload_size_limited(plain):
    small = httpx.post(plain.url + "gradio_api/upload", files={"files": ("ok.bin", b"x" * 100_000)})
    assert small.status_code == 200, small.text
    saved = small.json()[0]
    # Uploads land inside the workspace, not in a shared /tmp folder.
    assert saved.startswith(str(plain.workspace.uploads)), saved
    big = httpx.post(plain.url + "gradio_api/upload", files={"files": ("big.bin", b"x" * 2_000_000)})
    assert big.status_code == 413, big.text


def test_file_route_confined_to_workspace(plain):
    inside = plain.workspace.root / "datasets" / "note.txt"
    inside.write_text("synthetic note")
    ok = httpx.get(f"{plain.url}gradio_api/file={inside}")
    assert ok.status_code == 200 and ok.text == "synthetic note"
    for outside in ("/etc/passwd", f"{plain.workspace.root}/../../etc/passwd", str(REPO_ROOT / "launch.py"),
                    str(plain.workspace.root.parent / "http-plain-outside.txt")):
        r = httpx.get(f"{plain.url}gradio_api/file={outside}")
        assert r.status_code in (403, 404), (outside, r.status_code)
        assert "root:" not in r.text


PROTECTED_GET = ["config", "gradio_api/info", "gradio_api/openapi.json", "gradio_api/queue/data?session_hash=x",
                 "gradio_api/upload_progress?upload_id=x", "gradio_api/file=/etc/hostname",
                 "gradio_api/file/etc/hostname", "monitoring", "gradio_api/deep_link?session_hash=x"]
PROTECTED_POST = ["gradio_api/queue/join", "gradio_api/upload", "gradio_api/run/predict",
                  "gradio_api/call/predict", "gradio_api/process_recording"]


def test_auth_refuses_every_route_without_login(authed):
    refused = 0
    secret = authed.workspace.root / "datasets" / "patient-note.txt"
    secret.write_text("synthetic but private")
    for route in PROTECTED_GET + [f"gradio_api/file={secret}", f"gradio_api/file/{secret}"]:
        r = httpx.get(authed.url + route)
        assert r.status_code in (401, 403), (route, r.status_code, r.text[:200])
        refused += 1
    for route in PROTECTED_POST:
        r = httpx.post(authed.url + route, json={"data": [], "fn_index": 0, "session_hash": "x"})
        assert r.status_code in (401, 403), (route, r.status_code, r.text[:200])
        refused += 1
    # The page itself is only the login form: no tabs, no components, no workspace paths.
    page = httpx.get(authed.url)
    assert page.status_code == 200
    assert '"auth_required":true' in page.text.replace(" ", "")
    for leaked in ("Playground", str(authed.workspace.root)):
        assert leaked not in page.text
    print(f"requests refused without auth: {refused + 1} (incl. the page)")


def test_auth_login_then_access_and_wrong_password(authed):
    assert httpx.post(authed.url + "login", data={"username": USER, "password": "wrong"}).status_code in (400, 401)
    with httpx.Client(base_url=authed.url) as c:
        assert c.post("login", data={"username": USER, "password": PASSWORD}).status_code == 200
        assert c.get("config").status_code == 200
        note = authed.workspace.root / "datasets" / "n.txt"
        note.write_text("hello")
        assert c.get(f"gradio_api/file={note}").text == "hello"
    # The password never reaches the log.
    time.sleep(0.2)
    assert PASSWORD not in authed.log()


def test_second_launch_on_same_port_fails_clearly(plain, tmp_path):
    r = subprocess.run([sys.executable, str(REPO_ROOT / "launch.py"), "--port", str(plain.port),
                        "--workspace", str(tmp_path / "ws2")], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0
    assert "port is in use" in r.stderr and "--port" in r.stderr
    assert "Traceback" not in r.stderr
    assert httpx.get(plain.url).status_code == 200  # the first one keeps serving


def test_bad_workspace_and_auth_fail_clearly(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    r = subprocess.run([sys.executable, str(REPO_ROOT / "launch.py"), "--workspace", str(blocker)],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Cannot use the workspace" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, str(REPO_ROOT / "launch.py"), "--workspace", str(tmp_path / "w")],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "MEDTUNE_AUTH": "alice-no-colon-secretvalue"})
    assert r.returncode != 0 and "user:password" in r.stderr and "secretvalue" not in r.stderr
