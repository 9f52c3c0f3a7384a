"""Browser harness: the REAL app (``launch.py`` child process) driven by Debian's Chromium.

Fixtures
    app           session-scoped running server: ``.url``, ``.workspace`` (engine Workspace),
                  ``.proc``, ``.log()``.
    browser       session-scoped headless Chromium (``/usr/bin/chromium``, Playwright never
                  downloads a browser).
    browser_page  a fresh page (own context) per test; requests to any host other than the
                  app are blocked and listed in ``page.external_requests``; a screenshot goes to
                  ``.test-artifacts/<test>-FAILED.png`` when the test fails.

Helpers (import from ``conftest`` is not possible, so use the fixtures below)
    shot(page, name)   save ``.test-artifacts/<name>.png`` (full page)
    open_tab(page, label)   click a top-level tab and wait until it is shown

Mark browser tests ``@pytest.mark.browser``. The test command installs Chromium through
apt-get when it is missing and we are root; otherwise it fails saying what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
from appserver import ARTIFACTS, running_app

CHROMIUM = os.environ.get("MEDTUNE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
    # A fake microphone (a beep) that needs no permission prompt, so recording is testable.
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]
#: Generous: the shared CI box has 2 cores; model loads and first transcriptions are slow.
DEFAULT_TIMEOUT_MS = 120_000


def ensure_chromium() -> str:
    """Path to Debian's Chromium, installing ``chromium`` + ``chromium-driver`` with apt-get
    when it is missing and we run as root (the issue: the test command installs what it needs)."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "chromium-driver"]):
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
            if r.returncode != 0:
                pytest.fail(f"`{' '.join(cmd)}` failed (exit {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}",
                            pytrace=False)
        if Path(CHROMIUM).exists():
            return CHROMIUM
    pytest.fail(f"Browser tests need Debian's Chromium at {CHROMIUM}. Install it with:\n"
                "    sudo apt-get install -y chromium chromium-driver\n"
                "(or point MEDTUNE_CHROMIUM at a Chromium binary).", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Keep each phase's report on the item so fixtures can tell whether the test failed.
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    """The real app, started once per session on a free port with a temp workspace."""
    with running_app(tmp_path_factory.mktemp("browser") / "ws") as server:
        yield server


@pytest.fixture(scope="session")
def browser():
    exe = ensure_chromium()
    # Playwright must never fetch a browser of its own; we always hand it Debian's binary.
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _safe_name(nodeid: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in nodeid.split("::", 1)[-1])[:120]


@pytest.fixture
def browser_page(app, browser, request):
    """A new page on the app's origin. Off-origin requests are aborted and recorded in
    ``page.external_requests`` (the app must work with no network)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True,
                                  permissions=["microphone"])
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    app_host = urlparse(app.url).netloc
    external: list[str] = []

    def _route(route):
        url = route.request.url
        parsed = urlparse(url)
        if parsed.scheme in ("data", "blob") or parsed.netloc == app_host:
            route.continue_()
        else:
            external.append(url)
            route.abort()

    context.route("**/*", _route)
    page = context.new_page()
    page.external_requests = external  # type: ignore[attr-defined]
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.console_errors = console_errors  # type: ignore[attr-defined]
    yield page
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            page.screenshot(path=str(ARTIFACTS / f"{_safe_name(request.node.nodeid)}-FAILED.png"), full_page=True)
        except Exception as e:  # a crashed page must not hide the real failure
            print(f"(could not save failure screenshot: {e})")
    context.close()


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _open_tab(page, label: str) -> None:
    """Click the top-level tab called ``label`` and wait until its panel is visible."""
    page.get_by_role("tab", name=label, exact=True).first.click()
    page.get_by_role("tab", name=label, exact=True).first.wait_for()
    page.wait_for_function(
        """(label) => [...document.querySelectorAll('button[role=tab]')]
            .some(b => b.textContent.trim() === label && b.getAttribute('aria-selected') === 'true')""",
        arg=label,
    )


@pytest.fixture
def shot():
    """``shot(page, name)`` saves ``.test-artifacts/<name>.png`` (full page) and returns the path."""
    return _shot


@pytest.fixture
def open_tab():
    """``open_tab(page, label)`` clicks a top-level tab and waits until it is selected."""
    return _open_tab


@pytest.fixture
def goto_app(app):
    """``goto_app(page)`` opens the app and waits until Gradio has rendered the tabs."""
    def _go(page):
        page.goto(app.url)
        page.get_by_role("tab").first.wait_for()
        return page
    return _go
