"""A reader for CTranslate2's ``model.bin`` (binary version 6), with numpy only.

Layout (little-endian, as written by ``ctranslate2.specs.model_spec.ModelSpec._serialize``)::

    u32 binary_version (6)
    str spec_name            e.g. "WhisperSpec"
    u32 spec_revision
    u32 n_variables
      n x { str name; u8 ndim; u32 dims[ndim]; u8 dtype_id; u32 n_bytes; bytes[n_bytes] }
    u32 n_aliases
      n x { str alias; str target }

where ``str`` is ``u16 length_including_nul`` + UTF-8 bytes + NUL. dtype ids follow the
``DataType`` enum in ``include/ctranslate2/types.h``: float32, int8, int16, int32, float16,
bfloat16. Scalars (ndim 0) hold spec attributes such as ``num_heads`` or ``pre_norm``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from engine.errors import ModelError

SUPPORTED_BINARY_VERSION = 6
# bfloat16 has no numpy dtype: it is read as raw uint16.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}


@dataclass
class CT2Model:
    spec: str
    revision: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable by name, following aliases (e.g. a tied projection)."""
        name = self.aliases.get(name, name)
        try:
            return self.variables[name]
        except KeyError:
            raise ModelError(f"CTranslate2 model has no variable '{name}'") from None

    def scalar(self, name: str) -> int | float:
        return self.get(name).reshape(()).item()


def _read(f: BinaryIO, fmt: str, where: str) -> tuple:
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) != size:
        raise ModelError(f"CTranslate2 model.bin is truncated (while reading {where}).")
    return struct.unpack("<" + fmt, data)


def _read_str(f: BinaryIO, where: str) -> str:
    (n,) = _read(f, "H", where)
    raw = f.read(n)
    if len(raw) != n or n == 0 or raw[-1] != 0:
        raise ModelError(f"CTranslate2 model.bin is corrupt (bad string in {where}).")
    return raw[:-1].decode("utf-8")


def read_ct2(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` into numpy arrays (nothing is executed)."""
    path = Path(path)
    with open(path, "rb") as f:
        (version,) = _read(f, "I", "header")
        if version != SUPPORTED_BINARY_VERSION:
            raise ModelError(f"{path}: CTranslate2 binary version {version} is not supported "
                             f"(this reader knows version {SUPPORTED_BINARY_VERSION}).")
        spec = _read_str(f, "spec name")
        (revision,) = _read(f, "I", "spec revision")
        (count,) = _read(f, "I", "variable count")
        model = CT2Model(spec, revision)
        for i in range(count):
            name = _read_str(f, f"variable {i} name")
            (ndim,) = _read(f, "B", name)
            shape = _read(f, f"{ndim}I", name) if ndim else ()
            dtype_id, n_bytes = _read(f, "B", name)[0], _read(f, "I", name)[0]
            if dtype_id not in _DTYPES:
                raise ModelError(f"{path}: variable '{name}' has unknown dtype id {dtype_id}.")
            raw = f.read(n_bytes)
            if len(raw) != n_bytes:
                raise ModelError(f"{path}: truncated data for variable '{name}'.")
            arr = np.frombuffer(raw, dtype=_DTYPES[dtype_id])
            expected = int(np.prod(shape)) if shape else 1
            if arr.size != expected:
                raise ModelError(f"{path}: variable '{name}' has {arr.size} values for shape {shape}.")
            model.variables[name] = arr.reshape(shape)
        (n_alias,) = _read(f, "I", "alias count")
        for i in range(n_alias):
            alias = _read_str(f, f"alias {i}")
            model.aliases[alias] = _read_str(f, f"alias {i} target")
        if f.read(1):
            raise ModelError(f"{path}: unexpected bytes after the alias table.")
    return model
