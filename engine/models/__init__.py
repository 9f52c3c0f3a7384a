"""Models: the registry, the two embedded defaults (fetched from PyPI wheels and converted
once), and the loader. Inference lives in :mod:`engine.infer`.

Import the submodules directly (``engine.models.registry``, ``engine.models.loader``, ...): this
package imports none of them, so reading the registry does not load the loader.
"""
