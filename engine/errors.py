"""Errors a person can act on.

Every error the engine raises on purpose is a :class:`MedtuneError`; the CLI prints its
message and exits non-zero, the UI shows it in a banner. Tracebacks are for bugs only.
"""

from __future__ import annotations


class MedtuneError(Exception):
    """An error with a message meant for the user (no traceback needed)."""

    #: Short machine-readable category, also used as the hint key in failed runs.
    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # the hint travels with the message everywhere it is shown
        return f"{self.message}\nHint: {self.hint}" if self.hint else self.message


class ConfigError(MedtuneError):
    """One or more invalid config fields. ``problems`` holds one line per field."""

    kind = "config"

    def __init__(self, problems: list[str], *, source: str | None = None):
        self.problems = list(problems)
        head = f"Invalid config{f' in {source}' if source else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class DataError(MedtuneError):
    """Bad input data. Names the file, the line/row and the field where known."""

    kind = "data"

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None, hint: str | None = None):
        self.file, self.line, self.field = file, line, field
        where = ", ".join(x for x in (
            str(file) if file else None,
            f"line {line}" if line is not None else None,
            f"field '{field}'" if field else None,
        ) if x)
        super().__init__(f"{where}: {message}" if where else message, hint=hint)


class ModelError(MedtuneError):
    """A model that cannot be found, fetched or loaded."""

    kind = "model"


class MissingDependency(MedtuneError):
    """An optional package is needed for the requested feature."""

    kind = "dependency"

    def __init__(self, package: str, feature: str, install: str | None = None):
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed.",
            hint=install or f"pip install {package}",
        )


class PathError(MedtuneError):
    """A path that points outside the workspace (or does not exist)."""

    kind = "path"


class CudaRequired(MedtuneError):
    """A setting that only works on a CUDA GPU was asked for on a machine without one."""

    kind = "cuda"
