"""The running app over plain HTTP (no browser): bind address, auth on every route (read from
the app's router), sign-in throttling, upload size limit, file serving confined to the
workspace, secrets kept out of the log.

Each fixture starts the REAL ``launch.py`` as a child process (tests/appserver.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from appserver import REPO_ROOT, free_port, running_app
from fastapi.routing import iter_route_contexts

import launch
from engine.config import RunConfig
from engine.data.datasets import save_dataset
from engine.runs import create_run, list_runs
from engine.workspace import Workspace
from ui.app import TABS, build_app
from ui.auth import COOKIE, LoginGate, LoginThrottle
from ui.context import AppContext

USER, PASSWORD = "alice", "s3cret-Pa55word"
#: Saved in the auth server's workspace before it starts: the app lists both in its pickers,
#: so a page that leaks the app's config leaks these names too.
PRIVATE_DATASET, PRIVATE_RUN = "zq-private-notes", "zq private run"


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """No auth, uploads capped at 1 MB."""
    with running_app(tmp_path_factory.mktemp("http-plain") / "ws", args=["--max-upload-mb", "1"],
                     log_name="app-server-plain.log") as srv:
        print(f"cold start to first page: {srv.started_in_s:.1f} s")
        yield srv


@pytest.fixture(scope="module")
def authed(tmp_path_factory):
    """MEDTUNE_AUTH set: everything but the login page must be refused without a session.
    The workspace holds a saved dataset and a run, so their names would show in a leak."""
    ws_dir = tmp_path_factory.mktemp("http-auth") / "ws"
    _seed_private_data(Workspace.open(ws_dir))
    with running_app(ws_dir,
                     env={"MEDTUNE_AUTH": f"{USER}:{PASSWORD}"}, log_name="app-server-auth.log") as srv:
        yield srv


def _seed_private_data(ws: Workspace) -> None:
    save_dataset(ws, PRIVATE_DATASET, {"train": [{"prompt": "q", "response": "a"}]}, kind="text", seed=None,
                 source="test")
    create_run(ws, RunConfig(), name=PRIVATE_RUN)


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
    assert '<form method="post" action="login">' in page.text and 'name="password"' in page.text
    assert "<script" not in page.text and "default-src 'none'" in page.headers["content-security-policy"]
    for leaked in ("Playground", str(authed.workspace.root)):
        assert leaked not in page.text
    print(f"requests refused without auth: {refused + 1} (incl. the page)")


def test_auth_login_then_access_and_wrong_password(authed):
    wrong = httpx.post(authed.url + "login", data={"username": USER, "password": "wrong"})
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies
    with httpx.Client(base_url=authed.url) as c:
        ok = c.post("login", data={"username": USER, "password": PASSWORD})
        assert ok.status_code == 303 and ok.headers["location"] == "./"
        assert "httponly" in ok.headers["set-cookie"].lower() and "samesite=lax" in ok.headers["set-cookie"].lower()
        assert c.get("config").status_code == 200
        assert "Playground" in c.get("").text  # signed in, / is the app
        note = authed.workspace.root / "datasets" / "n.txt"
        note.write_text("hello")
        assert c.get(f"gradio_api/file={note}").text == "hello"
        # Signing out ends the session on the server, not just in this client's cookie jar.
        token = c.cookies[COOKIE]
        assert c.get("logout").status_code == 303
        assert httpx.get(authed.url + "config", cookies={COOKIE: token}).status_code == 401
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
    r = subprocess.run([sys.executable, str(REPO_ROOT / "launch.py"), "--workspace", str(tmp_path / "w")],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "MEDTUNE_AUTH": "alice:pw", "MEDTUNE_LOGIN_LOCKOUT_S": "five"})
    assert r.returncode != 0 and "MEDTUNE_LOGIN_LOCKOUT_S must be a positive number" in r.stderr
    assert "Traceback" not in r.stderr


def _server_routes(ws_dir) -> tuple[list[tuple[str, str]], list[str]]:
    """(method, path) of every route the auth server has, and the app's API names: the app is
    built and launched in-process the same way launch.py does, its router read, then closed."""
    ws = Workspace.open(ws_dir)
    gate = LoginGate([(USER, PASSWORD)])
    demo = build_app(AppContext(workspace=ws), sign_out=True)
    demo.queue(default_concurrency_limit=4)
    args = launch.build_parser().parse_args(["--port", str(free_port()), "--workspace", str(ws.root)])
    demo.launch(prevent_thread_lock=True, quiet=True, **launch.launch_options(args, ws, gate))
    try:
        routes = sorted({(m, r.path) for r in iter_route_contexts(demo.app.routes) if r.path
                         for m in (r.methods or {"GET"})})
    finally:
        demo.close()
    api_names = sorted({d["api_name"] for d in demo.config["dependencies"] if d.get("api_name")})
    return routes, api_names


def _concrete(path: str, file_path: str, api_name: str) -> str:
    """A route's path with its parameters filled in: a real file for path parameters (so a file
    route would serve it), a real endpoint for {api_name}, a dummy for the rest."""
    def value(m: re.Match) -> str:
        name, converter = m.group(1), m.group(2)
        return file_path if converter == ":path" else api_name if name == "api_name" else "x"
    return re.sub(r"{(\w+)(:\w+)?}", value, path)


def _fetch(client: httpx.Client, method: str, url: str) -> tuple[int, bytes]:
    """Status and (up to 1 MB of) body; an event stream that stays open counts with what came."""
    body = {"data": [], "fn_index": 0, "session_hash": "x"} if method in ("POST", "PUT") else None
    got = b""
    with client.stream(method, url, json=body) as r:
        try:
            for chunk in r.iter_bytes():
                got += chunk
                if len(got) > 1_000_000:
                    break
        except httpx.ReadTimeout:
            pass
        return r.status_code, got


#: The login page's own routes: they answer without a session, but with nothing of the app.
LOGIN_PAGES = {"/", "/login", "/logout"}


def test_unauthenticated_surface_holds_nothing_of_the_app(authed, tmp_path):
    """Every route of the server (read from its router, not listed by hand), asked without a
    session, is refused (401/403) or is the login page, and no answer holds an endpoint name,
    a tab label, the workspace path, a run id or a dataset name."""
    routes, api_names = _server_routes(tmp_path / "ws")
    routes.append(("GET", "/login"))  # the gate's page: answered before Gradio's router
    assert len(routes) > 40 and len(api_names) > 20, (len(routes), api_names)
    run_ids = [r.id for r in list_runs(authed.workspace)]
    assert run_ids and PRIVATE_DATASET in os.listdir(authed.workspace.datasets)
    markers = ([n for n in api_names if len(n) >= 6] + [label for label, _ in TABS] + run_ids
               + [PRIVATE_DATASET, str(authed.workspace.root), "gradio_api_info", "gradio_config",
                  '"components"', '"dependencies"', "/gradio_api/"])
    secret = authed.workspace.root / "datasets" / "patient-note.txt"
    secret.write_text("synthetic but private")
    markers.append("synthetic but private")
    problems = []
    with httpx.Client(base_url=authed.url.rstrip("/"), timeout=httpx.Timeout(20, read=3)) as c:
        for method, path in routes:
            status, body = _fetch(c, method, _concrete(path, str(secret), "on_ask"))
            leaked = [m for m in markers if m.encode() in body]
            if leaked:
                problems.append(f"{method} {path}: {status}, holds {leaked[:5]}")
            elif status not in (401, 403) and path not in LOGIN_PAGES:
                problems.append(f"{method} {path}: answers {status} without a session")
        # The markers are real: signed in, the page does hold them.
        assert c.post("/login", data={"username": USER, "password": PASSWORD}).status_code == 303
        page = c.get("/").text
    assert problems == [], f"{len(problems)} of {len(routes)} routes answer without a session:\n" + "\n".join(problems)
    assert run_ids[0] in page and PRIVATE_DATASET in page and "on_ask" in page
    print(f"{len(routes)} routes asked without a session: none holds anything of the app")


def test_login_is_throttled(tmp_path):
    """Wrong passwords: past the per-client limit that client is locked out (the right password
    too), past the global limit every client is; each lockout is logged without a password."""
    env = {"MEDTUNE_AUTH": f"{USER}:{PASSWORD}", "MEDTUNE_LOGIN_MAX_FAILURES": "3",
           "MEDTUNE_LOGIN_MAX_FAILURES_GLOBAL": "6", "MEDTUNE_LOGIN_LOCKOUT_S": "120"}
    wrong = [f"wrong-guess-{i}" for i in range(8)]
    with running_app(tmp_path / "ws", env=env, log_name="app-server-throttle.log") as srv, \
            httpx.Client(base_url=srv.url) as c:
        def login(password: str, client: str | None = None) -> httpx.Response:
            # uvicorn takes X-Forwarded-For from a loopback peer (a local reverse proxy), so
            # this is how one test machine speaks for several clients.
            headers = {"X-Forwarded-For": client} if client else {}
            return c.post("login", data={"username": USER, "password": password}, headers=headers)

        assert all(login(pw).status_code in (400, 401) for pw in wrong[:3])
        locked = login(wrong[3])
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
        right = login(PASSWORD)
        assert right.status_code == 429, "the right password must not get in during a lockout"
        assert c.get("config").status_code == 401
        # Other clients still may, until the failures from everyone reach the global limit.
        assert login(wrong[4], "10.0.0.1").status_code in (400, 401)
        assert login(wrong[5], "10.0.0.2").status_code in (400, 401)
        assert login(wrong[6], "10.0.0.3").status_code in (400, 401)  # 6th failure overall
        assert login(PASSWORD, "10.0.0.4").status_code == 429
        time.sleep(0.3)
        log = srv.log()
    lockouts = [line for line in log.splitlines() if "locked out" in line]
    assert any("127.0.0.1" in line for line in lockouts), log[-3000:]
    assert any("all clients" in line for line in lockouts), log[-3000:]
    for secret in [PASSWORD, *wrong]:
        assert secret not in log


def test_throttle_forgets_after_the_lockout():
    """The limits over time (a fake clock): failures older than the window stop counting, a
    lockout ends after lockout_s, and a successful sign-in clears that client's count."""
    now = [0.0]
    t = LoginThrottle(per_client=2, total=3, lockout_s=60, clock=lambda: now[0])
    t.failed("a")
    now[0] = 61
    t.failed("a")  # the first one has aged out: not locked
    assert t.retry_after("a") == 0
    t.succeeded("a")
    t.failed("a")  # count restarted by the success
    assert t.retry_after("a") == 0
    t.failed("a")
    assert t.retry_after("a") == 60 and t.retry_after("b") == 60  # a: own limit; 3 overall: global
    now[0] = 121
    assert t.retry_after("a") == 0 and t.retry_after("b") == 0
