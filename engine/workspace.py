"""Where MedTune keeps things, and the rule that user paths stay inside the workspace.

Layout of a workspace (default ``./workspace``, or ``$MEDTUNE_WORKSPACE``, or ``--workspace``)::

    runs/<run-id>/      one folder per training run (see engine.runs)
    datasets/<name>/    datasets saved by the Data tab / ``medtune data split``
    uploads/            files uploaded through the browser
    synth/              synthesized speech (cached, deterministic)

Converted model weights are shared between workspaces in the model cache
(``$MEDTUNE_CACHE`` or ``~/.cache/medtune``): a conversion costs a minute, so it is done
once per machine rather than once per workspace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import PathError

#: Repository root (holds assets/); shipped data and recipes are read from here.
REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"


def default_workspace() -> Path:
    return Path(os.environ.get("MEDTUNE_WORKSPACE", "workspace")).expanduser().resolve()


def model_cache_dir() -> Path:
    root = os.environ.get("MEDTUNE_CACHE") or Path.home() / ".cache" / "medtune"
    path = Path(root).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def open(cls, root: str | os.PathLike | None = None) -> "Workspace":
        ws = cls(Path(root).expanduser().resolve() if root else default_workspace())
        for sub in ("runs", "datasets", "uploads", "synth"):
            (ws.root / sub).mkdir(parents=True, exist_ok=True)
        return ws

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def synth(self) -> Path:
        return self.root / "synth"

    def resolve(self, user_path: str | os.PathLike, *, must_exist: bool = False,
                allow_assets: bool = True) -> Path:
        """Resolve a path typed or uploaded by a user, refusing anything that escapes.

        Relative paths are taken relative to the workspace. Symlinks are resolved before
        the check, so a link pointing out of the workspace is refused too. Shipped assets
        are readable (``allow_assets``) but callers must not write there.
        """
        raw = str(user_path).strip()
        if not raw:
            raise PathError("Empty path.")
        shown = shorten(raw)
        if "\x00" in raw:  # os calls raise a bare ValueError on these
            raise PathError(f"'{shown}' is not a valid path (it contains a NUL character).")
        try:
            p = Path(raw).expanduser()
            if not p.is_absolute():
                p = self.root / p
            resolved = p.resolve()
            inside = self.contains(resolved, allow_assets=allow_assets)
            exists = resolved.exists() if inside and must_exist else True
        except (OSError, RuntimeError) as e:  # ENAMETOOLONG, "~nobody", too many symlink levels
            why = (getattr(e, "strerror", None) or str(e)).rstrip(".")
            raise PathError(f"'{shown}' is not a usable path ({why}).") from None
        if not inside:
            raise self.outside(raw)
        if not exists:
            raise PathError(f"'{shown}' does not exist (looked for {resolved}).")
        return resolved

    def outside(self, user_path: str | os.PathLike) -> PathError:
        """The refusal for a user path outside the workspace: the same words whether the target
        exists, is a file or a folder, so the message cannot be used to probe the machine."""
        return PathError(f"'{shorten(str(user_path).strip())}' is outside the workspace ({self.root}).",
                         hint="Upload the file through the app or copy it into the workspace first.")

    def roots(self, *, allow_assets: bool = True) -> list[Path]:
        """The folders user paths may point into: the workspace (and the shipped assets)."""
        return [self.root.resolve()] + ([ASSETS.resolve()] if allow_assets else [])

    def contains(self, path: str | os.PathLike, *, allow_assets: bool = True) -> bool:
        """Whether ``path`` (symlinks resolved) lies inside the workspace (or the assets)."""
        return inside_any(path, self.roots(allow_assets=allow_assets))


def shorten(raw: str) -> str:
    """A user path or name as messages quote it: at most 200 characters, NUL made visible."""
    return (raw if len(raw) <= 200 else raw[:200] + "...").replace("\x00", "\\0")


def inside_any(path: str | os.PathLike, roots: list[Path]) -> bool:
    """Whether ``path``, with every symlink resolved, lies in one of ``roots`` (resolved)."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return any(resolved == r or r in resolved.parents for r in roots)
