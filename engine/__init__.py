"""MedTune Workbench engine: every capability (data, models, training, evaluation, export).

The engine never imports ``ui`` or ``gradio``: anything the browser can do, the ``medtune``
CLI can do through the same functions and the same YAML config.
"""

__version__ = "0.1.0"
