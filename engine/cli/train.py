"""`medtune train CONFIG.yaml` and `medtune runs list|show|stop|resume|logs`.

Both call the same engine functions as the Train tab (engine.jobs / engine.runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from engine import jobs, plan
from engine.cli.common import workspace
from engine.config import RunConfig, parse_overrides
from engine.errors import MedtuneError
from engine.eval.definitions import wer_name
from engine.preflight import load_config
from engine.progress import tqdm_progress
from engine.runs import ACTIVE, get_run, list_runs
from engine.train.rehearsal_spec import rehearsal_config


def register(sub: argparse._SubParsersAction) -> None:
    """Add `train` and `runs` to the `medtune` parser."""
    p = sub.add_parser("train", help="train a LoRA/QLoRA adapter from a YAML run config",
                       description="Validate CONFIG, create a run folder and start (or queue) the training "
                                   "job in the background. Waits and shows progress unless --detach.")
    p.add_argument("config", help="run config YAML (see assets/recipes/)")
    p.add_argument("--name", help="run name (default: model-dataset)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=20 (repeatable)")
    p.add_argument("--detach", action="store_true", help="return right after launching")
    p.add_argument("--plan", action="store_true",
                   help="print the predicted peak memory (weights / LoRA + optimizer / activations) and which "
                        "cards it fits, then exit: no run is created, nothing is launched")
    p.add_argument("--plan-device", choices=("cuda", "cpu"), default="cuda",
                   help="with --plan: the device planned in full (default cuda; the other gets one line)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("rehearse", help="rehearse a recipe at its model's real shapes with random weights",
                       description="Build the recipe's model architecture from its published config facts "
                                   "(assets/architectures) with random weights, in the recipe's dtype and "
                                   "quantization, train a few steps on a shipped dataset, merge and generate; "
                                   "reports trainable parameters, peak memory (weights / LoRA + optimizer / "
                                   "activations) and seconds per step. The run shows like any run, marked "
                                   "rehearsal.")
    p.add_argument("config", help="run config YAML, usually a GPU recipe from assets/recipes/")
    p.add_argument("--layers", type=int, default=2,
                   help="transformer layers to build (default 2, at full width and vocabulary); 0 = all")
    p.add_argument("--length", type=int, default=256, help="tokens per training example (default 256)")
    p.add_argument("--steps", type=int, default=3, help="optimizer steps (default 3)")
    p.add_argument("--batch", type=int, help="examples per step (default: the recipe's batch_size)")
    p.add_argument("--dataset", help="dataset to read rows from (default: med-qa, or med-dictation for speech)")
    p.add_argument("--name", help="run name (default: model-dataset)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a recipe value first, e.g. --set model.quantization=8bit")
    p.add_argument("--detach", action="store_true", help="return right after launching")
    p.set_defaults(func=cmd_rehearse)

    r = sub.add_parser("runs", help="list, inspect, stop and resume training runs")
    rs = r.add_subparsers(dest="runs_command", metavar="ACTION")
    rs.required = True
    x = rs.add_parser("list", help="all runs, newest first")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_list)
    x = rs.add_parser("show", help="status, config and last metrics of a run")
    x.add_argument("run_id")
    x.set_defaults(func=cmd_show)
    x = rs.add_parser("stop", help="stop a run (graceful: checkpoint then stop)")
    x.add_argument("run_id")
    x.add_argument("--force", action="store_true", help="kill at once (SIGKILL); resume from the last checkpoint")
    x.set_defaults(func=cmd_stop)
    x = rs.add_parser("resume", help="resume a stopped or failed run from its last checkpoint")
    x.add_argument("run_id")
    x.add_argument("--detach", action="store_true")
    x.set_defaults(func=cmd_resume)
    x = rs.add_parser("logs", help="print the job log")
    x.add_argument("run_id")
    x.add_argument("-n", type=int, default=50, help="last N lines (default 50)")
    x.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    x.set_defaults(func=cmd_logs)


def cmd_train(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.set:
        cfg = cfg.with_overrides(parse_overrides(args.set))
    if args.plan:
        return _print_plan(cfg, args.plan_device)
    run = jobs.launch(workspace(args), cfg, name=args.name)
    print(f"run {run.id} ({run.status().get('state')}) in {run.path}")
    if args.detach:
        return 0
    return _follow(run)


def cmd_rehearse(args: argparse.Namespace) -> int:
    ws = workspace(args)
    cfg = load_config(args.config)
    if args.set:
        cfg = cfg.with_overrides(parse_overrides(args.set))
    for flag, value, low in (("--layers", args.layers, 0), ("--length", args.length, 8), ("--steps", args.steps, 1),
                             ("--batch", args.batch, 1)):
        if value is not None and value < low:
            raise MedtuneError(f"{flag} must be at least {low}, got {value}")
    rcfg, spec = rehearsal_config(cfg, layers=args.layers or None, length=args.length, steps=args.steps,
                                  batch=args.batch, dataset=args.dataset)
    run = jobs.launch(ws, rcfg, name=args.name, rehearsal=spec)
    print(f"rehearsal {run.id} ({run.status().get('where')}) in {run.path}")
    if args.detach:
        return 0
    code = _follow(run)
    result = run.rehearsal().get("result")
    if result:
        mem = result["memory"]
        gib = 2 ** 30
        print(f"  trainable params {result['trainable_params']:,} of {result['total_params']:,}")
        print(f"  peak memory {mem['peak'] / gib:.2f} GiB = weights {mem['weights'] / gib:.2f} + LoRA and optimizer "
              f"{mem['lora_and_optimizer'] / gib:.2f} + activations {mem['activations'] / gib:.2f} "
              f"({mem['measured_by']})")
        done = "merged and generated" if result.get("merged") else "generated"
        print(f"  {mem['s_per_step']:.2f} s/step on {result['device']}; built in {result['build_s']} s; {done} "
              f"{len(result['generated_tokens'])} tokens in {result['merge_and_generate_s']} s")
    return code
def _print_plan(cfg: RunConfig, device: str) -> int:
    """The memory plan on ``device`` in full, the other device's total on one line."""
    main = plan.estimate(cfg, device=device)
    other = plan.estimate(cfg, device="cpu" if device == "cuda" else "cuda")
    print(main.to_text())
    where = "a CPU" if other.device == "cpu" else "a GPU"
    print(f"  on {where}: {plan.gb(other.total):.2f} GB (weights {plan.gb(other.weights):.2f}, LoRA + optimizer "
          f"{plan.gb(other.lora_and_optimizer):.2f}, activations {plan.gb(other.activations):.2f}"
          f"{f', overhead {plan.gb(other.overhead):.2f}' if other.overhead else ''})")
    return 0


def _follow(run) -> int:
    """Show progress until the job ends; Ctrl-C detaches (the job keeps running)."""
    bar = tqdm_progress(run.id)
    try:
        while True:
            st = run.status()
            bar(st.get("progress"), st.get("message", st.get("label", "")))
            if st.get("state") not in ACTIVE:
                break
            if st.get("state") == "queued" or st.get("slurm_job_id"):
                jobs.schedule(run.workspace)  # starts queued jobs; merges Slurm's view of a Slurm run
            time.sleep(1.0)
    except KeyboardInterrupt:
        print(f"\ndetached; the job keeps running. Stop it with: medtune runs stop {run.id}", file=sys.stderr)
        return 0
    bar(1.0, st.get("label", ""))
    _print_result(run, st)
    return 0 if st.get("state") == "completed" else 1


def _print_result(run, st: dict) -> None:
    print(f"\n{run.id}: {st.get('label')}")
    if st.get("error"):
        print(f"  error: {st['error']}")
    if st.get("hint"):
        print(f"  hint: {st['hint']}")
    rows = run.metrics()
    evals = [r for r in rows if r.get("eval_loss") is not None]
    if evals:
        first, last = evals[0], evals[-1]
        line = f"  eval loss {first['eval_loss']:.4f} (step {first['step']}) -> {last['eval_loss']:.4f} (step {last['step']})"
        if last.get("wer") is not None:
            line += f"; {wer_name()} {first.get('wer')} -> {last.get('wer')}"
        if last.get("term_recall") is not None:
            line += f"; term recall {first.get('term_recall')} -> {last.get('term_recall')}"
        print(line)
    if rows:
        print(f"  elapsed {rows[-1].get('elapsed_s', 0):.0f}s")
    print(f"  folder: {run.path}")


def cmd_list(args: argparse.Namespace) -> int:
    ws = workspace(args)
    jobs.schedule(ws)  # also notices dead jobs and starts queued ones
    rows = [r.summary() for r in list_runs(ws)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no runs yet")
        return 0
    cols = ("run", "state", "where", "progress", "model", "data", "best_eval_loss", "best_wer")
    print("  ".join(f"{c:<14}" if c != "run" else f"{c:<40}" for c in cols))
    for r in rows:
        print("  ".join((f"{str(r[c]):<40}" if c == "run" else f"{'' if r[c] is None else str(r[c]):<14}")
                        for c in cols))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    run = get_run(workspace(args), args.run_id)
    st = run.status()
    print(json.dumps({k: v for k, v in st.items() if k != "pid_started"}, indent=2))
    print(run.config_path.read_text())
    _print_result(run, st)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    run = get_run(workspace(args), args.run_id)
    jobs.stop(run, force=args.force)
    print(f"{run.id}: {'killed' if args.force else 'stop requested (it checkpoints, then stops)'}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    run = get_run(workspace(args), args.run_id)
    jobs.resume(run)
    print(f"{run.id}: {run.status().get('state')}")
    return 0 if args.detach else _follow(run)


def cmd_logs(args: argparse.Namespace) -> int:
    run = get_run(workspace(args), args.run_id)
    print(run.log_tail(args.n))
    if args.follow:
        pos = run.log_path.stat().st_size if run.log_path.exists() else 0
        while True:
            if run.log_path.exists():
                with open(run.log_path, "rb") as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos += len(chunk)
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
            if run.status().get("state") not in ACTIVE:
                return 0
            time.sleep(1.0)
    return 0
