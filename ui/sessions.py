"""Data a browser session loaded that is dear to hold (a dataset's rows), kept by the app
rather than in Gradio's per-session state, so it can be bounded and freed.

Gradio keeps a closed tab's ``gr.State`` for an hour, per session, with no size limit: five
sessions holding a 600k-row file each held ~2.5 GB. Here each session's entry is dropped
when its page unloads, when it has been idle for ``idle_s``, or when the rows held across all
sessions pass ``max_rows`` (least recently used first). A handler that finds its entry gone
asks the user to load again instead of failing.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

#: Rows held across every session (a 600k-row JSONL is ~450 MB in memory, so ~1.5 GB at most).
DEFAULT_MAX_ROWS = int(os.environ.get("MEDTUNE_SESSION_MAX_ROWS", 2_000_000))
#: An idle session's data is released after this long (the page keeps working; Load again).
DEFAULT_IDLE_S = float(os.environ.get("MEDTUNE_SESSION_IDLE_MIN", 30)) * 60


@dataclass
class _Entry:
    value: Any
    rows: int
    used: float


class SessionData:
    """Session id -> (value, row count), bounded in total rows and idle time; thread-safe."""

    def __init__(self, max_rows: int = DEFAULT_MAX_ROWS, idle_s: float = DEFAULT_IDLE_S):
        self.max_rows, self.idle_s = max_rows, idle_s
        self._items: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, value: Any, rows: int) -> list[str]:
        """Hold ``value`` for session ``key``; returns the sessions evicted to make room (the
        newest entry is kept even when it alone is over the cap: the reader's caps bound it)."""
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = _Entry(value, rows, time.monotonic())
            return self._evict_locked(keep=key)

    def get(self, key: str) -> Any | None:
        """The session's value (and it counts as used now), or None once released."""
        with self._lock:
            self._expire_locked()
            entry = self._items.get(key)
            if entry is None:
                return None
            entry.used = time.monotonic()
            self._items.move_to_end(key)
            return entry.value

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def rows_held(self) -> int:
        with self._lock:
            self._expire_locked()
            return sum(e.rows for e in self._items.values())

    def __len__(self) -> int:
        with self._lock:
            self._expire_locked()
            return len(self._items)

    def _expire_locked(self) -> None:
        cutoff = time.monotonic() - self.idle_s
        for key in [k for k, e in self._items.items() if e.used < cutoff]:
            del self._items[key]

    def _evict_locked(self, keep: str) -> list[str]:
        self._expire_locked()
        evicted = []
        total = sum(e.rows for e in self._items.values())
        for key in list(self._items):
            if total <= self.max_rows:
                break
            if key != keep:
                total -= self._items.pop(key).rows
                evicted.append(key)
        return evicted
