"""Batch evaluation: base and tuned over a dataset split, side by side.

Output (in ``<run>/eval/``, or any folder for a base model alone):

- ``predictions.jsonl``: one line per example, appended batch by batch as they finish (a
  reader or a killed job sees whole lines), holding the input, the reference, both
  outputs, per-item metrics and ``improvement`` (positive = tuned is better).
- ``metrics.json``: corpus figures for each side, tuned-minus-base deltas and
  ``definitions`` (each score's name, library, version and normaliser:
  engine/eval/definitions.py), written atomically once every item is in.

Entry point for ``engine.jobs`` (kind "evaluate"): :func:`run`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from engine import atomic
from engine.data.datasets import open_dataset
from engine.errors import DataError
from engine.eval.compare import open_run_pair, sides
from engine.eval.definitions import definitions
from engine.eval.metrics import WER_NORMALISER, cer, speech_report, utterance_terms, wer
from engine.eval.text_metrics import ROUGE_STEMMER, text_item_metrics, text_report
from engine.infer import generate_batch, transcribe_batch
from engine.progress import Progress, report
from engine.runs import JobContext

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
DEFAULT_BATCH = 8
DEFAULT_MAX_NEW_TOKENS = 128


def _speech_item(ex: dict, outs: dict[str, str], terms: list[str], normaliser: str) -> dict:
    ref = ex.get("text", "")
    # the normaliser travels with the item, so its word diff is redrawn the way it was scored
    rec = {"id": ex["id"], "kind": "speech", "input": ex.get("audio"), "reference": ref,
           "group": (ex.get("meta") or {}).get("voice"), "duration": ex.get("duration"),
           "normaliser": normaliser, "metrics": {}}
    for side, text in outs.items():
        hits, misses = utterance_terms(ref, text, terms)
        rec[side] = text
        rec["metrics"][side] = {"wer": wer(ref, text, normaliser=normaliser),
                                "cer": cer(ref, text, normaliser=normaliser), "hits": hits, "misses": misses}
    if "tuned" in outs:
        rec["improvement"] = rec["metrics"]["base"]["wer"] - rec["metrics"]["tuned"]["wer"]
    return rec


def _text_item(ex: dict, outs: dict[str, str], terms: list[str] | None, rouge_stemmer: bool) -> dict:
    ref, label = ex.get("response", ""), (ex.get("meta") or {}).get("label")
    rec = {"id": ex["id"], "kind": "text", "input": ex.get("prompt"), "reference": ref, "label": label,
           "metrics": {}}
    for side, text in outs.items():
        rec[side] = text
        rec["metrics"][side] = text_item_metrics(ref, text, terms, label, rouge_stemmer=rouge_stemmer)
    if "tuned" in outs:
        b, t = rec["metrics"]["base"], rec["metrics"]["tuned"]
        rec["improvement"] = (float(t["correct"]) - float(b["correct"]) if label is not None
                              else t["rouge_l"] - b["rouge_l"])
    return rec


def summarize(records: list[dict], terms: list[str] | None = None, *, normaliser: str = WER_NORMALISER,
              rouge_stemmer: bool = ROUGE_STEMMER) -> dict:
    """Corpus metrics for each side of ``records``, tuned-minus-base deltas and the
    definitions of the scores (speech WER/CER after ``normaliser``; text ROUGE with or
    without ``rouge_stemmer``)."""
    if not records:
        return {"n": 0}
    kind = records[0]["kind"]
    sides = [s for s in ("base", "tuned") if s in records[0]]
    out: dict[str, Any] = {"n": len(records), "kind": kind, "sides": sides}
    for s in sides:
        refs, hyps = [r["reference"] for r in records], [r.get(s) or "" for r in records]
        if kind == "speech":
            out[s] = speech_report(refs, hyps, terms or [], groups=[r.get("group") or "-" for r in records],
                                   normaliser=normaliser)
        else:
            labels = [r.get("label") for r in records]
            out[s] = text_report(refs, hyps, terms, labels if any(lab is not None for lab in labels) else None,
                                 rouge_stemmer=rouge_stemmer)
    if "tuned" in sides:
        out["delta"] = {k: out["tuned"][k] - v for k, v in out["base"].items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)
                        and isinstance(out["tuned"].get(k), (int, float)) and k != "n"}
    if kind == "speech":
        out["headline"] = "wer"
    else:
        out["headline"] = "accuracy" if "accuracy" in out.get("base", {}) else "rouge_l"
    out["definitions"] = definitions(kind, normaliser=normaliser, rouge_stemmer=rouge_stemmer)
    return out


def evaluate(pair, examples: list[dict], out_dir: str | Path, *, kind: str, terms: list[str] | None = None,
             info: dict | None = None, batch_size: int = DEFAULT_BATCH,
             max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, system: str | None = None,
             normaliser: str = WER_NORMALISER, rouge_stemmer: bool = ROUGE_STEMMER,
             progress: Progress | None = None) -> dict:
    """Run every example through each side of ``pair`` (see engine.eval.compare), writing
    predictions.jsonl as batches finish and metrics.json at the end; returns the metrics.
    ``normaliser`` names speech WER/CER's (engine.text.NORMALISERS); ``rouge_stemmer`` is
    rouge-score's stemming option."""
    definitions(kind, normaliser=normaliser)  # an unknown normaliser fails before any model runs, naming the choices
    if not examples:
        raise DataError("the split is empty: nothing to evaluate")
    if pair.kind != kind:
        raise DataError(f"a {pair.kind} model cannot be evaluated on a {kind} dataset", field="dataset")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pred_path, metrics_path = out_dir / PREDICTIONS, out_dir / METRICS
    archive_previous(out_dir)
    atomic.write_text(pred_path, "")
    records: list[dict] = []
    names = sides(pair)
    t0 = time.time()
    bs = max(1, int(batch_size))
    for start in range(0, len(examples), bs):
        batch = examples[start:start + bs]
        outs: dict[str, list[str]] = {}
        for s in names:
            with pair.side(s) as lm:
                if kind == "speech":
                    outs[s] = transcribe_batch(lm, [ex["audio"] for ex in batch], batch_size=bs,
                                               max_new_tokens=min(int(max_new_tokens), 440))
                else:
                    outs[s] = generate_batch(lm, [ex["prompt"] for ex in batch], batch_size=bs,
                                             system=system or None, max_new_tokens=int(max_new_tokens))
        for i, ex in enumerate(batch):
            one = {s: outs[s][i] for s in names}
            rec = (_speech_item(ex, one, terms or [], normaliser) if kind == "speech"
                   else _text_item(ex, one, terms, rouge_stemmer))
            atomic.append_line(pred_path, json.dumps(rec, ensure_ascii=False))
            records.append(rec)
        done = start + len(batch)
        report(progress, done / len(examples), f"evaluated {done}/{len(examples)}")
    metrics = summarize(records, terms, normaliser=normaliser, rouge_stemmer=rouge_stemmer)
    metrics.update(info or {}, elapsed_s=round(time.time() - t0, 2), batch_size=bs,
                   max_new_tokens=int(max_new_tokens), created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    atomic.write_json(metrics_path, metrics)
    return metrics


def archive_previous(out_dir: Path) -> Path | None:
    """Move an earlier evaluation's predictions/metrics into ``history/<when>-<dataset>-<split>/``
    so a re-evaluation (say on general-english, to check that tuning did not harm ordinary
    speech) never destroys the figures it replaces. Reviews stay where they are: each
    verdict carries a digest of the texts it judged, so verdicts on replaced outputs are
    reported as stale rather than silently re-attached."""
    pred, met = out_dir / PREDICTIONS, out_dir / METRICS
    if not met.is_file() and not (pred.is_file() and pred.stat().st_size):
        return None
    old = load_metrics(out_dir) if met.is_file() else {}
    stamp = (old or {}).get("created") or time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(pred.stat().st_mtime if pred.is_file() else time.time()))
    parts = [stamp.replace(":", "").replace("-", ""), (old or {}).get("dataset"), (old or {}).get("split")]
    if not met.is_file():
        parts.append("partial")  # a stopped or killed evaluation: its lines are kept too
    dest = out_dir / "history" / "-".join(str(p) for p in parts if p)
    n = 1
    while dest.exists():
        n += 1
        dest = dest.with_name(f"{dest.name.split('~')[0]}~{n}")
    dest.mkdir(parents=True)
    for f in (pred, met):
        if f.is_file():
            f.replace(dest / f.name)
    return dest


def load_predictions(folder: str | Path) -> list[dict]:
    """predictions.jsonl of an eval folder (a torn last line from a live job is skipped)."""
    path = Path(folder) / PREDICTIONS
    out = []
    if not path.is_file():
        return out
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as e:
            if n == len(lines):
                break
            raise DataError(f"not valid JSON ({e})", file=str(path), line=n) from e
    return out


def load_metrics(folder: str | Path) -> dict | None:
    path = Path(folder) / METRICS
    return json.loads(path.read_text()) if path.is_file() else None


def evaluate_dataset(pair, dataset_ref: str, split: str, out_dir: str | Path, workspace, *,
                     limit: int | None = None, info: dict | None = None, progress: Progress | None = None,
                     **kw: Any) -> dict:
    """Open ``dataset_ref`` (shipped name or folder), load ``split`` and :func:`evaluate`."""
    ds = open_dataset(dataset_ref, workspace)
    if split not in ds.split_names():
        raise DataError(f"dataset '{ds.name}' has no split '{split}'", field="split",
                        hint=f"Splits: {', '.join(ds.split_names())}")
    examples = ds.load_split(split)
    if limit:
        examples = examples[:int(limit)]
    terms = ds.terms() or None
    meta = {"dataset": ds.name, "dataset_path": str(ds.path), "split": split, **(info or {})}
    return evaluate(pair, examples, out_dir, kind=ds.kind, terms=terms, info=meta, progress=progress, **kw)


def run(ctx: JobContext) -> None:
    """Job entry point: evaluate a run's base and tuned model on a split into run/eval/.

    params: dataset (default: the run's dataset), split (default: the run's test split),
    limit, batch_size, max_new_tokens, normaliser (speech WER/CER: "whisper", the default, or
    "medtune"), rouge_stemmer (default true).
    """
    run, params, cfg = ctx.run, ctx.params, ctx.run.config()
    report(ctx.progress, 0.0, "loading model")
    pair = open_run_pair(run)
    evaluate_dataset(
        pair, params.get("dataset") or cfg.data.dataset, params.get("split") or cfg.data.test_split,
        run.eval_dir, ctx.workspace, limit=params.get("limit"),
        batch_size=int(params.get("batch_size") or DEFAULT_BATCH),
        max_new_tokens=int(params.get("max_new_tokens") or cfg.eval.max_new_tokens),
        system=cfg.data.system_prompt or None,
        normaliser=params.get("normaliser") or WER_NORMALISER,
        rouge_stemmer=ROUGE_STEMMER if params.get("rouge_stemmer") is None else bool(params["rouge_stemmer"]),
        info={"run": run.id, "model": cfg.model.name, "adapter": str(run.adapter_dir)},
        progress=ctx.progress,
    )
