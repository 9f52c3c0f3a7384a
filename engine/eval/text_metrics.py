"""Text-answer metrics.

ROUGE and BLEU are the field's reference implementations, called as published, so a score
here can sit next to a paper's or a leaderboard's (each library reads the raw texts with its
own tokenizer; the medtune normaliser is not applied first):

- ROUGE-1, ROUGE-2, ROUGE-L: Google's ``rouge-score`` (``RougeScorer``), F1 of each answer
  against its reference, averaged over answers. Porter stemming is on by default
  (``use_stemmer=True``, the usual setting of published summarisation ROUGE);
  ``rouge_stemmer=False`` turns it off. Tokens: rouge-score's own tokenizer (lower case,
  everything but a-z0-9 removed).
- BLEU: ``sacrebleu``'s corpus BLEU with its defaults (13a tokenizer, case kept, exponential
  smoothing, one reference per answer), on sacrebleu's 0-100 scale as it prints it. Its
  signature (``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:...``) is recorded next
  to the score (engine/eval/definitions.py), so the number can be reproduced.

The rest are the workbench's own, on :func:`engine.text.normalize` words where they need
words (the medtune normaliser: lower case, no punctuation, numbers spelled out):

- Structure adherence: the section groups (assessment/diagnosis/impression, plan/
  treatment/management/recommendation) that the reference uses as headings, and the
  fraction of them the answer also has as headings. ``None`` when the reference has none.
- Term overlap: medical terms (the dataset's term list, else a built-in lexicon plus drug
  and disease suffixes) in the reference that the answer also mentions.
- Length: medtune-normalised words of the answer.
- PubMedQA: the first yes/no/maybe decision in the answer; accuracy and macro-F1 over the
  classes seen in the labels or predictions (an unparsed answer is simply wrong).
"""

from __future__ import annotations

import functools
import re
from typing import Any, Iterable, Sequence

from sacrebleu.metrics import BLEU

from engine.text import normalize, words

# ---------------------------------------------------------------------------- ROUGE / BLEU

#: ROUGE variants reported, as rouge-score names them -> our metric key.
ROUGE_KEYS = {"rouge1": "rouge1", "rouge2": "rouge2", "rougeL": "rouge_l"}
#: rouge-score's stemming option, on unless a caller turns it off.
ROUGE_STEMMER = True


@functools.cache
def _rouge_scorer(stemmer: bool) -> Any:
    from rouge_score import rouge_scorer  # noqa: PLC0415 - its nltk pulls scipy, sklearn, pandas (~3 s): never at the app's start-up
    return rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=stemmer)


def rouge(ref: str, hyp: str, *, stemmer: bool = ROUGE_STEMMER) -> dict[str, float]:
    """ROUGE-1/2/L F1 (0..1) of one answer against its reference, by rouge-score:
    ``{"rouge1": .., "rouge2": .., "rouge_l": ..}``."""
    scores = _rouge_scorer(stemmer).score(ref or "", hyp or "")
    return {key: scores[name].fmeasure for name, key in ROUGE_KEYS.items()}


def rouge_l(ref: str, hyp: str, *, stemmer: bool = ROUGE_STEMMER) -> float:
    """ROUGE-L F1 (0..1) of one answer against its reference, by rouge-score."""
    return rouge(ref, hyp, stemmer=stemmer)["rouge_l"]


def bleu(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """sacrebleu's corpus BLEU (0-100) of answers against one reference each."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    return BLEU().corpus_score([h or "" for h in hyps], [[r or "" for r in refs]]).score


@functools.cache
def bleu_signature() -> str:
    """The sacrebleu signature of :func:`bleu`'s scores."""
    scorer = BLEU()
    # sacrebleu fills the number of references in only once it has scored something; we
    # always give one reference per answer, so a one-pair corpus gives the same signature
    scorer.corpus_score(["a"], [["a"]])
    return scorer.get_signature().format()


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
                      label: str | None = None, *, rouge_stemmer: bool = ROUGE_STEMMER) -> dict:
    """Per-answer figures stored in predictions.jsonl (BLEU is a corpus score only: a
    sentence's BLEU is not what papers report, and nothing here ranks answers by it)."""
    out: dict[str, Any] = {**rouge(ref, hyp, stemmer=rouge_stemmer), "structure": structure_score(ref, hyp),
                           "term_overlap": term_overlap(ref, hyp, terms), "length": len(words(hyp))}
    if label is not None:
        d = extract_decision(hyp)
        out.update(decision=d, correct=d == str(label).strip().lower())
    return out


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def text_report(refs: Sequence[str], hyps: Sequence[str], terms: Iterable[str] | None = None,
                labels: Sequence[str | None] | None = None, *, rouge_stemmer: bool = ROUGE_STEMMER) -> dict:
    """Corpus figures for one system's answers (ROUGE: the mean of per-answer F1; BLEU: corpus)."""
    terms = list(terms) if terms else None
    hyps = [h or "" for h in hyps]
    items = [text_item_metrics(r, h, terms, rouge_stemmer=rouge_stemmer) for r, h in zip(refs, hyps)]
    out: dict[str, Any] = {"n": len(refs), **{k: _mean(i[k] for i in items) for k in ROUGE_KEYS.values()},
                           "bleu": bleu(refs, hyps) if refs else None,
                           "structure": _mean(i["structure"] for i in items),
                           "term_overlap": _mean(i["term_overlap"] for i in items),
                           "length": _mean(i["length"] for i in items)}
    if labels is not None and any(lab is not None for lab in labels):
        pairs = [(lab, extract_decision(h)) for lab, h in zip(labels, hyps) if lab is not None]
        d = decision_scores([p[0] for p in pairs], [p[1] for p in pairs])
        out.update(accuracy=d["accuracy"], macro_f1=d["macro_f1"], unparsed=d["unparsed"])
    return out
