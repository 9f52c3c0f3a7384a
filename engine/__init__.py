"""MedTune Workbench engine: every capability (data, models, training, evaluation, export).

The engine never imports ``ui`` or ``gradio``: anything the browser can do, the ``medtune``
CLI can do through the same functions and the same YAML config.
"""

__version__ = "0.1.0"

import os as _os

# OpenMP threads spin while they wait for work by default. On a small shared CPU (2 cores, a
# Space) the app, a training job and an evaluation often run at once, and spinning threads
# then starve each other: measured here at load ~6, SmolLM2 batched generation ran at 1.3
# tokens/s spinning vs 13.7 passive (10x). This runs before torch is imported (every entry
# point imports engine first) because the OpenMP runtime reads it once at start-up; a value
# the user sets wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
