"""UI latency: a metrics line appended to a run's metrics.jsonl -> the point in the Train tab's chart.

    python bench/ui_latency.py            # full: 30 samples
    python bench/ui_latency.py --quick    # CI smoke run: 3 samples

Starts the real app (``launch.py``, temp workspace), makes a run folder whose status says
running (pid = this process), opens the Train tab in headless Debian Chromium (Playwright,
no network: every off-app request is aborted), then repeatedly appends one train-metrics
line the way a job does (engine.atomic.append_line) and times until the Plotly chart in
``#train-chart`` holds that many points. Appends are spaced by a random delay so they do
not lock in phase with the tab's gr.Timer.
Baseline: the Train tab's polling interval (ui.tabs.train.POLL_SECONDS): a poll-based view
can't do better than about half of it on average, nor worse than it plus one render.
The ratio printed is median / goal (goal: median <= 2 s, so <= 1.00x meets it).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common

sys.path.insert(0, str(_common.REPO / "tests"))

POINTS_JS = """(n) => { const gd = document.querySelector('#train-chart .js-plotly-plot');
  return !!(gd && gd.data && gd.data.length && gd.data[0].x && gd.data[0].x.length >= n); }"""


def _chromium() -> str:
    exe = os.environ.get("MEDTUNE_CHROMIUM", "/usr/bin/chromium")
    if not Path(exe).exists():
        raise SystemExit(f"Chromium not found at {exe} (apt-get install chromium, or set MEDTUNE_CHROMIUM)")
    return exe


def measure(samples: int, gap_s: float) -> dict:
    from appserver import running_app
    from playwright.sync_api import sync_playwright

    from engine.atomic import append_line
    from engine.config import RunConfig
    from engine.runs import create_run
    from ui.tabs.train import POLL_SECONDS

    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    lat: list[float] = []
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp, running_app(Path(tmp) / "ws", log_name="bench-ui-latency.log") as srv:
        run = create_run(srv.workspace, RunConfig(), name="latency")
        import psutil

        run.write_status("train", state="running", pid=os.getpid(), started=psutil.Process().create_time(),
                         kind="train", progress=0.1)
        step = 1
        append_line(run.metrics_path, json.dumps({"step": 1, "epoch": 0.01, "loss": 2.5, "time": time.time()}))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium(), headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                                              "--disable-background-networking", "--disable-component-update",
                                              "--disable-sync", "--disable-dev-shm-usage"])
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            host = srv.url.split("//", 1)[1].rstrip("/")
            ctx.route("**/*", lambda r: r.continue_() if r.request.url.split("//", 1)[-1].startswith(host)
                      or r.request.url.startswith(("data:", "blob:")) else r.abort())
            page = ctx.new_page()
            page.set_default_timeout(120_000)
            page.goto(srv.url)
            page.get_by_role("tab", name="Train").first.click()
            page.wait_for_function(POINTS_JS, arg=1, polling=50)  # the tab watches the newest run
            for _ in range(samples):
                time.sleep(gap_s * rng.random())
                step += 1
                append_line(run.metrics_path, json.dumps({"step": step, "epoch": step / 100, "loss": 2.5 - step / 100,
                                                          "time": time.time()}))
                t0 = time.monotonic()
                page.wait_for_function(POINTS_JS, arg=step, polling=50)
                lat.append(time.monotonic() - t0)
            browser.close()
        run.write_status("train", state="completed", pid=None)
    lat.sort()
    p95 = lat[min(len(lat) - 1, max(0, round(0.95 * len(lat)) - 1))]
    return {"samples": len(lat), "median_s": round(statistics.median(lat), 3), "p95_s": round(p95, 3),
            "min_s": round(lat[0], 3), "max_s": round(lat[-1], 3), "poll_s": POLL_SECONDS}


def main() -> None:
    ap = _common.parser(__doc__)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--goal", type=float, default=2.0, help="goal for the median, seconds")
    args = ap.parse_args()
    if args.quick:
        args.samples = 3
    m = measure(args.samples, gap_s=2.0)
    rows = [{"what": "metrics line -> chart point (median)", "seconds": m["median_s"]},
            {"what": "p95", "seconds": m["p95_s"]},
            {"what": "min / max", "seconds": f"{m['min_s']} / {m['max_s']}"},
            {"what": "baseline: Train tab poll interval", "seconds": m["poll_s"]},
            {"what": "goal (median)", "seconds": args.goal}]
    r = m["median_s"] / args.goal
    _common.finish(f"UI latency, {m['samples']} samples, Chromium headless", rows, ["what", "seconds"],
                   _common.ratio_line(r, f"median/goal (median {m['median_s']:.2f} s, p95 {m['p95_s']:.2f} s, "
                                      f"poll {m['poll_s']} s)", "<= 1x, i.e. median <= 2 s", r <= 1), args, extra=m)


if __name__ == "__main__":
    main()
