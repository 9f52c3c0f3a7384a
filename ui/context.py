"""What every tab gets: the workspace, and the process-wide shared pieces."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from engine.workspace import Workspace


@dataclass
class AppContext:
    workspace: Workspace
    #: Serialises interactive generation in the UI process (one cached model at a time);
    #: heavy work goes to background jobs instead.
    model_lock: threading.Lock = field(default_factory=threading.Lock)
