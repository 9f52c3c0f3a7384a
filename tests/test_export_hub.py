"""Hub push against a local stand-in of the upload API (the real Hub is unreachable here).

The stand-in (tests/hub_standin.py) speaks the endpoints huggingface_hub calls for
create_repo + create_commit on the LFS path, so these tests run the real client code and
check what reaches the "Hub": private repo, every file byte-identical, the token only in the
Authorization header, and the token nowhere in the workspace or the output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from export_runs import make_run, tiny_text_base  # noqa: F401 - fixture
from hub_standin import StandinHub

TOKEN = "hf_" + "FAKEtestTOKEN0123456789abcdefSECRET"  # split so no scanner mistakes it for a real token
REPO = Path(__file__).resolve().parent.parent


def _no_token_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]


def test_cli_export_and_push_with_hf_token(tiny_text_base, tmp_path):
    from engine.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    run = make_run(ws, tiny_text_base, name="push-run")
    with StandinHub() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0",
               "HF_HUB_DISABLE_XET": "1",  # the Xet path needs a CAS server; the stand-in speaks LFS
               "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
        proc = subprocess.run([sys.executable, "-m", "engine", "--workspace", str(ws.root), "export",
                               "push-run", "--merged", "--adapter-zip", "--push", "lab/med-tiny"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        state = hub.state
    assert state.validated == 1  # the card's metadata passed the stand-in's checks
    assert "pushed merged" in proc.stdout and "(private)" in proc.stdout
    # The repo was created private, and every request carried the token in the header only.
    assert state.repos["lab/med-tiny"]["visibility"] == "private"
    assert {r["auth"] for r in state.requests if r["method"] == "POST"} == {f"Bearer {TOKEN}"}
    assert not any(TOKEN in r["path"] for r in state.requests)
    # Everything in merged/ (weights via LFS) + the card, byte for byte, in one commit.
    merged = run / "export" / "merged"
    expected = {p.name for p in merged.iterdir() if p.is_file()}
    assert len(state.commits) == 1 and set(state.commits[0]["paths"]) == expected
    for name in expected:
        assert state.files[f"lab/med-tiny/{name}"] == (merged / name).read_bytes(), name
    assert any(r["path"].startswith("/lfs-upload/") for r in state.requests)  # safetensors went through LFS
    assert state.files["lab/med-tiny/README.md"] == (run / "export" / "README.md").read_bytes()
    # The token is nowhere on disk in the workspace, nor in what the command printed.
    assert TOKEN not in proc.stdout + proc.stderr
    assert _no_token_under(ws.root) == []
    push = (run / "export" / "push.json").read_text()
    assert '"private": true' in push and "lab/med-tiny" in push


def test_push_adapter_with_token_from_a_field(tiny_text_base, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from engine.export.hub import push_export
    from engine.export.job import ExportOptions, export_run
    from engine.workspace import Workspace

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # tests run offline by default
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    ws = Workspace.open(tmp_path / "ws")
    run = make_run(ws, tiny_text_base)
    export_run(run, ExportOptions(merged=False, adapter_zip=True))
    with StandinHub() as hub:
        rec = push_export(run / "export", "lab/adapter-only", token=TOKEN, private=False, endpoint=hub.url)
        state = hub.state
    assert rec["what"] == "adapter" and rec["private"] is False
    assert state.repos["lab/adapter-only"]["visibility"] == "public"
    assert set(state.commits[0]["paths"]) == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    assert state.files["lab/adapter-only/adapter_model.safetensors"] == (run / "adapter" / "adapter_model.safetensors").read_bytes()
    assert _no_token_under(ws.root) == []


def test_push_errors_are_clear_and_never_show_the_token(tiny_text_base, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from engine.export.hub import HubError, push_export
    from engine.export.job import ExportOptions, export_run
    from engine.workspace import Workspace

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    run = make_run(Workspace.open(tmp_path / "ws"), tiny_text_base)
    export_run(run, ExportOptions(merged=False, adapter_zip=True))
    with pytest.raises(HubError, match="No Hugging Face token"):
        push_export(run / "export", "lab/x")
    with pytest.raises(HubError, match="not a Hub repo id"):
        push_export(run / "export", "no-owner", token=TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set"):
        push_export(run / "export", "lab/x", token=TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with StandinHub() as hub:
        hub.state.reject_token = TOKEN
        with pytest.raises(HubError, match="Push to lab/x failed") as err:
            push_export(run / "export", "lab/x", token=TOKEN, endpoint=hub.url)
    assert TOKEN not in str(err.value) and "401" in str(err.value)
    assert not (run / "export" / "push.json").exists()
