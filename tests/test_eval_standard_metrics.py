"""Scores the field can compare (#23): the workbench's ROUGE, BLEU and WER are the reference
libraries' numbers, exactly, on fixed fixtures; every score's definition is recorded in
metrics.json and named wherever it is shown; runs scored under different definitions are
marked as not comparable.

The references are built here from the libraries themselves (rouge-score's RougeScorer,
sacrebleu's corpus BLEU, jiwer after transformers' Whisper EnglishTextNormalizer with
OpenAI's english.json), not through the workbench's code."""

from __future__ import annotations

import json
from importlib import metadata, resources

import jiwer
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU
from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

from engine.errors import DataError
from engine.eval.definitions import definitions, describe, differences
from engine.eval.job import _speech_item, _text_item, summarize
from engine.eval.metrics import cer, speech_report, wer, word_diff
from engine.eval.report import render_markdown
from engine.eval.text_metrics import bleu, rouge, text_report
from engine.export.card import _eval_table
from engine.text import normalize, whisper_normalize

# Answers against references: punctuation, case, inflections the stemmer folds ("running" /
# "ran"), numbers, an empty answer, and one with nothing in common.
REFS = [
    "Assessment: community-acquired pneumonia.\nPlan: start amoxicillin 500 mg three times daily.",
    "The patient was running a fever of 38.5°C and complained of worsening cough.",
    "Metformin is contraindicated in severe renal impairment (eGFR < 30).",
    "Yes. Beta-blockers reduced mortality after myocardial infarction in the trial.",
    "Refer to cardiology for an echocardiogram.",
    "Continue warfarin; check the INR in one week.",
]
HYPS = [
    "Assessment: pneumonia (community acquired). Plan: amoxicillin 500mg TDS.",
    "patient runs fevers of 38.5 C, complains of a worse cough",
    "Metformin should not be used when eGFR is below 30 (severe renal impairment).",
    "Yes - in the trial, beta blockers reduced mortality after a heart attack.",
    "",
    "Stop all medication and rest.",
]


@pytest.mark.parametrize("stemmer", [True, False])
def test_rouge_is_rouge_score(stemmer):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=stemmer)
    expected = [scorer.score(r, h) for r, h in zip(REFS, HYPS)]
    for r, h, e in zip(REFS, HYPS, expected):
        assert rouge(r, h, stemmer=stemmer) == {"rouge1": e["rouge1"].fmeasure, "rouge2": e["rouge2"].fmeasure,
                                                "rouge_l": e["rougeL"].fmeasure}
    # the corpus figure is the mean of the per-answer F1 (recorded as the aggregation)
    rep = text_report(REFS, HYPS, rouge_stemmer=stemmer)
    for ours, theirs in (("rouge1", "rouge1"), ("rouge2", "rouge2"), ("rouge_l", "rougeL")):
        assert rep[ours] == sum(e[theirs].fmeasure for e in expected) / len(expected)
    assert definitions("text", rouge_stemmer=stemmer)["rouge_l"]["use_stemmer"] is stemmer
    # the stemmer changes the number ("running" / "runs"): the option is not cosmetic
    assert rouge(REFS[1], HYPS[1], stemmer=True)["rouge1"] > rouge(REFS[1], HYPS[1], stemmer=False)["rouge1"]


def test_bleu_is_sacrebleu_with_its_signature():
    expected = sacrebleu.corpus_bleu(HYPS, [REFS])
    assert bleu(REFS, HYPS) == expected.score
    assert text_report(REFS, HYPS)["bleu"] == expected.score
    scorer = BLEU()
    scorer.corpus_score(HYPS, [REFS])
    signature = scorer.get_signature().format()
    assert signature == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    defs = definitions("text")
    assert defs["bleu"]["signature"] == signature
    assert (defs["bleu"]["library"], defs["bleu"]["version"], defs["bleu"]["scale"]) == (
        "sacrebleu", sacrebleu.__version__, "0-100")


def _whisper_reference_normaliser() -> EnglishTextNormalizer:
    table = resources.files("whisper_normalizer").joinpath("normalizers", "english.json")
    return EnglishTextNormalizer(json.loads(table.read_text(encoding="utf-8")))


def test_whisper_normaliser_behaves_as_published():
    for raw, published in [
        ("The colour of the haemoglobin.", "the color of the hemoglobin"),   # British -> American
        ("Give twenty five mg.", "give 25 mg"),                             # numbers as digits
        ("one hundred and twenty", "120"),
        ("Mr. Smith won't come; he's ill.", "mister smith will not come he is ill"),  # titles, contractions
        ("Uh, the dose, hmm, is fine", "the dose is fine"),                 # fillers dropped
        ("", ""),
    ]:
        assert whisper_normalize(raw) == published, raw
    assert whisper_normalize(None) == ""


# Pairs with numbers, contractions and British spellings: (reference, transcript).
WER_PAIRS = [
    ("Give twenty five mg of metoprolol twice daily.", "give 25 mg of metoprolol twice daily"),
    ("He won't tolerate the colour contrast.", "he will not tolerate the color contrast"),
    ("Increase to one hundred and twenty milligrams.", "increase to 120 milligrams"),
    ("The patient's haemoglobin was 9.5 today.", "the patients hemoglobin was nine point five today"),
    ("BP 120/80, pulse 72.", "bp 120 over 80 pulse seventy two"),
    ("Mr. Jones can't walk far.", "mister jones cannot walk far"),
]


def test_wer_is_jiwer_after_whisper_normaliser_and_differs_from_ours():
    norm = _whisper_reference_normaliser()
    refs, hyps = [r for r, _ in WER_PAIRS], [h for _, h in WER_PAIRS]
    whisper_refs, whisper_hyps = [norm(r) for r in refs], [norm(h) for h in hyps]
    # the default is Whisper's normaliser; the numbers are jiwer's, exactly
    assert wer(refs, hyps) == jiwer.wer(whisper_refs, whisper_hyps)
    assert cer(refs, hyps) == jiwer.cer(whisper_refs, whisper_hyps)
    assert speech_report(refs, hyps)["wer"] == jiwer.wer(whisper_refs, whisper_hyps)
    for (r, h), nr, nh in zip(WER_PAIRS, whisper_refs, whisper_hyps):
        assert wer(r, h) == jiwer.wer(nr, nh), r
    # ours stays available by name, and is jiwer after engine.text.normalize
    medtune = wer(refs, hyps, normaliser="medtune")
    assert medtune == jiwer.wer([normalize(r) for r in refs], [normalize(h) for h in hyps])

    rows = [(r, wer(r, h, normaliser="medtune"), wer(r, h)) for r, h in WER_PAIRS]
    # the table side by side (pytest -s shows it; a failure shows it anyway)
    print(f"\n{'reference':<50} {'medtune':>8} {'whisper':>8}")
    for r, old, new in rows + [("(corpus)", medtune, wer(refs, hyps))]:
        print(f"{r:<50} {old:>8.4f} {new:>8.4f}")
    # Side by side, counted by hand:
    # "he wont tolerate the colour contrast" vs "he will not ... color ...": wont->will, +not,
    # colour->color = 3/6 with ours; Whisper's expands "won't" and spells "colour" American: 0
    assert (rows[1][1], rows[1][2]) == (pytest.approx(3 / 6), 0.0)
    # "increase to one hundred and twenty milligrams" vs "120" -> ours "one hundred twenty": the
    # missing "and" is 1 error in 7 words; Whisper's writes both as "120": 0
    assert (rows[2][1], rows[2][2]) == (pytest.approx(1 / 7), 0.0)
    # the other way round: ours spells "120/80" as "one hundred twenty over eighty", as said (0);
    # Whisper's drops the slash ("bp 120 80 pulse 72"), so the spoken "over" is an insertion: 1/5
    assert (rows[4][1], rows[4][2]) == (0.0, pytest.approx(1 / 5))
    assert medtune != wer(refs, hyps)
    # the word diff shows the errors the WER counts, under the same normaliser
    ops = word_diff(*WER_PAIRS[4])
    assert sum(o["op"] != "equal" for o in ops) == 1 and {"op": "ins", "ref": "", "hyp": "over"} in ops


def test_term_recall_keeps_the_medtune_normaliser():
    refs, hyps = ["Start haemoglobin checks."], ["start hemoglobin checks"]
    rep = speech_report(refs, hyps, terms=["haemoglobin"])
    assert rep["wer"] == 0.0                 # Whisper's spelling table makes the words equal...
    assert rep["term_recall"] == 0.0         # ...but the listed term is matched as the list writes it
    defs = definitions("speech")
    assert defs["term_recall"]["normaliser"] == "medtune"
    assert defs["wer"]["normaliser"] == "whisper" and defs["wer"]["name"] == "WER, Whisper-normalised"
    assert definitions("speech", normaliser="medtune")["wer"]["name"] == "WER, medtune-normalised"
    with pytest.raises(DataError, match="(?s)unknown text normaliser 'nope'.*One of: whisper, medtune"):
        definitions("text", normaliser="nope")


def _speech_metrics(normaliser: str) -> dict:
    recs = [_speech_item({"id": f"c{i}", "text": r, "meta": {"voice": "v"}}, {"base": h, "tuned": r}, ["metoprolol"],
                         normaliser) for i, (r, h) in enumerate(WER_PAIRS)]
    return summarize(recs, ["metoprolol"], normaliser=normaliser)


def test_metrics_json_records_definitions():
    m = _speech_metrics("whisper")
    assert m["definitions"] == definitions("speech")
    assert {k: m["definitions"]["wer"][k] for k in ("library", "version", "normaliser")} == {
        "library": "jiwer", "version": metadata.version("jiwer"), "normaliser": "whisper"}
    assert m["base"]["wer"] == wer([r for r, _ in WER_PAIRS], [h for _, h in WER_PAIRS])
    med = _speech_metrics("medtune")
    assert med["definitions"]["wer"]["normaliser"] == "medtune" and med["base"]["wer"] != m["base"]["wer"]
    text = summarize([_text_item({"id": f"q{i}", "prompt": "q", "response": r, "meta": {}}, {"base": h, "tuned": r},
                                 None, True) for i, (r, h) in enumerate(zip(REFS, HYPS))])
    assert text["definitions"] == definitions("text")
    assert (text["definitions"]["rouge_l"]["library"], text["definitions"]["rouge_l"]["version"]) == (
        "rouge-score", metadata.version("rouge-score"))
    assert text["base"]["bleu"] == sacrebleu.corpus_bleu(HYPS, [REFS]).score
    # every score written has a definition
    assert {k for k, v in text["base"].items() if isinstance(v, (int, float))} - {"n"} <= set(text["definitions"])
    assert {"wer", "cer", "term_recall"} <= set(m["definitions"])


def test_report_and_card_name_the_definitions(tmp_path):
    m = _speech_metrics("whisper")
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    md = render_markdown(tmp_path)
    assert "| WER, Whisper-normalised |" in md and "| CER, Whisper-normalised |" in md
    assert "Whisper's English text normaliser: transformers" in md and "- Term recall: medtune-workbench" in md
    text = summarize([_text_item({"id": "q", "prompt": "q", "response": REFS[0], "meta": {}},
                                 {"base": HYPS[0], "tuned": REFS[0]}, None, True)])
    card = _eval_table(text)
    signature = definitions("text")["bleu"]["signature"]
    assert f"| BLEU ({signature}) |" in card and "| ROUGE-L F1 |" in card
    assert "ROUGE-L F1: rouge-score" in card and "Porter stemmer" in card
    # an evaluation from before definitions were recorded says so rather than borrowing today's
    old = {"base": {"wer": 0.2}, "tuned": {"wer": 0.1}}
    assert "| WER |" in _eval_table(old) and "not recorded" in _eval_table(old)
    assert describe(None, ["wer"])[0].startswith("Metric definitions: not recorded")


def test_evaluate_tab_marks_runs_scored_under_other_definitions():
    from ui.eval_views import speech_side
    from ui.tabs.evaluate import NOT_COMPARABLE, compare_table

    whisper, medtune = _speech_metrics("whisper"), _speech_metrics("medtune")
    old = {k: v for k, v in whisper.items() if k != "definitions"}   # a metrics.json from before #23

    rows, warning = compare_table({"a": whisper, "b": _speech_metrics("whisper")})
    assert warning is None and not any(str(r[1]).startswith(NOT_COMPARABLE) for r in rows)
    assert [r[1] for r in rows if r[0] == "a"][:2] == ["WER, Whisper-normalised", "CER, Whisper-normalised"]

    rows, warning = compare_table({"a": whisper, "b": medtune})
    assert "WER differs" in warning and "a: WER, Whisper-normalised" in warning and "b: WER, medtune-normalised" in warning
    marked = {(r[0], r[1]) for r in rows if r[1].startswith(NOT_COMPARABLE)}
    assert marked == {(rid, NOT_COMPARABLE + f"{unit}, {n}-normalised") for rid, n in (("a", "Whisper"), ("b", "medtune"))
                      for unit in ("WER", "CER")}
    assert ("a", "Term recall") in {(r[0], r[1]) for r in rows}   # the same definition on both: not marked

    rows, warning = compare_table({"new": whisper, "old": old, "none": None})
    assert warning.startswith("Not comparable") and "old: metric definitions not recorded" in warning
    assert ("old", NOT_COMPARABLE + "WER") in {(r[0], r[1]) for r in rows}
    assert ["none", "(not evaluated yet)", None, None, None] in rows
    assert differences({"x": old, "y": old}) == (set(), [])          # two old ones are alike

    html = speech_side("Base", {"text": "give 25 mg", "wer": 0.5, "normaliser": "whisper", "hits": [], "misses": [],
                                "diff": word_diff("give twenty five mg", "give 25 mg")})
    assert "<b>WER 50.0%</b> (Whisper-normalised)" in html
