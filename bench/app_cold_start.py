"""Cold start of the browser app: ``python launch.py`` to the first page served (HTTP 200).

    python bench/app_cold_start.py            # full: 3 launches
    python bench/app_cold_start.py --quick    # CI smoke run: 1 launch

Starts the real launch.py on a free port with a fresh temp workspace each time and prints
the seconds to the first served page and to a served /config, plus the median. Models are
cached (the embedded ones live in the model cache) and none is loaded at start-up (the
Playground loads on demand), so this is import + Blocks build time.
Baseline: the goal itself (15 s); the ratio printed is median / goal (<= 1x meets it).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common

sys.path.insert(0, str(_common.REPO / "tests"))

import httpx  # noqa: E402
from appserver import running_app  # noqa: E402

GOAL_S = 15.0


def main() -> None:
    ap = _common.parser(__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if args.quick:
        args.runs = 1
    rows, firsts = [], []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            with running_app(Path(tmp) / "ws", log_name="bench-app-cold-start.log") as srv:
                t0 = time.monotonic()
                httpx.get(srv.url + "config", timeout=120).raise_for_status()
                firsts.append(srv.started_in_s)
                rows.append({"launch": i + 1, "first_page_s": round(srv.started_in_s, 2),
                             "then_config_s": round(time.monotonic() - t0, 3)})
    med = statistics.median(firsts)
    rows.append({"launch": "median", "first_page_s": round(med, 2), "then_config_s": ""})
    _common.finish(f"App cold start, {args.runs} launch(es), models cached", rows,
                   ["launch", "first_page_s", "then_config_s"],
                   _common.ratio_line(med / GOAL_S, f"median/goal (median {med:.2f} s to first page)",
                                      f"<= 1x, i.e. <= {GOAL_S:.0f} s", med <= GOAL_S), args)


if __name__ == "__main__":
    main()
