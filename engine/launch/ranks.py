"""What each training process (rank) reports, and which rank's failure ended a launch.

Every worker writes ``<run>/jobs/ranks/<rank>.json``: where it runs (host, pid) when it starts,
and its outcome when it ends (completed, stopped, failed with reason/error/hint, terminated).
The supervisor (engine.launch.processes) reads them to name the rank that brought a launch
down. When one rank dies the others fail *because of it*: their collective calls lose the peer
("Connection closed by peer"), or the launcher terminates them. Those are consequences, so the
root cause is, in order: a rank that failed for a reason of its own, a rank that vanished
without a word (SIGKILL, the out-of-memory killer), and only then a lost peer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import atomic
from engine.runs import Reason, Run, now_iso

#: Text of the errors a rank gets when a peer disappears mid-collective (gloo, NCCL, the store).
_PEER_LOST = re.compile(
    r"connection (closed|reset|refused)|broken pipe|peer|gloo|nccl|ProcessGroup|DistBackendError|DistNetworkError"
    r"|DistStoreError|timed out|watchdog|socket", re.IGNORECASE)


def ranks_dir(run: Run) -> Path:
    return run.path / "jobs" / "ranks"


def clear(run: Run) -> None:
    """Forget the reports of an earlier launch of this run."""
    for p in ranks_dir(run).glob("*.json"):
        p.unlink(missing_ok=True)


def report(run: Run, rank: int, **fields: Any) -> None:
    path = ranks_dir(run) / f"{rank}.json"
    atomic.write_json(path, {**read(path), **fields, "rank": rank, "updated": now_iso()})


def read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def reports(run: Run) -> dict[int, dict[str, Any]]:
    out = {}
    for p in ranks_dir(run).glob("*.json"):
        if p.stem.isdigit():
            out[int(p.stem)] = read(p)
    return out


def peer_lost(text: str) -> bool:
    """Does this error read like a consequence of another rank's death?"""
    return bool(_PEER_LOST.search(text))


@dataclass(frozen=True)
class Cause:
    rank: int
    reason: Reason
    error: str
    hint: str | None


def root_cause(reps: dict[int, dict[str, Any]], vanished: set[int], world_size: int | None = None) -> Cause | None:
    """The rank whose failure ended the launch (see the module docstring), or None.

    ``vanished``: ranks seen gone without an outcome (their pid died on this host).
    ``world_size``: ranks that never reported at all (a node that never came up) count as
    vanished when nothing better is known."""
    own = [(r, x) for r, x in sorted(reps.items())
           if x.get("outcome") == "failed" and not x.get("peer_lost")]
    if own:
        r, x = min(own, key=lambda item: item[1].get("ended", ""))
        return Cause(r, Reason(x.get("reason") or Reason.ERROR), f"rank {r} ({x.get('host', '?')}): {x.get('error')}",
                     x.get("hint"))
    silent = sorted(r for r in vanished if not reps.get(r, {}).get("outcome"))
    if silent:
        r = silent[0]
        x = reps.get(r, {})
        return Cause(r, Reason.KILLED,
                     f"rank {r} ({x.get('host', '?')}, pid {x.get('pid', '?')}) ended without reporting: killed by a "
                     "signal (SIGKILL, the out-of-memory killer) or its machine went away; the other ranks were "
                     "stopped with it.",
                     "Resume the run: every rank continues from the last checkpoint.")
    if world_size:
        missing = [r for r in range(world_size) if r not in reps]
        if missing:
            return Cause(missing[0], Reason.ERROR, f"rank {missing[0]} never started (its process or node did not "
                         "come up); see job.log for the launcher's output.", None)
    lost = [(r, x) for r, x in sorted(reps.items()) if x.get("outcome") == "failed"]
    if lost:
        r, x = lost[0]
        return Cause(r, Reason(x.get("reason") or Reason.ERROR), f"rank {r} ({x.get('host', '?')}): {x.get('error')}",
                     x.get("hint"))
    return None
