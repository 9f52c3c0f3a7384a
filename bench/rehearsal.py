"""Full-size rehearsals of the GPU recipes on this machine, against the memory planner.

Each rehearsal (`medtune rehearse RECIPE --layers L`) builds the recipe's real architecture
with random weights in the recipe's quantization, trains a few steps through the workbench's
training code, merges and generates; it runs as an ordinary background job (its own process,
so its peak is its own). For each, the table shows the measured split (weights / LoRA +
optimizer / activations, engine.train.memory), seconds per step, and the planner's prediction
for the same config on the same device (engine.plan). The last line is the worst ratio
planner/measured over the rows (goal: within 0.8x-1.2x).

Default rows: phi-2 (4-bit) at full depth, Llama-3.1-8B QLoRA (4-bit NF4) at full depth, and
2-layer rows of each. ``--quick``: the 2-layer phi-2 row only, 1 step.
"""

from __future__ import annotations

import sys
import time

from _common import parser, workspace

from engine import jobs
from engine.config import parse_overrides
from engine.preflight import load_config
from engine.runs import get_run, list_runs
from engine.train.rehearsal_spec import rehearsal_config

ROWS = (  # (recipe, layers (0 = all), length, batch)
    ("phi2-lora-medqa.yaml", 2, 256, 1),
    ("llama31-8b-qlora-healthcaremagic.yaml", 2, 256, 1),
    ("phi2-lora-medqa.yaml", 0, 256, 1),
    ("llama31-8b-qlora-healthcaremagic.yaml", 0, 256, 1),
)


def _earlier(ws, name: str, cfg, spec):
    """The newest completed rehearsal called ``name`` with this very config and spec, or None."""
    for run in list_runs(ws):
        if run.status().get("name") == name and run.status().get("state") == "completed" \
                and run.config() == cfg and {k: v for k, v in run.rehearsal().items() if k != "result"} == spec:
            return run
    return None


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--rows", default="", help="recipe:layers[,recipe:layers...] instead of the default rows")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="override recipe values (SECTION.KEY=VALUE)")
    ap.add_argument("--reuse", action="store_true",
                    help="take a row's figures from an earlier completed rehearsal of the same config in the bench "
                         "workspace (to compare a changed planner without hours of rehearsals)")
    args = ap.parse_args()
    ws = workspace(args)
    rows = list(ROWS)
    if args.rows:
        rows = [(r.split(":")[0], int(r.split(":")[1]), 256, 1) for r in args.rows.split(",")]
    if args.quick:
        rows, args.steps = [ROWS[0]], 1
    try:
        from engine.plan import estimate  # noqa: PLC0415 - the planner may be absent in an older checkout
    except ImportError:
        estimate = None
    table, ratios = [], []
    for recipe, layers, length, batch in rows:
        cfg = load_config(f"assets/recipes/{recipe}")
        if args.set:
            cfg = cfg.with_overrides(parse_overrides(args.set))
        rcfg, spec = rehearsal_config(cfg, layers=layers or None, length=length, steps=args.steps, batch=batch)
        t0 = time.time()
        name = f"bench-{recipe.split('-')[0]}-{layers or 'all'}"
        run = _earlier(ws, name, rcfg, spec) if args.reuse else None
        if run is None:
            run = jobs.launch(ws, rcfg, name=name, rehearsal=spec)
            st = jobs.wait(run, timeout=4 * 3600)
            if st.get("state") != "completed":
                print(f"{recipe} layers={layers}: {st.get('label')} {st.get('error')}", file=sys.stderr)
                return 1
        res = get_run(ws, run.id).rehearsal()["result"]
        mem = res["memory"]
        planned = None
        if estimate is not None:
            plan = estimate(rcfg, device=res["device"], layers=layers or None)
            planned = plan.total
            ratios.append(planned / mem["peak"])
        gib = 2 ** 30
        table.append((recipe, layers or "all", res["trainable_params"], mem["weights"] / gib,
                      mem["lora_and_optimizer"] / gib, mem["activations"] / gib, mem["peak"] / gib,
                      None if planned is None else planned / gib, mem["s_per_step"], res["build_s"],
                      round(time.time() - t0)))
    head = ("recipe", "layers", "trainable", "weights GiB", "LoRA+opt GiB", "activations GiB", "peak GiB",
            "planned GiB", "s/step", "build s", "wall s")
    print("| " + " | ".join(head) + " |")
    for row in table:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")
    if ratios:
        worst = max(ratios, key=lambda r: abs(r - 1))
        met = all(0.8 <= r <= 1.2 for r in ratios)
        print(f"ratio: {worst:.2f}x  planned/measured peak, worst of {len(ratios)} rehearsals  "
              f"(goal 0.8x-1.2x: {'met' if met else 'NOT met'})")
    else:
        print("ratio: n/a  (no planner in this checkout)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
