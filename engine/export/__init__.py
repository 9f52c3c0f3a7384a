"""Export a finished run: the adapter as a zip, the merged model, ONNX, a model card, the Hub.

Entry points:

- :func:`engine.export.job.export_run` builds ``<run>/export/`` (merged/, onnx/, adapter.zip,
  README.md, verification.json, export.json); :func:`engine.export.job.run` is the same as a
  background job (``engine.jobs`` kind ``"export"``).
- :func:`engine.export.hub.push_export` uploads an export folder to the Hugging Face Hub; it
  runs in the caller's process so the token never has to be handed to a child process,
  a file or a log.
"""

from __future__ import annotations
