"""The login in front of the whole app when ``MEDTUNE_AUTH`` is set.

Gradio's own login (``launch(auth=...)``) answers ``GET /`` without a session with the app's
page, which embeds the API description: every endpoint, label, default and dropdown choice
(run ids, dataset names). So the app sits behind this gate instead: an ASGI middleware that
answers every request without a valid session itself, before Gradio sees it. ``/`` and
``/login`` show a self-contained sign-in form; everything else answers 401. Wrong passwords
are throttled per client address and in total (:class:`LoginThrottle`).
"""

from __future__ import annotations

import hmac
import html
import logging
import secrets
import time
from collections import deque
from typing import Callable, Mapping
from urllib.parse import parse_qs

from starlette.middleware import Middleware
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("medtune.auth")

COOKIE = "medtune_session"
SESSION_TTL_S = 12 * 3600
#: A sign-in form is two short fields; a bigger body is not one.
MAX_FORM_BYTES = 4096
#: Gradio's launch() GETs this itself, without a session, to start the queue and fails the
#: launch unless it succeeds: it passes once, from this machine (loopback, or the address the
#: server is bound to when --host names one), and never again.
STARTUP_PATH = "/gradio_api/startup-events"
LOOPBACK = ("127.0.0.1", "::1")
DEFAULT_MAX_FAILURES = 5
DEFAULT_MAX_FAILURES_GLOBAL = 50
DEFAULT_LOCKOUT_S = 300.0


class LoginThrottle:
    """Counts wrong passwords over the last ``lockout_s`` seconds, per client address and in
    total. At ``per_client`` failures that client, at ``total`` every client, may not sign in
    for ``lockout_s``: not even with the right password, or the lockout would still tell a
    guesser which guess was right. Signed-in sessions keep working through a lockout."""

    def __init__(self, per_client: int = DEFAULT_MAX_FAILURES, total: int = DEFAULT_MAX_FAILURES_GLOBAL,
                 lockout_s: float = DEFAULT_LOCKOUT_S, clock: Callable[[], float] = time.monotonic):
        self.per_client, self.total, self.lockout_s, self.clock = per_client, total, lockout_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._all_failures: deque[float] = deque()
        self._locked_until: dict[str, float] = {}
        self._all_locked_until = 0.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "LoginThrottle":
        """Limits from ``MEDTUNE_LOGIN_MAX_FAILURES`` (per client), ``..._GLOBAL`` and
        ``MEDTUNE_LOGIN_LOCKOUT_S``; ValueError naming the variable when one is not valid."""
        def read(name: str, default: float, kind: type) -> float:
            raw = environ.get(name, "").strip()
            try:
                value = kind(raw) if raw else default
            except ValueError:
                value = 0
            if not value > 0:  # also refuses NaN
                raise ValueError(f"{name} must be a positive {'whole ' if kind is int else ''}number, got '{raw}'.")
            return value

        return cls(read("MEDTUNE_LOGIN_MAX_FAILURES", DEFAULT_MAX_FAILURES, int),
                   read("MEDTUNE_LOGIN_MAX_FAILURES_GLOBAL", DEFAULT_MAX_FAILURES_GLOBAL, int),
                   read("MEDTUNE_LOGIN_LOCKOUT_S", DEFAULT_LOCKOUT_S, float))

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try to sign in again; 0 when it may now."""
        now = self.clock()
        self._forget(now)
        return max(self._locked_until.get(client, 0.0), self._all_locked_until, now) - now

    def failed(self, client: str) -> None:
        now = self.clock()
        self._forget(now)
        mine = self._failures.setdefault(client, deque())
        mine.append(now)
        self._all_failures.append(now)
        if len(mine) >= self.per_client:
            self._locked_until[client] = now + self.lockout_s
            del self._failures[client]
            log.warning("MedTune login: %d failed sign-ins from %s; it is locked out for %.0f s.",
                        len(mine), client, self.lockout_s)
        else:
            log.warning("MedTune login: failed sign-in from %s (%d of %d before a lockout).",
                        client, len(mine), self.per_client)
        if len(self._all_failures) >= self.total:
            log.warning("MedTune login: %d failed sign-ins within %.0f s from all clients together; "
                        "all clients are locked out for %.0f s.", len(self._all_failures), self.lockout_s,
                        self.lockout_s)
            self._all_locked_until = now + self.lockout_s
            self._all_failures.clear()

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def _forget(self, now: float) -> None:
        # Old failures and ended lockouts go, so memory stays bounded by the limits.
        horizon = now - self.lockout_s
        for client, times in list(self._failures.items()):
            while times and times[0] <= horizon:
                times.popleft()
            if not times:
                del self._failures[client]
        while self._all_failures and self._all_failures[0] <= horizon:
            self._all_failures.popleft()
        for client, until in list(self._locked_until.items()):
            if until <= now:
                del self._locked_until[client]


class LoginGate:
    """Users, sessions and the throttle. ``middleware()`` goes into the app's FastAPI
    constructor; ``user_of`` is Gradio's ``auth_dependency``, so Gradio's own checks agree.

    ``in_space``: on a Hugging Face Space the app is shown in an iframe on huggingface.co, a
    different site, so the cookie must be ``SameSite=None; Secure`` and the page frameable
    there; elsewhere the cookie stays ``SameSite=Lax`` and the page refuses to be framed."""

    def __init__(self, users: list[tuple[str, str]], throttle: LoginThrottle | None = None,
                 in_space: bool = False):
        self._users = [(u.encode(), p.encode()) for u, p in users]
        self.throttle = throttle or LoginThrottle()
        self.in_space = in_space
        self._sessions: dict[str, tuple[str, float]] = {}  # token -> (user, expiry)

    def middleware(self) -> Middleware:
        return Middleware(_GateMiddleware, gate=self)

    def user_of(self, conn: HTTPConnection) -> str | None:
        return self._session_user(conn.cookies.get(COOKIE))

    def check(self, user: str, password: str) -> str | None:
        """The user name when the pair matches an account. Every account is compared, in
        constant time, so the answer's timing tells neither the name nor the password."""
        u, p, match = user.encode(), password.encode(), None
        for name, secret in self._users:
            if hmac.compare_digest(u, name) & hmac.compare_digest(p, secret):
                match = name.decode()
        return match

    def new_session(self, user: str) -> str:
        now = time.monotonic()
        for token, (_, expiry) in list(self._sessions.items()):
            if expiry <= now:
                del self._sessions[token]
        token = secrets.token_urlsafe(32)
        self._sessions[token] = (user, now + SESSION_TTL_S)
        return token

    def end_session(self, token: str | None) -> None:
        self._sessions.pop(token or "", None)

    def _session_user(self, token: str | None) -> str | None:
        user, expiry = self._sessions.get(token or "", (None, 0.0))
        return user if expiry > time.monotonic() else None


class _GateMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware) so event streams and uploads pass through untouched."""

    def __init__(self, app: ASGIApp, gate: LoginGate):
        self.app, self.gate = app, gate
        self._startup_pending = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        conn = HTTPConnection(scope)
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        method = scope.get("method", "GET")
        signed_in = self.gate.user_of(conn) is not None
        if path == "/logout":
            self.gate.end_session(conn.cookies.get(COOKIE))
            response: Response = RedirectResponse("./", status_code=303)
            response.delete_cookie(COOKIE, path="/", **self._cookie_flags(conn))
        elif path == "/login" and method == "POST":
            response = await self._sign_in(conn, receive)
        elif path == "/login" and signed_in:
            response = RedirectResponse("./", status_code=303)
        elif signed_in:
            return await self.app(scope, receive, send)
        elif path == STARTUP_PATH and self._startup_pending and _from_this_machine(scope):
            self._startup_pending = False
            return await self.app(scope, receive, send)
        elif path in ("/", "/login") and method in ("GET", "HEAD"):
            response = self._page()
        elif scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        else:
            response = JSONResponse({"detail": "Not signed in: open the app's page to sign in."}, status_code=401)
        await response(scope, receive, send)

    async def _sign_in(self, conn: HTTPConnection, receive: Receive) -> Response:
        client = conn.client.host if conn.client else "unknown"
        wait = self.gate.throttle.retry_after(client)
        if wait > 0:
            minutes = max(1, round(wait / 60))
            return self._page(f"Too many failed sign-ins. Try again in about {minutes} minute"
                              f"{'s' if minutes > 1 else ''}.", 429, {"Retry-After": str(int(wait) + 1)})
        form = await _read_form(receive)
        if form is None or "username" not in form or "password" not in form:
            return self._page("That was not a sign-in form.", 400)
        user = self.gate.check(form["username"], form["password"])
        if user is None:
            self.gate.throttle.failed(client)
            return self._page("Wrong user name or password.", 401)
        self.gate.throttle.succeeded(client)
        response = RedirectResponse("./", status_code=303)
        response.set_cookie(COOKIE, self.gate.new_session(user), max_age=SESSION_TTL_S, path="/",
                            httponly=True, **self._cookie_flags(conn))
        return response

    def _cookie_flags(self, conn: HTTPConnection) -> dict:
        if self.gate.in_space:
            return {"secure": True, "samesite": "none"}
        return {"secure": conn.url.scheme == "https", "samesite": "lax"}

    def _page(self, message: str = "", status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
        framers = "https://huggingface.co" if self.gate.in_space else "'none'"
        return _login_page(message, status, {"Content-Security-Policy": _CSP + f"; frame-ancestors {framers}",
                                             **(headers or {})})


def _from_this_machine(scope: Scope) -> bool:
    client, server = scope.get("client") or ("",), scope.get("server") or ("",)
    return client[0] in LOOPBACK or client[0] == server[0]


async def _read_form(receive: Receive) -> dict[str, str] | None:
    """The url-encoded form body, or None when it is too big or not one."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if len(body) > MAX_FORM_BYTES:
            return None
        if not message.get("more_body"):
            break
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in fields.items()}


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">
<link rel="icon" href="data:,"><title>Sign in</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f4f6f8; margin: 0; }}
main {{ max-width: 22em; margin: 12vh auto; background: #fff; padding: 2em; border-radius: 8px;
        box-shadow: 0 1px 4px rgba(0,0,0,.15); }}
label {{ display: block; margin: 1em 0 .3em; }}
input {{ width: 100%; box-sizing: border-box; padding: .5em; font-size: 1em; }}
button {{ margin-top: 1.5em; width: 100%; padding: .6em; font-size: 1em; background: #2563eb; color: #fff;
          border: 0; border-radius: 4px; cursor: pointer; }}
.message {{ border-left: 4px solid #c0392b; padding: .4em .8em; background: rgba(192,57,43,.08); }}
</style></head>
<body><main><h1>Sign in</h1>{message}
<form method="post" action="login">
<label for="username">User name</label>
<input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form></main></body></html>
"""


#: The page runs no script and loads nothing but its inline style; it posts only to itself.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'"


def _login_page(message: str, status: int, headers: dict[str, str]) -> HTMLResponse:
    """The sign-in form: no script, nothing loaded from anywhere, nothing of the app."""
    shown = f'<p class="message" role="alert">{html.escape(message)}</p>' if message else ""
    return HTMLResponse(_PAGE.format(message=shown), status_code=status,
                        headers={"Cache-Control": "no-store", **headers})
