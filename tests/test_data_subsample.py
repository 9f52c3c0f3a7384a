"""Training-set subsampling: evenly spaced without a term list, term-balanced with one."""

from __future__ import annotations

from collections import Counter

from engine.data.subsample import evenly_spaced, subsample

VOICES = ("v1", "v2", "v3", "v4")


def _rows():
    """40 sentences x 4 voices, ordered by sentence then voice (as shipped sets are). Every
    sentence holds the common term; sentences 0 and 1 also hold a rare one each."""
    rows = []
    for s in range(40):
        text = f"Sentence {s}: check heart failure"
        text += {0: " and start apixaban.", 1: " before thoracentesis."}.get(s, ".")
        for v in VOICES:
            rows.append({"id": f"s{s}-{v}", "text": text, "meta": {"sentence_id": f"s{s}", "voice": v}})
    return rows


def _term_clips(rows, term):
    return sum(1 for r in rows if term in r["text"])


def test_no_limit_or_no_terms():
    rows = _rows()
    assert subsample(rows, 0, ["apixaban"]) is rows
    assert subsample(rows, 500, ["apixaban"]) is rows
    picked = subsample(rows, 40)
    assert picked == evenly_spaced(rows, 40) == rows[::4]


def test_term_balanced_covers_rare_terms_sentences_and_voices():
    rows = _rows()
    terms = ["heart failure", "apixaban", "thoracentesis"]
    picked = subsample(rows, 60, terms)
    assert len(picked) == 60
    assert [r["id"] for r in picked] == [r["id"] for r in rows if r in picked]  # file order kept
    # every rare-term clip is taken (4 voices each); evenly spaced would take 1 or 2
    assert _term_clips(picked, "apixaban") == 4 and _term_clips(picked, "thoracentesis") == 4
    assert _term_clips(evenly_spaced(rows, 60), "apixaban") <= 2
    assert len({r["meta"]["sentence_id"] for r in picked}) == 40  # no sentence left out
    counts = Counter(r["meta"]["voice"] for r in picked)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert subsample(rows, 60, terms) == picked  # deterministic
