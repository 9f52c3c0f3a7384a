"""Data a browser session loads is held by the app, bounded, and freed when the page closes:
the real app in-process, driven over its HTTP API by gradio_client (as the page calls it)."""

from __future__ import annotations

import time

import httpx
import pytest
from appserver import free_port
from gradio_client import Client

import launch
from engine.workspace import Workspace
from ui.app import build_app
from ui.context import AppContext
from ui.sessions import SessionData

LOAD = "/on_load_1"  # the Data tab's Load (Source, Dataset, Upload, Path, Hub id, Hub split, Preset)
SHIPPED = ["Shipped or saved", "pubmedqa-synth", None, "", "", "train", "auto"]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    ws = Workspace.open(tmp_path_factory.mktemp("sessions") / "ws")
    ctx = AppContext(workspace=ws)
    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=4)
    args = launch.build_parser().parse_args(["--port", str(free_port()), "--workspace", str(ws.root)])
    demo.launch(prevent_thread_lock=True, quiet=True, **launch.launch_options(args, ws, None))
    try:
        yield ctx, f"http://127.0.0.1:{args.port}/"
    finally:
        demo.close()


def _until(cond, timeout=30.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_sessions_hold_loaded_rows_until_the_page_closes_and_within_a_cap(app):
    ctx, url = app
    first, second = Client(url, verbose=False), Client(url, verbose=False)
    first.predict(*SHIPPED, api_name=LOAD)
    rows = ctx.sessions.rows_held()
    assert len(ctx.sessions) == 1 and rows > 0
    second.predict(*SHIPPED, api_name=LOAD)
    assert len(ctx.sessions) == 2 and ctx.sessions.rows_held() == 2 * rows

    # The page closing = its heartbeat stream ending: Gradio runs the unload event for it.
    with httpx.stream("GET", f"{url}gradio_api/heartbeat/{first.session_hash}", timeout=10) as stream:
        next(stream.iter_lines())
    assert _until(lambda: len(ctx.sessions) == 1), "the closed session's rows were not released"
    assert ctx.sessions.rows_held() == rows

    # Over the cap the least recently used session is released; its next action says so.
    ctx.sessions.max_rows = rows + rows // 2
    third = Client(url, verbose=False)
    third.predict(*SHIPPED, api_name=LOAD)
    assert len(ctx.sessions) == 1 and ctx.sessions.rows_held() == rows
    status = second.predict(api_name="/on_preview")[0]
    assert "was released" in status and "press Load again" in status and "pubmedqa-synth" in status
    status = third.predict(api_name="/on_preview")[0]
    assert "medtune-banner-ok" in status


def test_session_data_is_bounded_by_rows_and_idle_time():
    store = SessionData(max_rows=10, idle_s=3600)
    assert store.put("a", "A", rows=4) == [] and store.put("b", "B", rows=4) == []
    assert store.get("a") == "A"  # a is now the most recently used
    assert store.put("c", "C", rows=4) == ["b"]
    assert (store.get("b"), store.rows_held()) == (None, 8)
    assert store.put("big", "X", rows=50) == ["a", "c"]  # kept alone even over the cap
    assert len(store) == 1
    store.drop("big")
    assert len(store) == 0
    idle = SessionData(max_rows=10, idle_s=0.05)
    idle.put("a", "A", rows=1)
    time.sleep(0.1)
    assert idle.get("a") is None and idle.rows_held() == 0
