"""Deterministic train/validation/test splits.

- Same examples + same seed -> the same split, on any machine (no hash() of strings, whose
  value changes per process; only ``random.Random(seed)`` over a sorted order).
- ``stratify``: each label keeps its share in every split (PubMedQA yes/no/maybe).
- ``group``: examples sharing a key (speech: the sentence behind several voices) stay in
  one split, so no test sentence is ever heard in training.
- ``cover_terms``: a held-out group is only chosen if each of its terms still occurs in
  some training group, so term recall on test measures learnt vocabulary, not luck.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

from engine.data.schema import get_path
from engine.errors import DataError

SPLITS = ("train", "validation", "test")
DEFAULT_SEED = 1234
DEFAULT_RATIOS = (0.8, 0.1, 0.1)


RATIOS_HINT = "Three numbers from 0 to 1 for train, validation and test that sum to 1, e.g. 0.8,0.1,0.1."


def parse_ratios(text: str) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' (the Data tab's box, ``medtune data split --ratios``) as checked ratios."""
    try:
        values = tuple(float(x) for x in str(text).split(","))
    except ValueError:
        raise DataError(f"'{str(text)[:80]}' is not three numbers like 0.8,0.1,0.1", field="ratios",
                        hint=RATIOS_HINT) from None
    return check_ratios(values)


def check_ratios(ratios: tuple[float, ...]) -> tuple[float, float, float]:
    """The ratios as floats; DataError (field 'ratios') unless three finite numbers >= 0 summing to 1.
    NaN needs its own test: every comparison with it is False, so it passed the range checks
    and crashed later when the counts were rounded."""
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        raise DataError(f"split ratios {ratios!r:.80} are not numbers", field="ratios", hint=RATIOS_HINT) from None
    shown = ",".join(f"{r:g}" for r in values[:10]) + (",..." if len(values) > 10 else "")
    if len(values) != 3:
        raise DataError(f"split ratios {shown}: expected 3 numbers (train, validation, test), got {len(values)}",
                        field="ratios", hint=RATIOS_HINT)
    for name, r in zip(SPLITS, values):
        if not math.isfinite(r) or r < 0:
            raise DataError(f"split ratios {shown}: the {name} ratio is {r:g}; each must be a finite number "
                            "from 0 to 1", field="ratios", hint=RATIOS_HINT)
    if abs(sum(values) - 1.0) > 1e-6:
        raise DataError(f"split ratios {shown} sum to {sum(values):g}; they must sum to 1", field="ratios",
                        hint=RATIOS_HINT)
    return values  # type: ignore[return-value]


def _counts(n: int, ratios: tuple[float, float, float], tie: int = 0) -> list[int]:
    """Units per split, by largest remainder; a held-out split with a positive ratio gets at
    least one unit once there are enough units to spare one for training. ``tie`` rotates
    which split wins equal remainders, so strata do not all favour the same split."""
    raw = [n * r for r in ratios]
    counts = [int(x) for x in raw]
    order = sorted(range(3), key=lambda i: (round(raw[i] - counts[i], 9), (i + tie) % 3), reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    for i in (1, 2):
        if ratios[i] > 0 and counts[i] == 0 and counts[0] > 1:
            counts[i] += 1
            counts[0] -= 1
    return counts


def term_pattern(term: str) -> re.Pattern:
    return re.compile(r"(?<![\w])" + re.escape(term.lower()) + r"(?![\w])")


def terms_in(text: str, patterns: dict[str, re.Pattern]) -> set[str]:
    low = text.lower()
    return {t for t, p in patterns.items() if p.search(low)}


def split_examples(examples: list[dict], *, ratios: tuple[float, float, float] = DEFAULT_RATIOS,
                   seed: int = DEFAULT_SEED, stratify: str | None = None, group: str | None = None,
                   cover_terms: list[str] | None = None) -> dict[str, list[dict]]:
    """Split ``examples`` into ``{"train", "validation", "test"}``.

    ``stratify`` and ``group`` are dotted keys into the example (``"meta.label"``,
    ``"meta.sentence_id"``). Within each split, examples keep their input order.
    """
    ratios = check_ratios(ratios)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        key = get_path(ex, group) if group else None
        groups[str(key if key is not None else f"#{ex.get('id', i)}#{i}")].append(i)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)

    assign: dict[str, int] = {}
    if cover_terms:
        patterns = {t: term_pattern(t) for t in cover_terms if t.strip()}
        text_of = lambda k: " ".join(examples[i].get("text") or examples[i].get("prompt", "")  # noqa: E731
                                     for i in groups[k])
        gterms = {k: terms_in(text_of(k), patterns) for k in keys}
        left = Counter(t for k in keys for t in gterms[k])  # groups still in training per term
        quota = _counts(len(keys), ratios)
        filled = [0, 0, 0]
        for k in keys:
            for s in (2, 1):
                if filled[s] < quota[s] and all(left[t] >= 2 for t in gterms[k]):
                    assign[k] = s
                    filled[s] += 1
                    for t in gterms[k]:
                        left[t] -= 1
                    break
            else:
                assign[k] = 0
    else:
        strata: dict[str, list[str]] = defaultdict(list)
        for k in keys:  # keys are already shuffled, so each stratum is too
            label = get_path(examples[groups[k][0]], stratify) if stratify else None
            strata[str(label)].append(k)
        for n_label, label in enumerate(sorted(strata)):
            ks = strata[label]
            c = _counts(len(ks), ratios, tie=n_label)
            for pos, k in enumerate(ks):
                assign[k] = 0 if pos < c[0] else (1 if pos < c[0] + c[1] else 2)

    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for i, ex in enumerate(examples):
        key = get_path(ex, group) if group else None
        k = str(key if key is not None else f"#{ex.get('id', i)}#{i}")
        out[SPLITS[assign[k]]].append(ex)
    return out


def split_summary(splits: dict[str, list[dict]], stratify: str | None = None) -> dict:
    """Counts per split (and per label per split when stratified), for reports."""
    summary: dict = {s: {"examples": len(v)} for s, v in splits.items()}
    if stratify:
        for s, v in splits.items():
            summary[s]["labels"] = dict(Counter(str(get_path(e, stratify)) for e in v))
    return summary


def relative_audio(example: dict, folder: Path) -> dict:
    """A copy whose audio path is relative to ``folder`` when it lies inside it."""
    if "audio" not in example:
        return example
    p = Path(example["audio"])
    try:
        rel = p.resolve().relative_to(folder.resolve())
    except ValueError:
        return example
    return {**example, "audio": rel.as_posix()}
