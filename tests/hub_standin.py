"""A local stand-in for the Hugging Face Hub upload API (127.0.0.1 only), for the push tests.

It implements exactly the calls ``huggingface_hub`` makes for ``create_repo`` +
``create_commit`` on the LFS path (the Xet path needs a CAS server; the tests set
``HF_HUB_DISABLE_XET=1``):

    POST /api/repos/create                              -> {"url": ...}
    POST /api/validate-yaml                             -> README front matter checked (license id,
                                                           base_model an owner/name id, tags strings)
    POST /api/models/<repo>/preupload/<rev>             -> uploadMode lfs | regular per file
    POST /<repo>.git/info/lfs/objects/batch             -> basic transfer: PUT href per object
    PUT  /lfs-upload/<oid>                              -> stores the bytes, checks sha256 == oid
    POST /api/models/<repo>/commit/<rev>  (NDJSON)      -> {"commitUrl", "commitOid"}

Every request is recorded (method, path, Authorization header, JSON body) so a test can
check what was sent, and ``files`` holds the committed repo contents by path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LFS_SUFFIXES = (".safetensors", ".onnx", ".zip", ".bin")


@dataclass
class HubState:
    requests: list[dict] = field(default_factory=list)
    repos: dict[str, dict] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict] = field(default_factory=list)
    reject_token: str | None = None   # answer 401 to requests carrying this token
    validated: int = 0                # README.md front matters checked


HUB_LICENSES = {"apache-2.0", "mit", "cc-by-4.0", "llama2", "llama3.1", "other"}


def _card_errors(readme: str) -> list[dict]:
    """The subset of the Hub's model-card metadata checks that our cards touch."""
    import yaml

    if not readme.startswith("---\n"):
        return []
    meta = yaml.safe_load(readme[4:readme.index("\n---", 4)]) or {}
    errors = []
    if "license" in meta and meta["license"] not in HUB_LICENSES:
        errors.append({"message": f'"license" must be a Hub license id, got {meta["license"]!r}'})
    if "base_model" in meta and not re.fullmatch(r"[\w.-]+/[\w.-]+", str(meta["base_model"])):
        errors.append({"message": f'"base_model" must be a model id, got {meta["base_model"]!r}'})
    if not all(isinstance(t, str) for t in meta.get("tags", [])):
        errors.append({"message": '"tags" must be a list of strings'})
    return errors


def _handler(state: HubState, base: list[str]):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _send(self, code: int, obj) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self, body: bytes) -> dict:
            entry = {"method": self.command, "path": self.path, "auth": self.headers.get("Authorization")}
            entry["bytes"] = len(body)
            try:  # JSON bodies (create, preupload, batch); the commit is NDJSON, uploads are raw bytes
                entry["json"] = json.loads(body) if body and self.command == "POST" else None
            except ValueError:
                entry["json"] = None
            state.requests.append(entry)
            return entry

        def do_POST(self):  # noqa: N802
            body = self._body()
            self._record(body)
            if state.reject_token and self.headers.get("Authorization") == f"Bearer {state.reject_token}":
                return self._send(401, {"error": "Invalid credentials in Authorization header"})
            if self.path == "/api/repos/create":
                p = json.loads(body)
                repo = f"{p['organization']}/{p['name']}" if p.get("organization") else p["name"]
                state.repos[repo] = p
                return self._send(200, {"url": f"{base[0]}/{repo}", "name": repo})
            if self.path == "/api/validate-yaml":
                errors = _card_errors(json.loads(body)["content"])
                state.validated += 1
                return self._send(400 if errors else 200, {"errors": errors, "warnings": []})
            m = re.fullmatch(r"/api/models/(.+)/preupload/([^/?]+)", self.path)
            if m:
                files = json.loads(body)["files"]
                return self._send(200, {"files": [
                    {"path": f["path"], "shouldIgnore": False,
                     "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) or f["size"] > 1_000_000 else "regular"}
                    for f in files]})
            m = re.fullmatch(r"/(.+)\.git/info/lfs/objects/batch", self.path)
            if m:
                objs = json.loads(body)["objects"]
                return self._send(200, {"transfer": "basic", "objects": [
                    {"oid": o["oid"], "size": o["size"],
                     "actions": {"upload": {"href": f"{base[0]}/lfs-upload/{o['oid']}"}}} for o in objs]})
            m = re.fullmatch(r"/api/models/(.+)/commit/([^/?]+)", self.path)
            if m:
                repo = m.group(1)
                lines = [json.loads(x) for x in body.splitlines() if x.strip()]
                commit = {"repo": repo, "header": None, "paths": []}
                for item in lines:
                    key, value = item["key"], item["value"]
                    if key == "header":
                        commit["header"] = value
                    elif key == "file":
                        state.files[f"{repo}/{value['path']}"] = base64.b64decode(value["content"])
                        commit["paths"].append(value["path"])
                    elif key == "lfsFile":
                        data = state.lfs.get(value["oid"])
                        if data is None:
                            return self._send(400, {"error": f"LFS object {value['oid']} was never uploaded"})
                        state.files[f"{repo}/{value['path']}"] = data
                        commit["paths"].append(value["path"])
                state.commits.append(commit)
                oid = hashlib.sha1(body).hexdigest()
                return self._send(200, {"commitUrl": f"{base[0]}/{repo}/commit/{oid}", "commitOid": oid})
            return self._send(404, {"error": f"stand-in has no {self.path}"})

        def do_PUT(self):  # noqa: N802
            body = self._body()
            self._record(body)
            m = re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", self.path)
            if not m:
                return self._send(404, {"error": "unknown upload url"})
            if hashlib.sha256(body).hexdigest() != m.group(1):
                return self._send(400, {"error": "sha256 mismatch"})
            state.lfs[m.group(1)] = body
            return self._send(200, {})

    return H


class StandinHub:
    """``with StandinHub() as hub: ... hub.url ... hub.state``"""

    def __init__(self):
        self.state = HubState()
        self._base = [""]
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state, self._base))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._base[0] = self.url
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "StandinHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
