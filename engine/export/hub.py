"""Push an export to the Hugging Face Hub.

The token comes from the caller (a password field in the UI) or ``$HF_TOKEN``. It lives only
in this process's memory: it is not a job parameter (those are saved in the run folder), it
is never printed, and any error text is scrubbed of it before it is shown or logged. What
the push records (``export/push.json``) holds the repo, commit and file list only.

Repos are created **private** unless the caller says otherwise. The upload uses
``huggingface_hub``'s own ``create_repo`` + ``create_commit`` (preupload, LFS/Xet for the
weights, then the commit), so ``HF_ENDPOINT`` points it at a mirror or a stand-in server.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from engine import atomic
from engine.errors import MedtuneError
from engine.progress import Progress, report

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
WHAT = ("auto", "merged", "adapter")


class HubError(MedtuneError):
    kind = "hub"


def resolve_token(token: str | None) -> str:
    """The token typed by the user, else ``$HF_TOKEN``; a clear error when neither is set."""
    tok = (token or "").strip() or os.environ.get("HF_TOKEN", "").strip()
    if not tok:
        raise HubError("No Hugging Face token: type one in the token field or set HF_TOKEN.",
                       hint="Create a token with write access at https://huggingface.co/settings/tokens.")
    return tok


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def files_to_push(export_dir: Path, what: str = "auto") -> tuple[str, list[tuple[str, Path]]]:
    """(what, [(path in repo, local file)]) for the merged model (+ onnx/ subfolder) or the adapter."""
    export_dir = Path(export_dir)
    if what not in WHAT:
        raise HubError(f"Unknown push content '{what}'; choose one of {', '.join(WHAT)}.")
    if what == "auto":
        what = "merged" if (export_dir / "merged").is_dir() else "adapter"
    files: list[tuple[str, Path]] = []
    if what == "merged":
        if not (export_dir / "merged").is_dir():
            raise HubError(f"{export_dir} has no merged model to push.", hint="Export with the merged format first.")
        for sub, prefix in (("merged", ""), ("onnx", "onnx/")):
            folder = export_dir / sub
            if folder.is_dir():
                files += [(prefix + f.relative_to(folder).as_posix(), f) for f in sorted(folder.rglob("*"))
                          if f.is_file() and not f.name.startswith(".")]
    else:
        adapter = export_dir.parent / "adapter"
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            if not (adapter / name).is_file():
                raise HubError(f"{adapter / name} is missing: the run has no adapter to push.")
            files.append((name, adapter / name))
    card = export_dir / "README.md"
    if not card.is_file():
        raise HubError(f"{export_dir} has no model card (README.md).", hint="Run the export first.")
    files = [(p, f) for p, f in files if p != "README.md"] + [("README.md", card)]
    return what, files


def push_export(export_dir: str | Path, repo_id: str, *, token: str | None = None, private: bool = True,
                what: str = "auto", endpoint: str | None = None, progress: Progress | None = None) -> dict:
    """Create ``repo_id`` (private by default) and commit the export's files in one commit.

    Returns (and saves as export/push.json) the repo url, commit id, visibility and files.
    ``endpoint`` defaults to ``$HF_ENDPOINT`` / huggingface.co.
    """
    export_dir = Path(export_dir)
    repo_id = (repo_id or "").strip()
    if not _REPO_ID.match(repo_id):
        raise HubError(f"'{repo_id}' is not a Hub repo id; expected owner/name (e.g. my-lab/smollm2-med-qa).")
    tok = resolve_token(token)
    what, files = files_to_push(export_dir, what)
    from huggingface_hub import CommitOperationAdd, HfApi, constants  # noqa: PLC0415 - ~0.4 s to import; only a push talks to the Hub

    if constants.is_offline_mode():
        raise HubError("HF_HUB_OFFLINE is set, so nothing can be pushed to the Hub.",
                       hint="Unset HF_HUB_OFFLINE (and make sure the Hub is reachable) to push.")
    api = HfApi(endpoint=endpoint or None, token=tok)
    try:
        report(progress, 0.05, f"Creating {'private' if private else 'public'} repo {repo_id}")
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        report(progress, 0.15, f"Uploading {len(files)} files")
        info = api.create_commit(
            repo_id, repo_type="model",
            operations=[CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(f)) for p, f in files],
            commit_message=f"Upload {what} export from MedTune Workbench ({export_dir.parent.name})",
        )
    except MedtuneError:
        raise
    except Exception as e:  # noqa: BLE001 - every hub/network failure becomes one readable message
        msg = _scrub(f"{type(e).__name__}: {e}", tok)
        raise HubError(f"Push to {repo_id} failed: {msg}",
                       hint="Check the repo id, that the token has write access, and the network.") from None
    record = {
        "repo_id": repo_id,
        "url": str(url),
        "commit": getattr(info, "oid", None),
        "commit_url": _scrub(str(getattr(info, "commit_url", "")), tok),
        "private": bool(private),
        "what": what,
        "files": [p for p, _ in files],
        "endpoint": api.endpoint,
        "pushed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic.write_json(export_dir / "push.json", record)
    report(progress, 1.0, f"Pushed to {repo_id}")
    return record
