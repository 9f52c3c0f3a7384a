"""Models: the registry, the two embedded defaults (fetched from PyPI wheels and converted
once), and the loader. Inference lives in :mod:`engine.infer`.

Import the submodules directly for the full API; the names below are the common ones.
"""

from engine.models.embedded import EMBEDDED, ensure_embedded
from engine.models.loader import LoadedModel, get_cached, load_model, model_path
from engine.models.registry import ModelSpec, list_models, resolve_model

__all__ = ["EMBEDDED", "ensure_embedded", "LoadedModel", "get_cached", "load_model", "model_path",
           "ModelSpec", "list_models", "resolve_model"]
