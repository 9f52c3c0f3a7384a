"""`medtune models list|fetch`, `medtune ask`, `medtune transcribe`."""

from __future__ import annotations

import argparse
import json
import sys

from engine import infer
from engine.audio import load_audio
from engine.errors import DataError, ModelError
from engine.models.embedded import ensure_embedded, is_ready
from engine.models.loader import DTYPE_CHOICES, QUANT_CHOICES, load_model
from engine.models.registry import list_models, resolve_model
from engine.progress import tqdm_progress


def register(sub: argparse._SubParsersAction) -> None:
    """Add the model commands to the `medtune` parser."""
    models = sub.add_parser("models", help="list or fetch models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True
    p = msub.add_parser("list", help="list the registry (embedded defaults first)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_list)
    p = msub.add_parser("fetch", help="fetch (and for embedded models, convert) a model into the local cache")
    p.add_argument("name", help="registry name or hub id")
    p.set_defaults(func=_fetch)

    p = sub.add_parser("ask", help="ask a text model a question (answer streams to stdout)")
    p.add_argument("name", help="registry name, hub id or model folder")
    p.add_argument("question")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    _load_args(p)
    p.set_defaults(func=_ask)

    p = sub.add_parser("transcribe", help="transcribe audio files with a speech model")
    p.add_argument("name", help="registry name, hub id or model folder")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--batch-size", type=int, default=8)
    _load_args(p)
    p.set_defaults(func=_transcribe)


def _load_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quant", choices=QUANT_CHOICES, default="none", help="bitsandbytes quantization")
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--adapter", help="LoRA adapter folder to attach (e.g. runs/<id>/adapter)")


def _quiet_transformers() -> None:
    # Our own tqdm bar says what is happening; transformers' per-step bars are noise here.
    from transformers.utils import logging  # noqa: PLC0415 - seconds to import, only for commands that load a model

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def _list(args: argparse.Namespace) -> int:
    specs = list_models()
    if args.json:
        rows = [dict(s.__dict__, cached=is_ready(s.name) if s.embedded else None) for s in specs]
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(s.name) for s in specs)
    for s in specs:
        state = ("cached" if is_ready(s.name) else "not fetched") if s.embedded else \
            ("GPU+NeMo" if s.backend == "nemo" else "hub")
        print(f"{s.name:<{width}}  {s.kind:<6}  {state:<11}  {s.description}  [{s.license}]")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    spec = resolve_model(args.name)
    if spec.embedded:
        _quiet_transformers()
        path = ensure_embedded(spec.source.split(":", 1)[1], tqdm_progress(f"fetch {spec.name}"))
        print(path)
        return 0
    if spec.backend == "nemo":
        raise ModelError(f"{spec.name} is fetched by NeMo on a GPU machine, not by `medtune models fetch`.")
    try:
        from huggingface_hub import snapshot_download  # noqa: PLC0415 - ~0.4 s to import; only a fetch talks to the Hub

        print(snapshot_download(spec.source))
    except Exception as e:  # hub errors are many classes; all mean "not fetched"
        raise ModelError(f"Could not fetch '{spec.source}' from the Hugging Face Hub "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).",
                         hint="Check the network and HF_TOKEN (gated models), or copy a downloaded "
                              "model folder here and pass its path.") from e
    return 0


def _load(args: argparse.Namespace):
    _quiet_transformers()
    return load_model(args.name, quant=args.quant, dtype=args.dtype, device=args.device,
                      adapter=args.adapter, progress=tqdm_progress(f"load {args.name}"))


def _ask(args: argparse.Namespace) -> int:
    if not args.question.strip():
        raise DataError("The question is empty.")
    if resolve_model(args.name).kind != "text":
        raise ModelError(f"'{args.name}' is a speech model; use `medtune transcribe {args.name} FILE`.")
    lm = _load(args)
    shown = 0
    for text in infer.stream_answer(lm, args.question, system=args.system, max_new_tokens=args.max_new_tokens,
                                    temperature=args.temperature, top_p=args.top_p):
        sys.stdout.write(text[shown:])
        sys.stdout.flush()
        shown = len(text)
    sys.stdout.write("\n")
    return 0


def _transcribe(args: argparse.Namespace) -> int:
    if resolve_model(args.name).kind != "speech":
        raise ModelError(f"'{args.name}' is a text model; use `medtune ask {args.name} QUESTION`.")
    # Decode every file before loading the model: a typo in the last file fails in a second.
    audios = [load_audio(f) for f in args.files]
    lm = _load(args)
    texts = infer.transcribe_batch(lm, audios, batch_size=args.batch_size)
    for f, t in zip(args.files, texts):
        print(t if len(args.files) == 1 else f"{f}\t{t}")
    return 0
