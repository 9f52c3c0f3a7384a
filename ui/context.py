"""What every tab gets: the workspace, and the process-wide shared pieces."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from engine.workspace import Workspace
from ui.sessions import SessionData


@dataclass
class AppContext:
    workspace: Workspace
    #: Serialises interactive generation in the UI process (one cached model at a time);
    #: heavy work goes to background jobs instead.
    model_lock: threading.Lock = field(default_factory=threading.Lock)
    #: What a browser session loaded that is dear to hold (the Data tab's rows): bounded in
    #: total rows and idle time, dropped when the session's page closes (ui/app.py).
    sessions: SessionData = field(default_factory=SessionData)
