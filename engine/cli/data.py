"""`medtune data ...`: inspect, validate, scrub, split and synthesize datasets.

Each command calls the same engine function as the Data tab (engine.data.*).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.atomic import write_text
from engine.cli.common import workspace
from engine.data import ner, phi
from engine.data.datasets import list_datasets, load_source, split_and_save
from engine.data.plots import stats_figure
from engine.data.presets import PRESETS
from engine.data.readers import read_terms
from engine.data.shipped import SHIPPED, ensure_shipped
from engine.data.split import parse_ratios
from engine.data.stats import compute_stats, summary_markdown
from engine.data.synth import parse_voice, read_sentences, synthesize_sentences
from engine.data.validate import load_tokenizer, validate
from engine.errors import DataError
from engine.models.loader import model_path
from engine.progress import tqdm_progress
from engine.tts import DEFAULT_VOICES


def _load(args, ws):
    return load_source(args.source, ws, preset=args.preset, hub_split=args.hub_split,
                       progress=tqdm_progress("loading"))


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="shipped name, saved dataset name, path in the workspace, or hub:owner/name")
    p.add_argument("--preset", help="column mapping (see `medtune data presets`)")
    p.add_argument("--hub-split", default="train", help="split to read from a hub dataset (default: train)")


def _refuse_bad_rows(res, args, verb: str) -> None:
    """Rows the reader refused would silently be missing from what is written: say so, unless
    --allow-errors."""
    if res.errors and not args.allow_errors:
        raise DataError(f"{len(res.errors)} row(s) could not be read (first: {res.errors[0]})", file=res.source,
                        hint=f"Fix them (see `medtune data validate`) or pass --allow-errors to {verb} the rest.")


def cmd_list(args) -> int:
    for d in list_datasets(workspace(args)):
        state = "shipped" + ("" if d["built"] else ", not built yet") if d["shipped"] else "saved"
        print(f"{d['name']:<24} {d['kind']:<7} {state:<24} {d['description']}")
    return 0


def cmd_presets(args) -> int:
    for p in PRESETS.values():
        hub = f"  hub: {', '.join(p.hub_ids)}" if p.hub_ids else ""
        print(f"{p.name:<16} {p.kind:<7} {p.description}{hub}")
    return 0


def cmd_build(args) -> int:
    for name in args.names or list(SHIPPED):
        print(ensure_shipped(name, workspace(args), tqdm_progress(name)))
    return 0


def cmd_inspect(args) -> int:
    ws = workspace(args)
    res, terms = _load(args, ws)
    stats = compute_stats(res.examples, res.kind, terms)
    print(summary_markdown(stats).replace("  \n", "\n").replace("**", ""))
    if res.issues:
        print(f"{len(res.issues)} issue(s) while reading; run `medtune data validate` for the list")
    for ex in res.examples[: args.rows]:
        print(json.dumps(ex, ensure_ascii=False)[:400])
    if args.html:
        out = ws.resolve(args.html, allow_assets=False)
        stats_figure(stats).write_html(str(out), include_plotlyjs=True)  # self-contained: works offline
        print(f"plots written to {out}")
    return 0


def cmd_validate(args) -> int:
    ws = workspace(args)
    res, _ = _load(args, ws)
    tok = load_tokenizer(model_path(args.tokenizer)) if args.tokenizer else None
    rep = validate(res, tokenizer=tok, check_audio=not args.no_audio, progress=tqdm_progress("validating"))
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        print(rep.summary())
        for issue in rep.issues[: args.max]:
            print(f"  [{issue.severity}] {issue}")
        if len(rep.issues) > args.max:
            print(f"  ... {len(rep.issues) - args.max} more (use --max or --json)")
    return 0 if rep.ok else 1


_DETECTORS = {"auto": None, "rules": ("rules",), "ner": ("ner",), "both": ("rules", "ner")}


def cmd_scrub(args) -> int:
    detectors = _DETECTORS[args.detectors] or phi.default_detectors()
    if args.detectors == "auto":
        print(ner.ner_status()[1], file=sys.stderr)  # say whether names come from NER too, and how to turn it on
    if args.eval:
        gold = workspace(args).resolve(args.gold, must_exist=True) if args.gold else phi.GOLD_SET
        wanted = ("rules", "ner") if "ner" in detectors else ("rules",)  # rules, NER and union side by side
        print(phi.format_comparison(phi.evaluate_detectors(gold, split=args.gold_split, detectors=wanted)))
        return 0
    if args.text is not None:
        r = phi.scrub(args.text, detectors=detectors)
        print(r.scrubbed)
        print(json.dumps(r.counts), file=sys.stderr)
        return 0
    if not args.source:
        raise DataError("give a dataset, --text, or --eval", field="source")
    ws = workspace(args)
    res, _ = _load(args, ws)
    _refuse_bad_rows(res, args, "scrub")
    for row in phi.preview(res.examples, limit=args.preview, detectors=detectors):
        print(f"- {row['id']} [{row['field']}] {row['found']}\n  before: {row['before'][:200]}\n  after:  {row['after'][:200]}")
    scrubbed, counts = phi.scrub_examples(res.examples, detectors=detectors)
    print("found: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing"))
    if args.out:
        out = ws.resolve(args.out, allow_assets=False)
        write_text(out, "".join(json.dumps(ex, ensure_ascii=False) + "\n" for ex in scrubbed))
        print(f"scrubbed examples written to {out}")
    return 0


def cmd_split(args) -> int:
    ratios = parse_ratios(args.ratios)  # before the load: a typo in --ratios fails at once
    ws = workspace(args)
    res, terms = _load(args, ws)
    if args.terms:
        terms = read_terms(ws.resolve(args.terms, must_exist=True))
    _refuse_bad_rows(res, args, "split")
    d, summary = split_and_save(res, ws, args.name, ratios=ratios, seed=args.seed, stratify=args.stratify,
                                group=args.group, terms=terms, overwrite=args.overwrite)
    print(f"saved {d.path}")
    print(json.dumps(summary, indent=2))
    return 0


def cmd_synth(args) -> int:
    ws = workspace(args)
    src = ws.resolve(args.sentences, must_exist=True)
    out = ws.resolve(args.out, allow_assets=False) if args.out else ws.synth / Path(args.sentences).stem
    voices = tuple(parse_voice(v) for v in args.voice) if args.voice else DEFAULT_VOICES
    speeds = tuple(args.speed) if args.speed else (1.0,)
    manifest = synthesize_sentences(read_sentences(src), out, voices=voices, speeds=speeds,
                                    progress=tqdm_progress("synthesizing"))
    print(f"NeMo manifest: {manifest}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `medtune data ...`."""
    p = sub.add_parser("data", help="inspect, validate, scrub, split and synthesize datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True

    q = dsub.add_parser("list", help="shipped and saved datasets")
    q.set_defaults(func=cmd_list)
    q = dsub.add_parser("presets", help="column-mapping presets for public layouts")
    q.set_defaults(func=cmd_presets)
    q = dsub.add_parser("build", help="build shipped datasets into the workspace (synthesizes audio)")
    q.add_argument("names", nargs="*", help="default: all shipped sets")
    q.set_defaults(func=cmd_build)

    q = dsub.add_parser("inspect", help="summary statistics and the first rows")
    _add_source(q)
    q.add_argument("--rows", type=int, default=3, help="rows to print (default 3)")
    q.add_argument("--html", help="also write the statistics plots to this HTML file (in the workspace)")
    q.set_defaults(func=cmd_inspect)

    q = dsub.add_parser("validate", help="report bad rows, duplicates, bad audio, label balance (exit 1 on errors)")
    _add_source(q)
    q.add_argument("--tokenizer", help="model name or folder whose tokenizer must encode every character")
    q.add_argument("--no-audio", action="store_true", help="skip decoding audio")
    q.add_argument("--json", action="store_true", help="print the full report as JSON")
    q.add_argument("--max", type=int, default=50, help="issues to print (default 50)")
    q.set_defaults(func=cmd_validate)

    q = dsub.add_parser("scrub", help="find and replace PHI; --eval scores the scrubber on the gold set")
    q.add_argument("source", nargs="?", help="dataset to scrub (as for inspect)")
    q.add_argument("--preset")
    q.add_argument("--hub-split", default="train")
    q.add_argument("--text", help="scrub this text and print it")
    q.add_argument("--out", help="write scrubbed examples (JSONL) here, inside the workspace")
    q.add_argument("--preview", type=int, default=5, help="before/after rows to print (default 5)")
    q.add_argument("--allow-errors", action="store_true", help="scrub the readable rows even if some are bad")
    q.add_argument("--eval", action="store_true", help="precision/recall per category on the PHI gold set")
    q.add_argument("--gold", help="gold JSONL (default: the shipped synthetic set)")
    q.add_argument("--gold-split", choices=("dev", "heldout"), help="score one part of the gold set only")
    q.add_argument("--detectors", choices=tuple(_DETECTORS), default="auto",
                   help="rules, ner (names by Presidio/spaCy, the [deid] extra), or both; "
                        "auto (default): both when the extra is installed")
    q.set_defaults(func=cmd_scrub)

    q = dsub.add_parser("split", help="deterministic train/validation/test split saved as a workspace dataset")
    _add_source(q)
    q.add_argument("--name", required=True, help="name of the saved dataset (workspace/datasets/NAME)")
    q.add_argument("--ratios", default="0.8,0.1,0.1", help="train,validation,test (default 0.8,0.1,0.1)")
    q.add_argument("--seed", type=int, default=1234, help="random seed (saved in dataset.json)")
    q.add_argument("--stratify", help="key to stratify by (default: meta.label when present)")
    q.add_argument("--group", help="key whose values stay together (speech default: meta.sentence_id or text)")
    q.add_argument("--terms", help="term list (one per line): held-out sentences' terms must occur in train")
    q.add_argument("--overwrite", action="store_true")
    q.add_argument("--allow-errors", action="store_true", help="split the readable rows even if some are bad")
    q.set_defaults(func=cmd_split)

    q = dsub.add_parser("synth", help="synthesize speech for sentences (16 kHz FLAC + NeMo manifest)")
    q.add_argument("sentences", help=".txt (one sentence per line) or .jsonl with 'text' (and 'id')")
    q.add_argument("--out", help="output folder in the workspace (default: synth/<name>)")
    q.add_argument("--voice", action="append", help="eSpeak voice name[@wpm][:pitch]; repeatable (default: 4 voices)")
    q.add_argument("--speed", action="append", type=float, help="rate multiplier; repeatable (default 1.0)")
    q.set_defaults(func=cmd_synth)
