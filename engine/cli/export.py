"""``medtune export RUN``: merged model, adapter zip, ONNX, model card; optionally push to the Hub.

Runs in the foreground with a progress bar (``--background`` queues it as a job instead,
like the Export tab does). ``--push`` takes the token from ``$HF_TOKEN`` or asks for it
without echo: never from the command line, where it would land in shell history and ``ps``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from engine import jobs
from engine.cli.common import workspace
from engine.errors import MedtuneError
from engine.export.hub import push_export
from engine.progress import tqdm_progress
from engine.runs import Run, get_run


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``medtune export``."""
    p = sub.add_parser("export", help="export a run: merged model, adapter zip, ONNX, model card, Hub push",
                       description="Export a finished run into <run>/export/. With no format flag: "
                                   "--merged --adapter-zip. With only --push: push the existing export.")
    p.add_argument("run", help="run id (folder name under runs/) or a run folder inside the workspace")
    p.add_argument("--merged", action="store_true", help="merge the adapter into the base, save safetensors")
    p.add_argument("--adapter-zip", action="store_true", help="zip the PEFT adapter folder")
    p.add_argument("--onnx", action="store_true", help="ONNX graphs (float32) with a parity check vs PyTorch")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="merged weights dtype (auto: float32 on CPU, bf16/fp16 on GPU)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--push", metavar="REPO", help="push to the Hugging Face Hub repo owner/name (token: $HF_TOKEN)")
    p.add_argument("--public", action="store_true", help="create the Hub repo public (default: private)")
    p.add_argument("--push-what", default="auto", choices=("auto", "merged", "adapter"),
                   help="what to push: the merged model (+onnx/) or the adapter (auto: merged if exported)")
    p.add_argument("--background", action="store_true", help="queue the export as a background job and return")
    p.set_defaults(func=cmd_export)


def _find_run(args):
    ws = workspace(args)
    if "/" in args.run or os.sep in args.run:
        path = ws.resolve(args.run, must_exist=True, allow_assets=False)
        return Run(path)
    return get_run(ws, args.run)


def _token() -> str:
    tok = os.environ.get("HF_TOKEN", "").strip()
    if not tok and sys.stdin.isatty():
        tok = getpass.getpass("Hugging Face token (not echoed): ").strip()
    if not tok:
        raise MedtuneError("--push needs a token: set HF_TOKEN (or run in a terminal to be asked for it).")
    return tok


def cmd_export(args: argparse.Namespace) -> int:
    from engine.export.job import ExportOptions, export_run  # noqa: PLC0415 - imports torch (merge, ONNX checks)

    run = _find_run(args)
    chosen = args.merged or args.adapter_zip or args.onnx
    opts = None
    if chosen or not args.push:
        opts = (ExportOptions(merged=args.merged, adapter_zip=args.adapter_zip, onnx=args.onnx,
                              dtype=args.dtype, device=args.device) if chosen
                else ExportOptions(dtype=args.dtype, device=args.device))
    if args.background:
        if args.push:
            raise MedtuneError("--push cannot run in the background: the token stays in this process.",
                               hint=f"When the job has finished: medtune export {run.id} --push {args.push}")
        jobs.submit(run, "export", opts.to_params())
        print(f"queued export of {run.id}; follow it in {run.path / 'jobs' / 'export.json'}")
        return 0
    if opts is not None:
        manifest = export_run(run.path, opts, tqdm_progress(f"export {run.id}"))
        print(_summary(run.path / "export", manifest))
    if args.push:
        record = push_export(run.export_dir, args.push, token=_token(), private=not args.public,
                             what=args.push_what, progress=tqdm_progress("push"))
        print(f"pushed {record['what']} ({len(record['files'])} files) to {record['url']} "
              f"({'private' if record['private'] else 'public'}), commit {record['commit']}")
    return 0


def _summary(export_dir, manifest: dict) -> str:
    lines = [f"export written to {export_dir}: {', '.join(manifest['formats'])}"]
    try:
        ver = json.loads((export_dir / "verification.json").read_text())
    except (OSError, ValueError):
        ver = {}
    if "merged" in ver:
        v = ver["merged"]["reloaded_without_peft"]
        lines.append(f"  merged ({ver['merged']['merged_into']}) vs base+adapter: max |logit diff| "
                     f"{v['max_abs_logit_diff']:.3g} (tol {v['tolerance']}), greedy identical: {v['greedy_identical']}")
    if "onnx" in ver:
        v = ver["onnx"]
        lines.append(f"  ONNX Runtime vs PyTorch: max |logit diff| {v['max_abs_logit_diff']:.3g} "
                     f"(tol {v['tolerance']}), greedy identical: {v['greedy_identical']}")
    return "\n".join(lines)
