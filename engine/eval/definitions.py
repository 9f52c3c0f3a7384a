"""What each score is: the one place that names every metric an evaluation writes, the
library and version that computed it and the normaliser applied first.

:func:`definitions` is written into ``metrics.json`` (``"definitions"``) by the evaluation
job, and the report, the model card and the Evaluate tab label the scores from it ("WER,
Whisper-normalised", BLEU with its sacrebleu signature). Two evaluations are comparable
metric by metric only where their definitions are equal (:func:`differences`): a WER after
Whisper's normaliser and one after ours, or a hand-written ROUGE-L and rouge-score's, are
different numbers under the same name. A ``metrics.json`` without definitions comes from
before they were recorded and is compared with nothing that has them.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any, Iterable

from engine.eval.metrics import WER_NORMALISER
from engine.eval.text_metrics import ROUGE_KEYS, ROUGE_STEMMER, bleu_signature
from engine.text import normaliser_label

#: Every corpus metric an evaluation writes: key -> (short name, whether lower is better;
#: None when neither is). The short name labels a score whose definition is not recorded.
METRICS: dict[str, tuple[str, bool | None]] = {
    "wer": ("WER", True), "cer": ("CER", True), "term_recall": ("Term recall", False),
    "rouge1": ("ROUGE-1", False), "rouge2": ("ROUGE-2", False), "rouge_l": ("ROUGE-L", False),
    "bleu": ("BLEU", False), "structure": ("Structure adherence", False),
    "term_overlap": ("Term overlap", False), "accuracy": ("Accuracy", False), "macro_f1": ("Macro-F1", False),
    "length": ("Answer length (words)", None), "unparsed": ("Unparsed answers", True),
}

WORKBENCH = "medtune-workbench"


def version(dist: str) -> str:
    """The installed version of the distribution ``dist`` ("not installed" when it is not,
    e.g. the workbench run from a source tree without ``pip install -e``)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _normaliser(name: str) -> dict[str, str]:
    """The ``normaliser`` fields of a definition, for a normaliser of engine.text."""
    normaliser_label(name)  # an unknown name fails here, naming the choices
    if name == "whisper":
        detail = (f"Whisper's English text normaliser: transformers {version('transformers')} "
                  f"EnglishTextNormalizer with OpenAI's english.json from whisper-normalizer "
                  f"{version('whisper-normalizer')}")
    else:
        detail = (f"engine/text.py normalize ({WORKBENCH} {version(WORKBENCH)}): lower case, punctuation "
                  "removed, numbers spelled out")
    return {"normaliser": name, "normaliser_detail": detail}


def _own(name: str, normaliser: str, **extra: Any) -> dict[str, Any]:
    """A metric the workbench computes itself; ``normaliser`` is "medtune" or says why none."""
    fields = _normaliser(normaliser) if normaliser == "medtune" else {"normaliser": normaliser}
    return {"name": name, "library": WORKBENCH, "version": version(WORKBENCH), **fields, **extra}


def wer_name(normaliser: str = WER_NORMALISER, unit: str = "WER") -> str:
    """How a WER (or CER, ``unit``) after ``normaliser`` is named: "WER, Whisper-normalised".
    The training curves' WER (engine.train.speech) is computed with the default."""
    return f"{unit}, {normaliser_label(normaliser)}"


@functools.cache
def _speech(normaliser: str) -> dict[str, dict]:
    jiwer = {"library": "jiwer", "version": version("jiwer"), **_normaliser(normaliser)}
    return {
        "wer": {"name": wer_name(normaliser), **jiwer,
                "aggregation": "corpus: all errors / all reference words"},
        "cer": {"name": wer_name(normaliser, "CER"), **jiwer,
                "aggregation": "corpus: all character errors / all reference characters (spaces count)"},
        "term_recall": _own("Term recall", "medtune",
                            matching="each listed term's medtune-normalised words, as a whole-word sequence"),
    }


@functools.cache
def _text(rouge_stemmer: bool) -> dict[str, dict]:
    rouge = {"library": "rouge-score", "version": version("rouge-score"),
             "normaliser": "rouge-score tokenizer (lower case, non-alphanumerics removed)"
                           + (" + Porter stemmer" if rouge_stemmer else ""),
             "use_stemmer": rouge_stemmer, "aggregation": "mean of per-answer F1"}
    names = {"rouge1": "ROUGE-1 F1", "rouge2": "ROUGE-2 F1", "rougeL": "ROUGE-L F1"}
    decision = "none (the first yes/no/maybe of the answer)"
    return {
        **{key: {"name": names[name], **rouge} for name, key in ROUGE_KEYS.items()},
        "bleu": {"name": "BLEU", "library": "sacrebleu", "version": version("sacrebleu"),
                 "normaliser": "sacrebleu tokenizer 13a (case kept)", "signature": bleu_signature(),
                 "scale": "0-100", "aggregation": "corpus"},
        "structure": _own("Structure adherence", "none (headings matched case-insensitively)"),
        "term_overlap": _own("Term overlap", "medtune"),
        "length": _own("Answer length (words)", "medtune"),
        "accuracy": _own("Accuracy", decision),
        "macro_f1": _own("Macro-F1", decision),
        "unparsed": _own("Unparsed answers", decision),
    }


def definitions(kind: str, *, normaliser: str = WER_NORMALISER, rouge_stemmer: bool = ROUGE_STEMMER) -> dict:
    """{metric key: {"name", "library", "version", "normaliser", ...}} for a "speech" or
    "text" evaluation scored with ``normaliser`` (speech WER/CER) and ``rouge_stemmer``.
    An unknown normaliser fails here, for either kind, naming the choices."""
    normaliser_label(normaliser)
    if kind == "speech":
        return {k: dict(v) for k, v in _speech(normaliser).items()}
    if kind == "text":
        return {k: dict(v) for k, v in _text(bool(rouge_stemmer)).items()}
    raise ValueError(f"kind must be 'speech' or 'text', not {kind!r}")


def label(key: str, defs: dict | None) -> str:
    """How the score ``key`` is shown: its recorded name ("WER, Whisper-normalised"; BLEU
    with its signature), or the short name when the evaluation recorded no definition."""
    d = (defs or {}).get(key)
    if not isinstance(d, dict) or not d.get("name"):
        return METRICS.get(key, (key, None))[0]
    return f"{d['name']} ({d['signature']})" if d.get("signature") else str(d["name"])


def describe(defs: dict | None, keys: Iterable[str]) -> list[str]:
    """One line per metric in ``keys``: name, library and version, normaliser (and the
    settings that change the number); or one line saying nothing was recorded."""
    if not defs:
        return ["Metric definitions: not recorded (an evaluation from before the workbench recorded them; "
                "evaluate again to compare it with current scores)."]
    lines = []
    for key in keys:
        d = defs.get(key)
        if not isinstance(d, dict):
            continue
        parts = [f"{d.get('library')} {d.get('version')}", f"normaliser: {d.get('normaliser_detail') or d.get('normaliser')}"]
        parts += [f"{k}: {d[k]}" for k in ("signature", "scale", "aggregation") if d.get(k) is not None]
        lines.append(f"{d.get('name', key)}: " + "; ".join(parts))
    return lines


def differences(metrics_by_name: dict[str, dict | None]) -> tuple[set[str], list[str]]:
    """Which scores of several evaluations (a name, e.g. the run id -> its metrics.json)
    are not defined alike: (metric keys that differ, one line per problem). A metric
    counts when at least two evaluations report it; an evaluation without recorded
    definitions differs from every one that has them."""
    present = {name: m for name, m in metrics_by_name.items() if isinstance(m, dict) and isinstance(m.get("base"), dict)}
    keys: set[str] = set()
    lines: list[str] = []
    undefined = [name for name, m in present.items() if not m.get("definitions")]
    if undefined and len(undefined) < len(present):
        lines.append(f"{', '.join(undefined)}: metric definitions not recorded (evaluated before they were); "
                     "not comparable with the others: evaluate again")
    for key in METRICS:
        seen = {name: (m.get("definitions") or {}).get(key) for name, m in present.items() if key in m["base"]}
        if len(seen) < 2:
            continue
        distinct = {repr(sorted(d.items())) if isinstance(d, dict) else "" for d in seen.values()}
        if len(distinct) > 1:
            keys.add(key)
            if all(seen.values()):
                lines.append(f"{METRICS[key][0]} differs: " + "; ".join(
                    f"{name}: {label(key, {key: d})} [{d.get('library')} {d.get('version')}, "
                    f"{d.get('normaliser')}]" for name, d in seen.items()))
    return keys, lines
