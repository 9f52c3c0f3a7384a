"""Figures about a dataset (numbers only; :mod:`engine.data.plots` draws them)."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from engine.data.schema import SPEECH, example_text, get_path
from engine.data.split import term_pattern

_STOP = set("""a an the and or of to in on for with at by from is are was were be been it its this that as
we will he she they his her their our you your i not no but if then than so do does did has have had
after before over under per each into about which who whom while because can may should would""".split())


def _summary(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    a = np.asarray(values, dtype=float)
    return {"count": int(a.size), "min": float(a.min()), "median": float(np.median(a)),
            "mean": float(a.mean()), "max": float(a.max()), "total": float(a.sum())}


def term_frequency(texts: list[str], terms: list[str]) -> dict[str, int]:
    """How many of ``texts`` mention each term (case-insensitive, whole words)."""
    low = [t.lower() for t in texts]
    return {term: sum(1 for t in low if term_pattern(term).search(t)) for term in terms}


def top_words(texts: list[str], n: int = 25) -> dict[str, int]:
    c: Counter = Counter()
    for t in texts:
        c.update(w for w in re.findall(r"[a-z][a-z'-]+", t.lower()) if w not in _STOP and len(w) > 2)
    return dict(c.most_common(n))


def compute_stats(examples: list[dict], kind: str, terms: list[str] | None = None) -> dict:
    """Counts, length/duration distributions, label balance and term frequency."""
    stats: dict = {"kind": kind, "examples": len(examples),
                   "splits": dict(Counter(str(get_path(e, "meta.split") or "all") for e in examples))}
    labels = Counter(str(v) for v in (get_path(e, "meta.label") for e in examples) if v is not None)
    stats["labels"] = dict(labels)
    if kind == SPEECH:
        durations = [float(e.get("duration", 0)) for e in examples if float(e.get("duration", -1)) >= 0]
        stats["durations"] = durations
        stats["duration_summary"] = _summary(durations)
        stats["words"] = [len(e.get("text", "").split()) for e in examples]
        stats["voices"] = dict(Counter(str(get_path(e, "meta.voice")) for e in examples if get_path(e, "meta.voice")))
        texts = list(dict.fromkeys(e.get("text", "") for e in examples))  # each sentence once
    else:
        stats["prompt_words"] = [len(e.get("prompt", "").split()) for e in examples]
        stats["response_words"] = [len(e.get("response", "").split()) for e in examples]
        stats["prompt_summary"] = _summary(stats["prompt_words"])
        stats["response_summary"] = _summary(stats["response_words"])
        texts = [example_text(e) for e in examples]
    if terms:
        freq = term_frequency(texts, terms)
        stats["term_frequency"] = dict(sorted(freq.items(), key=lambda kv: (-kv[1], kv[0])))
        stats["terms_missing"] = [t for t, n in freq.items() if n == 0]
    else:
        stats["top_words"] = top_words(texts)
    return stats


def summary_markdown(stats: dict) -> str:
    lines = [f"**{stats['examples']} examples** ({stats['kind']})",
             "splits: " + ", ".join(f"{k} {v}" for k, v in stats["splits"].items())]
    if stats.get("labels"):
        lines.append("labels: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["labels"].items())))
    if stats["kind"] == SPEECH and stats["duration_summary"].get("count"):
        d = stats["duration_summary"]
        lines.append(f"audio: {d['total'] / 60:.1f} min, clips {d['min']:.1f}-{d['max']:.1f} s "
                     f"(median {d['median']:.1f} s)")
        if stats.get("voices"):
            lines.append("voices: " + ", ".join(f"{k} {v}" for k, v in stats["voices"].items()))
    elif stats["kind"] != SPEECH and stats["prompt_summary"].get("count"):
        p, r = stats["prompt_summary"], stats["response_summary"]
        lines.append(f"prompt words: median {p['median']:.0f} (max {p['max']:.0f}); "
                     f"response words: median {r['median']:.0f} (max {r['max']:.0f})")
    if stats.get("terms_missing"):
        lines.append(f"terms never used: {', '.join(stats['terms_missing'][:20])}")
    return "  \n".join(lines)
