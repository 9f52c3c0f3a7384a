"""The model card (README.md) shipped with every export and pushed to the Hub.

Built only from what the run folder records: config.yaml, the dataset's dataset.json,
metrics.jsonl, eval/metrics.json and the export's own verification. Nothing is invented; a
section whose source is missing says so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from engine.eval.report import definitions_markdown, metric_rows
from engine.export.source import RunSource

LIMITATIONS = (
    "**Research use only. This model is not a medical device and does not give medical advice.** "
    "It was fine-tuned on a small dataset and can produce fluent, confident and wrong statements "
    "(drug names, doses, diagnoses). Do not use it for diagnosis, treatment or any decision about a "
    "patient. Outputs must be checked by a qualified clinician. Any biases and errors of the base "
    "model are inherited."
)

#: Registry license text -> Hub license id for the card's metadata.
_HUB_LICENSE = {"apache-2.0": "apache-2.0", "mit": "mit", "cc-by-4.0": "cc-by-4.0"}


#: Embedded models are conversions of these Hub models (what the card's base_model should name).
UPSTREAM = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct", "whisper-tiny.en": "openai/whisper-tiny.en"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
FORMAT_NAMES = {"merged": "merged model (merged/)", "onnx": "ONNX graphs (onnx/)", "adapter_zip": "LoRA adapter (adapter.zip)"}


def hub_base_id(model_name: str) -> str | None:
    """The Hub id of the base model, or None for a local folder (nothing valid to link to)."""
    if model_name in UPSTREAM:
        return UPSTREAM[model_name]
    if _HUB_ID.match(model_name) and not Path(model_name).expanduser().exists():
        return model_name
    return None


def hub_license(license_text: str) -> str:
    low = license_text.lower()
    if low in _HUB_LICENSE:
        return _HUB_LICENSE[low]
    if "llama 3.1" in low:
        return "llama3.1"
    if "llama 2" in low:
        return "llama2"
    return "other"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _metrics_rows(path: Path) -> list[dict]:
    rows = []
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a torn last line
    except OSError:
        pass
    return rows


def _dataset_summary(src: RunSource) -> str:
    data = src.section("data")
    ref = str(data.get("dataset") or "")
    if not ref:
        return "Not recorded in the run's config."
    workspace_root = src.path.parent.parent
    meta = None
    for cand in (Path(ref), workspace_root / ref, workspace_root / "datasets" / ref):
        meta = _read_json(cand / "dataset.json")
        if meta:
            break
    lines = [f"- Dataset: `{ref}`"]
    if isinstance(meta, dict):
        if meta.get("source"):
            lines.append(f"- Source: {meta['source']}")
        splits = meta.get("splits") or {}
        if splits:
            lines.append("- Splits: " + ", ".join(f"{k} {v}" for k, v in splits.items()))
        if meta.get("kind"):
            lines.append(f"- Kind: {meta['kind']}")
    for key in ("train_split", "eval_split", "test_split"):
        if data.get(key):
            lines.append(f"- {key.replace('_', ' ')}: `{data[key]}`")
    return "\n".join(lines)


def _training_summary(src: RunSource) -> str:
    rows = _metrics_rows(src.path / "metrics.jsonl")
    if not rows:
        return "No training metrics recorded."
    last = rows[-1]
    losses = [r["loss"] for r in rows if r.get("loss") is not None]
    evals = [r["eval_loss"] for r in rows if r.get("eval_loss") is not None]
    parts = [f"- Steps: {last.get('step', '?')}" + (f", epochs: {last['epoch']:.2f}" if isinstance(last.get("epoch"), (int, float)) else "")]
    if losses:
        parts.append(f"- Training loss: {losses[0]:.4f} (first) -> {losses[-1]:.4f} (last)")
    if evals:
        parts.append(f"- Eval loss: {evals[-1]:.4f} (last), {min(evals):.4f} (best)")
    return "\n".join(parts)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _eval_table(metrics: Any) -> str:
    """base vs tuned table from eval/metrics.json ({"base": {...}, "tuned": {...}, "delta": ...}).

    Known metrics go through the Evaluate area's own rows (names as their recorded definitions
    label them, better/worse), followed by those definitions (library, version, normaliser,
    BLEU's signature); a file from elsewhere with unknown metric names is shown as it is
    rather than dropped."""
    if not isinstance(metrics, dict) or not metrics:
        return "No evaluation recorded for this run (run `medtune evaluate` before exporting to include it)."
    rows = metric_rows(metrics) if isinstance(metrics.get("base"), dict) else []
    if rows:
        out = ["| metric | base | tuned | change |", "|---|---|---|---|"]
        for r in rows:
            d = "" if r["delta"] is None else f"{r['delta']:+.4f}" + {True: " (better)", False: " (worse)"}.get(r["better"], "")
            out.append(f"| {r['metric']} | {_fmt(r['base'])} | {_fmt(r['tuned'])} | {d} |")
        return "\n".join(out) + "\n\nMetric definitions:\n\n" + definitions_markdown(metrics)
    base, tuned = metrics.get("base"), metrics.get("tuned")
    if isinstance(base, dict) and isinstance(tuned, dict):
        names = [k for k in base if isinstance(base[k], (int, float))]
        return "| metric | base | tuned |\n|---|---|---|\n" + "\n".join(
            f"| {k} | {_fmt(base[k])} | {_fmt(tuned.get(k, ''))} |" for k in names)
    flat = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float, str))]
    return "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {_fmt(v)} |" for k, v in flat)


def _verification(verification: dict) -> str:
    lines = []
    merged = verification.get("merged")
    if merged:
        v = merged["reloaded_without_peft"]
        lines.append(
            f"- Merged ({merged['merged_into']}) vs base + adapter on {len(v['cases'])} fixed inputs: "
            f"max |logit diff| {v['max_abs_logit_diff']:.3g} (tolerance {v['tolerance']}), "
            f"identical greedy output: {'yes' if v['greedy_identical'] else 'no'}.")
    onnx = verification.get("onnx")
    if onnx:
        lines.append(
            f"- ONNX Runtime vs PyTorch (float32): max |logit diff| {onnx['max_abs_logit_diff']:.3g} "
            f"(tolerance {onnx['tolerance']}), identical greedy output: {'yes' if onnx['greedy_identical'] else 'no'}.")
    return "\n".join(lines) or "No merged/ONNX verification in this export (adapter only)."


def _usage(src: RunSource, base_id: str, formats: list[str]) -> str:
    cls = "AutoModelForSpeechSeq2Seq" if src.kind == "speech" else "AutoModelForCausalLM"
    proc = "AutoProcessor" if src.kind == "speech" else "AutoTokenizer"
    parts = []
    if "merged" in formats:
        parts.append(f"Merged model (no peft needed):\n\n```python\nfrom transformers import {cls}, {proc}\n"
                     f"model = {cls}.from_pretrained(\"PATH_OR_REPO\")\nprocessor = {proc}.from_pretrained(\"PATH_OR_REPO\")\n```")
    parts.append(f"Adapter on the base model:\n\n```python\nfrom peft import PeftModel\nfrom transformers import {cls}\n"
                 f"base = {cls}.from_pretrained(\"{base_id}\")\nmodel = PeftModel.from_pretrained(base, \"adapter\")\n```")
    return "\n\n".join(parts)


def build_card(src: RunSource, *, formats: list[str], verification: dict, base_id: str | None = None) -> str:
    """README.md text for the export of ``src``. ``base_id``: how users should name the base
    (the registry/hub name; defaults to the run's model.name)."""
    hub_id = hub_base_id(src.model_name)
    base_id = base_id or hub_id or src.model_name
    lora, train = src.section("lora"), src.section("train")
    front = {
        "license": hub_license(src.license),
        **({"base_model": hub_id} if hub_id else {}),
        "library_name": "transformers" if "merged" in formats else "peft",
        "tags": ["medical", "lora", "peft", "medtune-workbench",
                 "automatic-speech-recognition" if src.kind == "speech" else "text-generation"],
    }
    quant = src.quantization
    method = "QLoRA" if quant in ("4bit", "8bit") else "LoRA"
    sections = [
        "---\n" + yaml.safe_dump(front, sort_keys=False) + "---",
        f"# {src.id}: {method} fine-tune of {base_id}",
        f"A {method} adapter trained with MedTune Workbench on `{base_id}` "
        f"({'speech recognition' if src.kind == 'speech' else 'text generation'})"
        + (f", on a {quant} quantized base" if quant != "none" else "") + ".\n\nFiles in this export: "
        + ", ".join(FORMAT_NAMES.get(f, f) for f in formats) + ".",
        "## Base model\n\n" + f"- `{base_id}`"
        + (f" (MedTune name `{src.model_name}`)" if base_id != src.model_name else "")
        + f"\n- License: {src.license or 'see the base model card'} (this fine-tune is bound by it)",
        "## Intended use\n\nResearch and education on adapting language and speech models to medical "
        "text and dictation; a starting point for evaluation by qualified people.",
        "## Limitations\n\n" + LIMITATIONS,
        "## Training data\n\n" + _dataset_summary(src),
        f"## {method} configuration\n\n```yaml\n" + (yaml.safe_dump(lora, sort_keys=False) if lora else "# not recorded\n") + "```",
        "## Training configuration\n\n```yaml\n" + (yaml.safe_dump(train, sort_keys=False) if train else "# not recorded\n")
        + "```\n\n" + _training_summary(src),
        "## Evaluation: base vs tuned\n\n" + _eval_table(_read_json(src.eval_dir / "metrics.json")),
        "## Export verification\n\n" + _verification(verification),
        "## How to load\n\n" + _usage(src, base_id, formats),
    ]
    return "\n\n".join(sections) + "\n"
