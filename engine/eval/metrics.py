"""Speech metrics: WER, CER, medical-term recall, word diffs, per-voice breakdowns.

WER and CER are jiwer's, computed after a named normaliser of :mod:`engine.text`: by
default Whisper's English normaliser (``normaliser="whisper"``), as published English WER
is (the Open ASR Leaderboard, the Whisper and Canary papers), so "Metoprolol 25 mg." and
"metoprolol twenty five mg" score as identical and the number can sit next to theirs;
``normaliser="medtune"`` is the project's own. Corpus figures are micro-averaged (total
errors / total reference words), the way WER is conventionally reported (and what
``jiwer.wer`` over the list gives), not a mean of per-utterance WERs. The word diff uses the
WER's normaliser, so its operations are the errors the WER counts.

Medical-term matching (term recall, most-missed terms) always uses the medtune normaliser
(:func:`engine.text.normalize`): a term is found as the dataset's term list writes it.

Stable API (the training loop imports it too)::

    wer(refs, hyps) -> float          cer(refs, hyps) -> float
    term_recall(refs, hyps, terms) -> (recall | None, hits, misses)
    utterance_terms(ref, hyp, terms) -> (hit_terms, missed_terms)
    word_diff(ref, hyp) -> [{"op", "ref", "hyp"}, ...]
    speech_report(refs, hyps, terms, groups=None) -> dict
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable, Sequence

import jiwer
import jiwer.transforms as tr
import rapidfuzz.distance.Levenshtein as lev

from engine.text import count_phrase, normalize, prepare_terms
from engine.text import normaliser as named_normaliser  # `normaliser` is the keyword argument naming one

__all__ = ["WER_NORMALISER", "wer", "cer", "error_counts", "term_recall", "utterance_terms",
           "word_diff", "most_missed", "speech_report"]

#: The normaliser WER, CER and the word diff use unless told otherwise (engine.text.NORMALISERS).
WER_NORMALISER = "whisper"


def _as_list(x: str | Sequence[str]) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


def _pairs(refs, hyps, name: str) -> tuple[list[str], list[str]]:
    refs, hyps = _as_list(refs), _as_list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    norm = named_normaliser(name)
    return [norm(r) for r in refs], [norm(h or "") for h in hyps]


def error_counts(refs: str | Sequence[str], hyps: str | Sequence[str], *, unit: str = "word",
                 normaliser: str = WER_NORMALISER) -> dict:
    """Hits, substitutions, deletions, insertions and the reference length, summed over
    all pairs, on text normalised by ``normaliser``. ``unit`` is "word" or "char"
    (characters include the single spaces between words)."""
    r, h = _pairs(refs, hyps, normaliser)
    reduce = tr.ReduceToListOfListOfWords() if unit == "word" else tr.ReduceToListOfListOfChars()
    if not r:
        return {"hits": 0, "substitutions": 0, "deletions": 0, "insertions": 0, "ref_len": 0}
    out = jiwer.process_words(r, h, reference_transform=reduce, hypothesis_transform=reduce)
    return {"hits": out.hits, "substitutions": out.substitutions, "deletions": out.deletions,
            "insertions": out.insertions,
            "ref_len": out.hits + out.substitutions + out.deletions}


def _rate(c: dict) -> float:
    errors = c["substitutions"] + c["deletions"] + c["insertions"]
    if c["ref_len"] == 0:  # empty reference: 0 if the hypothesis is empty too, else 1 per word
        return float(errors)
    return errors / c["ref_len"]


def wer(refs: str | Sequence[str], hyps: str | Sequence[str], *, normaliser: str = WER_NORMALISER) -> float:
    """Word error rate (S+D+I)/N over all pairs, after ``normaliser``."""
    return _rate(error_counts(refs, hyps, unit="word", normaliser=normaliser))


def cer(refs: str | Sequence[str], hyps: str | Sequence[str], *, normaliser: str = WER_NORMALISER) -> float:
    """Character error rate over all pairs, after ``normaliser`` (spaces count)."""
    return _rate(error_counts(refs, hyps, unit="char", normaliser=normaliser))


def utterance_terms(ref: str, hyp: str, terms: Iterable[str]) -> tuple[list[str], list[str]]:
    """The medical terms of ``ref`` that ``hyp`` got right and those it missed, one entry
    per occurrence. A term is a hit when its word sequence occurs in the hypothesis at
    least as many times as in the reference, all three medtune-normalised."""
    rw, hw = normalize(ref).split(), normalize(hyp or "").split()
    hits, misses = [], []
    for original, tw in prepare_terms(terms):
        n_ref = count_phrase(rw, tw)
        if n_ref:
            n_hit = min(n_ref, count_phrase(hw, tw))
            hits += [original] * n_hit
            misses += [original] * (n_ref - n_hit)
    return hits, misses


def term_recall(refs: str | Sequence[str], hyps: str | Sequence[str],
                terms: Iterable[str]) -> tuple[float | None, list[str], list[str]]:
    """Medical-term recall: term occurrences in the references that the hypotheses
    reproduce, divided by all term occurrences. Returns ``(recall, hits, misses)`` with one
    list entry per occurrence; recall is ``None`` when the references hold no term."""
    refs, hyps = _as_list(refs), _as_list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    prepared = list(terms)
    hits, misses = [], []
    for r, h in zip(refs, hyps):
        uh, um = utterance_terms(r, h, prepared)
        hits += uh
        misses += um
    total = len(hits) + len(misses)
    return (len(hits) / total if total else None), hits, misses


def most_missed(misses: Iterable[str], n: int = 10) -> list[tuple[str, int]]:
    """The ``n`` terms missed most often, as (term, count), most frequent first."""
    return Counter(misses).most_common(n)


def word_diff(ref: str, hyp: str, *, normaliser: str = WER_NORMALISER) -> list[dict]:
    """Word alignment of the texts after ``normaliser`` (the WER's), for display: a list of
    operations ``{"op": "equal"|"sub"|"ins"|"del", "ref": str, "hyp": str}`` in reading
    order, one per aligned word (``ref`` is "" for an insertion, ``hyp`` "" for a deletion)."""
    norm = named_normaliser(normaliser)
    rw, hw = norm(ref).split(), norm(hyp or "").split()
    vocab: dict[str, int] = {}
    ri = [vocab.setdefault(w, len(vocab)) for w in rw]
    hi = [vocab.setdefault(w, len(vocab)) for w in hw]
    ops = []
    for tag, i1, i2, j1, j2 in lev.opcodes(ri, hi):
        if tag == "equal":
            ops += [{"op": "equal", "ref": rw[i], "hyp": hw[j]} for i, j in zip(range(i1, i2), range(j1, j2))]
        elif tag == "replace":
            ops += [{"op": "sub", "ref": rw[i], "hyp": hw[j]} for i, j in zip(range(i1, i2), range(j1, j2))]
        elif tag == "delete":
            ops += [{"op": "del", "ref": rw[i], "hyp": ""} for i in range(i1, i2)]
        elif tag == "insert":
            ops += [{"op": "ins", "ref": "", "hyp": hw[j]} for j in range(j1, j2)]
    return ops


def speech_report(refs: Sequence[str], hyps: Sequence[str], terms: Iterable[str] = (),
                  groups: Sequence[str] | None = None, top_missed: int = 10,
                  normaliser: str = WER_NORMALISER) -> dict:
    """All speech figures for one system: WER, CER (both after ``normaliser``), term recall,
    the most-missed terms and, when ``groups`` (e.g. the voice of each utterance) is given,
    WER/term recall per group."""
    terms = list(terms)
    refs, hyps = list(refs), [h or "" for h in hyps]
    recall, hits, misses = term_recall(refs, hyps, terms)
    c = error_counts(refs, hyps, normaliser=normaliser)
    out = {
        "n": len(refs),
        "wer": _rate(c) if refs else None,
        "cer": cer(refs, hyps, normaliser=normaliser) if refs else None,
        "term_recall": recall,
        "term_hits": len(hits),
        "term_total": len(hits) + len(misses),
        "most_missed": [{"term": t, "count": k} for t, k in most_missed(misses, top_missed)],
        "errors": c,
    }
    if groups is not None:
        by: dict[str, list[int]] = defaultdict(list)
        for i, g in enumerate(groups):
            by[str(g)].append(i)
        out["by_group"] = {
            g: {"n": len(ix),
                "wer": wer([refs[i] for i in ix], [hyps[i] for i in ix], normaliser=normaliser),
                "term_recall": term_recall([refs[i] for i in ix], [hyps[i] for i in ix], terms)[0]}
            for g, ix in sorted(by.items())
        }
    return out
