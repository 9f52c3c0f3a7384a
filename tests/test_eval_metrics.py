"""Metrics against values computed by hand on small fixed examples. (That ROUGE, BLEU and
WER are exactly the reference libraries' numbers is tests/test_eval_standard_metrics.py.)"""

from __future__ import annotations

import math

import pytest

from engine.eval.metrics import cer, speech_report, term_recall, utterance_terms, wer, word_diff
from engine.eval.text_metrics import (
    bleu,
    decision_scores,
    extract_decision,
    medical_terms,
    rouge_l,
    sections,
    structure_score,
    term_overlap,
    text_report,
)
from engine.text import int_to_words, normalize


@pytest.mark.parametrize("raw,expected", [
    ("Metoprolol 25mg, twice-daily.", "metoprolol twenty five mg twice daily"),
    ("BP 120/80; temp 38.5°C", "bp one hundred twenty over eighty temp thirty eight point five degrees c"),
    ("3rd dose at 100%", "third dose at one hundred percent"),
    ("Patient's 1,250 units", "patients one thousand two hundred fifty units"),
    ("  Hello,   WORLD! ", "hello world"),
    (None, ""),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_int_to_words():
    assert int_to_words(0) == "zero"
    assert int_to_words(19) == "nineteen"
    assert int_to_words(40) == "forty"
    assert int_to_words(1_000_001) == "one million one"
    assert int_to_words(2_345) == "two thousand three hundred forty five"


def test_wer_cer_by_hand():
    # ref 6 words; hyp: sat->sit (S), "the" deleted (D) -> 2/6
    assert wer("the cat sat on the mat", "the cat sit on mat") == pytest.approx(2 / 6)
    # normalisation makes these identical, under Whisper's normaliser (the default: both "25")
    # and ours (both "twenty five")
    assert wer("Give 25 mg.", "give twenty-five MG") == 0.0
    assert wer("Give 25 mg.", "give twenty-five MG", normaliser="medtune") == 0.0
    # corpus WER is micro-averaged: (1 + 0) errors / (2 + 4) words, not mean(1/2, 0)
    assert wer(["a b", "c d e f"], ["a x", "c d e f"]) == pytest.approx(1 / 6)
    # an insertion counts: 1 error / 2 words
    assert wer("a b", "a b c") == pytest.approx(0.5)
    # CER: "abc" vs "abd" = 1 substitution / 3 chars; spaces count as characters
    assert cer("abc", "abd") == pytest.approx(1 / 3)
    assert cer("ab cd", "abcd") == pytest.approx(1 / 5)
    with pytest.raises(ValueError):
        wer(["a"], ["a", "b"])


TERMS = ["metoprolol", "atrial fibrillation", "levetiracetam", "warfarin"]


def test_term_recall_by_hand():
    refs = ["Start metoprolol 25 mg for atrial fibrillation.", "Continue levetiracetam.", "Rest and fluids."]
    hyps = ["start medaprada 25 mg for atrial fibrillation", "continue levetiracetam", "rest and fluids"]
    recall, hits, misses = term_recall(refs, hyps, TERMS)
    assert recall == pytest.approx(2 / 3)
    assert sorted(hits) == ["atrial fibrillation", "levetiracetam"]
    assert misses == ["metoprolol"]
    # a term twice in the reference but once in the hypothesis: one hit, one miss
    assert utterance_terms("warfarin then warfarin", "warfarin then war farin", TERMS) == (["warfarin"], ["warfarin"])
    # no terms in the references: recall is undefined, not 0 or 1
    assert term_recall(["hello"], ["hello"], TERMS) == (None, [], [])
    # a term must match whole words: "fibrillation" alone does not hit "atrial fibrillation"
    assert utterance_terms("atrial fibrillation", "fibrillation", TERMS) == ([], ["atrial fibrillation"])


def test_word_diff_ops():
    ops = word_diff("the cat sat on the mat", "the cat sit on mat")
    assert [o["op"] for o in ops].count("equal") == 4
    assert {"op": "sub", "ref": "sat", "hyp": "sit"} in ops
    assert sum(o["op"] in ("sub", "del", "ins") for o in ops) == 2   # same as WER's S+D+I
    assert [o["op"] for o in word_diff("a b", "a b c")] == ["equal", "equal", "ins"]
    assert [o["op"] for o in word_diff("a b c", "a c")] == ["equal", "del", "equal"]


def test_speech_report_groups_and_most_missed():
    refs = ["take metoprolol", "take metoprolol", "take warfarin"]
    hyps = ["take metoprolol", "take meta", "take war"]
    rep = speech_report(refs, hyps, TERMS, groups=["en-us", "en-gb", "en-gb"])
    assert rep["wer"] == pytest.approx(2 / 6)
    assert rep["term_recall"] == pytest.approx(1 / 3)
    assert rep["most_missed"][0] == {"term": "metoprolol", "count": 1} or rep["most_missed"][0]["count"] == 1
    assert {m["term"] for m in rep["most_missed"]} == {"metoprolol", "warfarin"}
    assert rep["by_group"]["en-us"] == {"n": 1, "wer": 0.0, "term_recall": 1.0}
    assert rep["by_group"]["en-gb"]["wer"] == pytest.approx(2 / 4)
    assert rep["by_group"]["en-gb"]["term_recall"] == 0.0


def test_rouge_l_by_hand():
    # LCS("the cat sat on the mat", "the cat on mat") = 4; P = 4/4, R = 4/6; F = 2PR/(P+R) = 0.8
    assert rouge_l("the cat sat on the mat", "the cat on mat") == pytest.approx(0.8)
    assert rouge_l("a b", "c d") == 0.0
    assert rouge_l("a b", "") == 0.0


def test_bleu_by_hand():
    # sacrebleu's corpus BLEU, on its 0-100 scale
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    # hyp "the cat sat on mat" (5 words) vs ref (6): p1 = 5/5, p2 = 3/4 (the cat, cat sat, sat on),
    # p3 = 2/3, p4 = 1/2; BP = exp(1 - 6/5)
    expected = math.exp(1 - 6 / 5) * (1 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert bleu(["the cat sat on the mat"], ["the cat sat on mat"]) == pytest.approx(100 * expected)
    # no 4-gram match: sacrebleu's default smoothing ("exp") counts the k-th zero precision as
    # 1 / (2^k * n-grams), so p4 = 1/2 here instead of zeroing the corpus score
    smoothed = (3 / 4 * 2 / 3 * 1 / 2 * 1 / 2) ** 0.25
    assert bleu(["a b c d"], ["a b c x"]) == pytest.approx(100 * smoothed)


def test_structure_and_terms():
    ref = "Assessment: likely pneumonia.\nPlan: chest X-ray and antibiotics."
    assert sections(ref) == {"assessment", "plan"}
    assert sections("## Diagnosis\nfoo\n**Treatment**: bar") == {"assessment", "plan"}
    assert sections("The plan is to rest") == set()   # a word in a sentence is not a heading
    assert structure_score(ref, "Assessment: pneumonia.") == 0.5
    assert structure_score(ref, "Impression: x\nManagement - y") == 1.0
    assert structure_score("no sections here", "Plan: x") is None
    assert medical_terms("Start metoprolol for atrial fibrillation; nephritis") >= {
        "metoprolol", "atrial fibrillation", "nephritis"}
    # reference terms: pneumonia, x ray, antibiotics; the answer has two of three
    assert term_overlap(ref, "pneumonia, treat with antibiotics") == pytest.approx(2 / 3)
    assert term_overlap("metoprolol and warfarin", "warfarin", terms=TERMS) == 0.5
    assert term_overlap("no terms", "x", terms=TERMS) is None


def test_pubmedqa_extraction_and_scores():
    assert extract_decision("Yes. The trial showed") == "yes"
    assert extract_decision("**Maybe** - unclear") == "maybe"
    assert extract_decision("Based on the data, the answer is: no.") == "no"
    assert extract_decision("It reduced readmissions, so yes") == "yes"
    assert extract_decision("Unclear evidence") is None
    # labels yes,no,maybe,yes ; preds yes,no,no,None
    # yes: tp1 fp0 fn1 -> 2/3 ; no: tp1 fp1 fn0 -> 2/3 ; maybe: tp0 -> 0 ; macro = 4/9
    d = decision_scores(["yes", "no", "maybe", "yes"], ["yes", "no", "no", None])
    assert d["accuracy"] == 0.5
    assert d["macro_f1"] == pytest.approx(4 / 9)
    assert d["unparsed"] == 1
    rep = text_report(["Yes, it does."] * 2, ["Yes.", "No."], labels=["yes", "yes"])
    assert rep["accuracy"] == 0.5 and rep["length"] == 1.0
