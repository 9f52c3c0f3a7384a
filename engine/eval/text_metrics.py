"""Text-answer metrics, implemented here (small, dependency-free, hand-checkable).

Tokens are the words of :func:`engine.text.normalize` (lower case, no
punctuation, numbers spelled out) for every metric below.

- ROUGE-L: F1 of the longest common subsequence of tokens (precision LCS/|hyp|, recall
  LCS/|ref|), per answer, averaged over answers.
- BLEU: corpus BLEU-4 (Papineni et al. 2002): clipped n-gram precisions summed over the
  corpus, geometric mean with uniform weights, brevity penalty exp(1 - R/C) when C < R.
  Per-answer BLEU (for sorting samples) uses add-one smoothing on n >= 2 (Lin & Och 2004)
  so one missing 4-gram does not zero a sentence. Reported on a 0-1 scale.
- Structure adherence: the section groups (assessment/diagnosis/impression, plan/
  treatment/management/recommendation) that the reference uses as headings, and the
  fraction of them the answer also has as headings. ``None`` when the reference has none.
- Term overlap: medical terms (the dataset's term list, else a built-in lexicon plus drug
  and disease suffixes) in the reference that the answer also mentions.
- PubMedQA: the first yes/no/maybe decision in the answer; accuracy and macro-F1 over the
  classes seen in the labels or predictions (an unparsed answer is simply wrong).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Iterable, Sequence

from engine.text import normalize, words

# ---------------------------------------------------------------------------- ROUGE-L / BLEU


def _lcs(a: list[str], b: list[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(ref: str, hyp: str) -> float:
    """ROUGE-L F1 between one reference and one answer (0..1)."""
    r, h = words(ref), words(hyp)
    lcs = _lcs(r, h)
    if lcs == 0:
        return 0.0
    p, rc = lcs / len(h), lcs / len(r)
    return 2 * p * rc / (p + rc)


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _bleu_stats(ref: list[str], hyp: list[str], max_n: int) -> tuple[list[int], list[int]]:
    matches, totals = [], []
    for n in range(1, max_n + 1):
        h, r = _ngrams(hyp, n), _ngrams(ref, n)
        matches.append(sum(min(c, r[g]) for g, c in h.items()))
        totals.append(max(0, len(hyp) - n + 1))
    return matches, totals


def _combine(matches, totals, hyp_len, ref_len, smooth: bool) -> float:
    if hyp_len == 0:
        return 0.0
    logs = []
    for n, (m, t) in enumerate(zip(matches, totals), start=1):
        if smooth and n > 1:
            m, t = m + 1, t + 1
        if m == 0 or t == 0:
            return 0.0
        logs.append(math.log(m / t))
    bp = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(sum(logs) / len(logs))


def bleu(refs: Sequence[str], hyps: Sequence[str], max_n: int = 4) -> float:
    """Corpus BLEU (0..1) of answers against one reference each."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    M, T, hl, rl = [0] * max_n, [0] * max_n, 0, 0
    for r, h in zip(refs, hyps):
        rw, hw = words(r), words(h)
        m, t = _bleu_stats(rw, hw, max_n)
        M = [a + b for a, b in zip(M, m)]
        T = [a + b for a, b in zip(T, t)]
        hl, rl = hl + len(hw), rl + len(rw)
    return _combine(M, T, hl, rl, smooth=False)


def sentence_bleu(ref: str, hyp: str, max_n: int = 4) -> float:
    """Smoothed BLEU (0..1) of one answer, for ranking samples."""
    rw, hw = words(ref), words(hyp)
    m, t = _bleu_stats(rw, hw, max_n)
    return _combine(m, t, len(hw), len(rw), smooth=True)


# ---------------------------------------------------------------------------- structure

#: Section groups: any one heading of a group satisfies it.
SECTION_GROUPS: dict[str, tuple[str, ...]] = {
    "assessment": ("assessment", "diagnosis", "impression", "differential diagnosis"),
    "plan": ("plan", "treatment", "management", "recommendation", "recommendations", "next steps"),
}


def sections(text: str | None, groups: dict[str, tuple[str, ...]] = SECTION_GROUPS) -> set[str]:
    """The section groups that ``text`` uses as headings: a heading word at the start of a
    line (after optional markdown ``#``, ``*``, ``-``) followed by ``:`` or the line end."""
    found = set()
    for line in (text or "").splitlines():
        head = re.sub(r"^[\s#*\-_>]+", "", line).lower()
        for g, names in groups.items():
            for name in names:
                if head.startswith(name):
                    rest = head[len(name):].lstrip(" *_")
                    if rest == "" or rest[0] in ":-\u2014":
                        found.add(g)
    return found


def structure_score(ref: str, hyp: str) -> float | None:
    """Fraction of the reference's section groups present in the answer; None if the
    reference has no sections."""
    want = sections(ref)
    if not want:
        return None
    return len(want & sections(hyp)) / len(want)


# ---------------------------------------------------------------------------- medical terms

#: A compact lexicon for text sets without a term list; suffixes catch most drug and
#: disease names the list does not hold.
LEXICON: tuple[str, ...] = tuple(t.strip() for t in """
anemia, angina, antibiotic, antibiotics, anticoagulation, arrhythmia, asthma, atrial fibrillation,
biopsy, blood pressure, bronchitis, cancer, cardiac, catheter, chemotherapy, cholesterol, copd,
creatinine, ct, culture, dehydration, dementia, depression, diabetes, dialysis, diuretic, dyspnea,
ecg, echocardiogram, edema, embolism, endoscopy, epilepsy, fever, fracture, glucose, hemoglobin,
heart failure, hypertension, hypotension, hypoglycemia, hyperglycemia, infection, inflammation,
insulin, ischemia, kidney, liver, lung, migraine, mri, myocardial infarction, nausea, oxygen,
pain, pneumonia, potassium, pregnancy, pulmonary embolism, renal, sepsis, seizure, sodium,
steroid, stroke, surgery, syncope, tachycardia, thrombosis, troponin, ultrasound,
urinary tract infection, vaccine, vomiting, x ray, aspirin, metformin, warfarin, heparin
""".replace("\n", " ").split(",") if t.strip())
_SUFFIXES = re.compile(
    r"\b\w+(?:itis|emia|aemia|osis|ectomy|otomy|oscopy|algia|pathy|plasty|olol|pril|sartan|statin|"
    r"mab|nib|azole|cillin|mycin|cycline|floxacin|prazole|parin|xaban|gliptin|gliflozin|tide|"
    r"triptan|dipine|zepam|azepam|oxetine|afil|vir)\b")


def medical_terms(text: str | None, terms: Iterable[str] | None = None) -> set[str]:
    """Normalised medical terms mentioned in ``text``: from ``terms`` when given (the
    dataset's list), else the built-in lexicon plus suffix matches."""
    norm = f" {normalize(text)} "
    found = set()
    vocab = [normalize(t) for t in (terms or LEXICON)]
    for t in vocab:
        if t and f" {t} " in norm:
            found.add(t)
    if not terms:
        found |= set(_SUFFIXES.findall(norm))
    return found


def term_overlap(ref: str, hyp: str, terms: Iterable[str] | None = None) -> float | None:
    """Share of the reference's medical terms that the answer also mentions; None when the
    reference mentions none."""
    terms = list(terms) if terms else None
    want = medical_terms(ref, terms)
    if not want:
        return None
    return len(want & medical_terms(hyp, terms)) / len(want)


# ---------------------------------------------------------------------------- PubMedQA

LABELS = ("yes", "no", "maybe")
_ANSWER_IS = re.compile(r"\b(?:answer|decision|conclusion|verdict)\s*(?:is|:|=)?\s*\**\s*(yes|no|maybe)\b", re.I)
_FIRST = re.compile(r"\b(yes|no|maybe)\b", re.I)


def extract_decision(text: str | None) -> str | None:
    """yes / no / maybe from an answer: the word it starts with, else an explicit
    "answer: X", else the first of the three words anywhere; None when there is none."""
    t = (text or "").strip()
    m = re.match(r"^[\W_]*(yes|no|maybe)\b", t, re.I) or _ANSWER_IS.search(t) or _FIRST.search(t)
    return m.group(1).lower() if m else None


def decision_scores(labels: Sequence[str], preds: Sequence[str | None]) -> dict:
    """Accuracy, macro-F1 and per-class F1 of yes/no/maybe predictions (unparsed = wrong)."""
    if len(labels) != len(preds):
        raise ValueError(f"{len(labels)} labels but {len(preds)} predictions")
    labels = [str(x).strip().lower() for x in labels]
    n = len(labels)
    classes = [c for c in LABELS if c in labels or c in preds]
    per = {}
    for c in classes:
        tp = sum(1 for y, p in zip(labels, preds) if y == c and p == c)
        fp = sum(1 for y, p in zip(labels, preds) if y != c and p == c)
        fn = sum(1 for y, p in zip(labels, preds) if y == c and p != c)
        per[c] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {
        "accuracy": sum(y == p for y, p in zip(labels, preds)) / n if n else None,
        "macro_f1": sum(per.values()) / len(per) if per else None,
        "f1": per,
        "unparsed": sum(p is None for p in preds),
    }


# ---------------------------------------------------------------------------- per item / corpus


def text_item_metrics(ref: str, hyp: str, terms: Iterable[str] | None = None,
                      label: str | None = None) -> dict:
    """Per-answer figures stored in predictions.jsonl."""
    out = {"rouge_l": rouge_l(ref, hyp), "bleu": sentence_bleu(ref, hyp),
           "structure": structure_score(ref, hyp), "term_overlap": term_overlap(ref, hyp, terms),
           "length": len(words(hyp))}
    if label is not None:
        d = extract_decision(hyp)
        out.update(decision=d, correct=d == str(label).strip().lower())
    return out


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def text_report(refs: Sequence[str], hyps: Sequence[str], terms: Iterable[str] | None = None,
                labels: Sequence[str | None] | None = None) -> dict:
    """Corpus figures for one system's answers."""
    terms = list(terms) if terms else None
    hyps = [h or "" for h in hyps]
    items = [text_item_metrics(r, h, terms) for r, h in zip(refs, hyps)]
    out = {"n": len(refs), "rouge_l": _mean(i["rouge_l"] for i in items),
           "bleu": bleu(refs, hyps) if refs else None,
           "structure": _mean(i["structure"] for i in items),
           "term_overlap": _mean(i["term_overlap"] for i in items),
           "length": _mean(i["length"] for i in items)}
    if labels is not None and any(lab is not None for lab in labels):
        pairs = [(lab, extract_decision(h)) for lab, h in zip(labels, hyps) if lab is not None]
        d = decision_scores([p[0] for p in pairs], [p[1] for p in pairs])
        out.update(accuracy=d["accuracy"], macro_f1=d["macro_f1"], unparsed=d["unparsed"])
    return out
