"""PHI scrubber for free text: the HIPAA Safe Harbor identifiers that text can carry.

Categories: NAME, DATE, PHONE, FAX, EMAIL, MRN, SSN, ADDRESS, AGE (over 89), URL, IP.
Rule-based on purpose: every decision can be read and audited, it runs offline, and it
is measured against a synthetic gold set (:func:`evaluate_phi`). Structured identifiers
(phone, e-mail, SSN, MRN, dates) are caught by patterns with high recall; names are the
weak spot of any rule-based scrubber and the measured figures say so; a gazetteer of common given
names read in context (:mod:`engine.data.names`) finds untitled and lower-case ones. With the ``[deid]`` extra
a named-entity model (:mod:`engine.data.ner`) finds names beside the rules: ``detectors=("rules",
"ner")`` takes the union, and each span says which detector found it.

NOT a certified de-identification tool: review the preview before sharing data.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from engine.data import names, ner
from engine.data.readers import read_text_utf8, split_lines
from engine.data.schema import surrogate_issue
from engine.errors import DataError

#: The detectors a scrub can use: the rules below (patterns, plus the given-name gazetteer of
#: :mod:`engine.data.names`, whose spans say "names") and the NER model (names only).
DETECTORS = ("rules", "ner")
CATEGORIES = ("NAME", "DATE", "PHONE", "FAX", "EMAIL", "MRN", "SSN", "ADDRESS", "AGE", "URL", "IP")

_MONTHS = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?|Aug(?:ust)?|"
           r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_STREET = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|"
           r"Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq)")
_TITLES = r"(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Nurse|Sister)\.?"
_NAME_WORD = r"[A-Z][a-z]*(?:'[A-Z])?[a-z]+(?:-[A-Z][a-z]+)?"  # Smith, O'Brien, Lloyd-Jones
#: Words that introduce a person's name in clinical text.
_NAME_CUES = (r"(?:[Pp]atient|[Pp]t\.?|[Nn]ame|[Nn]amed|(?:[Gg]rand|[Ss]tep)?(?:[Ss]on|[Dd]aughter|[Mm]other|[Ff]ather|"
              r"[Cc]hild)|[Ww]ife|[Hh]usband|[Bb]rother|[Ss]ister|[Pp]artner|[Cc]aregiver|[Gg]uardian|[Pp]roxy|"
              r"[Nn]ext of kin:?|[Ss]een by|[Rr]eferred by|[Ss]igned (?:electronically )?by|[Cc]ontact|"
              r"[Aa]ttending|[Pp]hysician|[Ss]urgeon|(?:[Ss]poke|[Mm]et|[Dd]iscussed|[Rr]eviewed) (?:with|to)|"
              r"[Vv]isited by|[Cc]alled)")
#: Capitalised words that follow a cue but are not names.
_NOT_NAMES = {"The", "This", "That", "He", "She", "They", "His", "Her", "Was", "Is", "Has", "Had", "With",
              "And", "Or", "In", "On", "At", "For", "To", "Of", "A", "An", "Patient", "History", "Plan",
              "Assessment", "Denies", "Reports", "Presents", "Today", "No", "Not", "Name", "Date",
              "Emergency", "Room", "Clinic", "Hospital", "Department", "Unit", "Ward", "Medical", "Record",
              "Number", "Phone", "Fax", "Email", "Address", "Contact", "Follow", "Up", "Who",
              "Dr", "Mr", "Mrs", "Ms", "Miss", "Mx", "Prof", "Nurse", "Sister"}

_PHONE = r"(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b"
_W = _NAME_WORD

# (label, pattern); group 1, when present, is the identifier and the rest is its cue.
# Order matters: earlier entries win overlapping matches (an SSN is not also a phone).
_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("URL", re.compile(r"\b(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:)]")),
    ("IP", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b"
                      r"|\b(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}\b")),
    ("SSN", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("SSN", re.compile(r"(?i:\bSSN|\bsocial security(?: number| no\.?)?)[\s:#]*(?:is\s+)?(\d{3}[ -]?\d{2}[ -]?\d{4})\b")),
    ("MRN", re.compile(r"(?i:\bMRN|\bMR\s?#|\bmedical record(?: number| no\.?| #)?|\bchart(?: number| no\.?| #)"
                       r"|\bpatient ID|\brecord(?: #| no\.?| number)|\bhospital(?: number| no\.?| #)|\bunit number"
                       r"|\bNHS number|\baccount(?: number| no\.?| #)|\bhealth plan ID|\bmember ID)"
                       r"[\s:#-]*(?:is\s+)?([A-Z]{0,3}-?\d[\d-]{3,12}\d)\b")),
    ("FAX", re.compile(r"(?i:\bfax(?:ed)?(?:\s+(?:to|no\.?|number|#))?)[\s:#.]*(?:is\s+|at\s+)?(" + _PHONE + r")")),
    ("PHONE", re.compile(r"(?i:\b(?:phone|tel|telephone|cell|mobile|call|pager|contact))[\s:#.]*(?:at\s+|is\s+|on\s+)?"
                         r"(\d{10})\b")),
    ("PHONE", re.compile(r"(?<![\d-])" + _PHONE + r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?")),
    ("DATE", re.compile(
        r"\b\d{4}-\d{1,2}-\d{1,2}\b"                                   # 2023-03-14
        r"|\b\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})\b"                # 03/14/2023, 3-4-21, 14.03.2023
        rf"|\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b"     # March 14, 2023
        rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}\s*,?\s+\d{{4}}\b"  # 14 March 2023
        rf"|\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?!\s*(?:mg|ml|units|%))"   # March 14
        rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}(?=[\s,.;]|$)"       # 14 March
        r"|\b(?:January|February|March|April|May|June|July|August|September|October|November|December)"
        r"\s+\d{4}\b"                                               # March 2023 (the month is PHI)
    )),
    ("AGE", re.compile(r"\b(9\d|1[01]\d)(?=[- ]?(?:years?|yrs?|y/?o)\b)")),
    ("AGE", re.compile(r"(?i:\baged?:?)\s*(9\d|1[01]\d)\b")),
    ("AGE", re.compile(r"\b(?:[Ss]he|[Hh]e|[Pp]atient|[Pp]t\.?) (?:is|was|turned|turns) (9\d|1[01]\d)\b(?!\.\d|[/:%-]|\s*(?:mg|kg|bpm|percent))")),
    ("ADDRESS", re.compile(
        rf"\b\d{{1,6}}\s+(?:[NSEW]\.?\s+)?(?:{_W}\s+){{1,3}}{_STREET}\b\.?"
        r"(?:,?\s+(?:Apt|Apartment|Suite|Unit|#)\.?\s*\w+)?"
        rf"(?:,\s+{_W}(?:\s+{_W})?)?(?:,?\s+[A-Z]{{2}})?(?:\s+\d{{5}}(?:-\d{{4}})?)?"
        r"|\b(?:P\.?O\.?\s+Box|Post Office Box)\s+\d+")),
    ("NAME", re.compile(rf"\b{_TITLES}\s((?:{_W}\s)?{_W})")),                 # Dr. Jane Smith
    ("NAME", re.compile(rf"\b{_NAME_CUES}[:,]?\s((?:{_W}\s){{0,2}}{_W})")),   # patient John Doe
    ("NAME", re.compile(rf"\b({_W},\s{_W})(?=\s\(?(?:DOB|MRN|born))")),      # Smith, John (DOB ...
    ("NAME", re.compile(rf"\b({_W}\s{_W})(?=,?\s(?:is|was)\san?\s\d{{1,3}}[- ]year[- ]old)")),  # Ann Lee is a 58-year-old
]


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    label: str
    text: str
    #: which detector found it: "rules" (patterns), "names" (the rules' given-name gazetteer,
    #: :mod:`engine.data.names`), "ner", or "rules+ner" / "names+ner" when both did
    source: str = "rules"


@dataclass
class ScrubResult:
    original: str
    scrubbed: str
    spans: list[Span] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(s.label for s in self.spans))


def _trim_name(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Drop leading/trailing words that are capitalised but not names ("The", "Plan")."""
    words = [(m.start() + start, m.end() + start, m.group()) for m in re.finditer(r"\S+", text[start:end])]
    while words and words[0][2].strip(",.") in _NOT_NAMES:
        words.pop(0)
    while words and words[-1][2].strip(",.") in _NOT_NAMES:
        words.pop()
    return (words[0][0], words[-1][1]) if words else None


def default_detectors() -> tuple[str, ...]:
    """The union when the NER extra is installed, the rules alone otherwise."""
    return DETECTORS if ner.ner_available() else ("rules",)


def _check_detectors(detectors: tuple[str, ...]) -> None:
    unknown = [d for d in detectors if d not in DETECTORS]
    if unknown or not detectors:
        raise DataError(f"unknown detector(s) {unknown or list(detectors)!r}", field="detectors",
                        hint=f"Use one or both of: {', '.join(DETECTORS)}.")


def find_phi(text: str, categories: tuple[str, ...] = CATEGORIES, *,
             detectors: tuple[str, ...] = ("rules",)) -> list[Span]:
    """All PHI spans in ``text`` (non-overlapping, sorted; earlier categories win overlaps)."""
    return find_phi_batch([text], categories, detectors=detectors)[0]


def _find_rules(text: str, categories: tuple[str, ...]) -> list[Span]:
    taken: list[tuple[int, int]] = []
    spans: list[Span] = []
    for label, pattern in _PATTERNS:
        if label not in categories:
            continue
        for m in pattern.finditer(text):
            s, e = m.span(1) if m.re.groups and m.group(1) is not None else m.span()
            if label == "NAME":
                trimmed = _trim_name(text, s, e)
                if trimmed is None:
                    continue
                s, e = trimmed
            if e <= s or any(s < te and ts < e for ts, te in taken):
                continue
            taken.append((s, e))
            spans.append(Span(s, e, label, text[s:e]))
    if "NAME" in categories:  # the given-name gazetteer, in context: after the patterns, which win overlaps
        for s, e in names.find_given_names(text):
            if not any(s < te and ts < e for ts, te in taken):
                taken.append((s, e))
                spans.append(Span(s, e, "NAME", text[s:e], "names"))
    return sorted(spans, key=lambda sp: sp.start)


def _merge(text: str, rules: list[Span], names: list[tuple[int, int]]) -> list[Span]:
    """The union of rule spans and NER names. A NER name that overlaps a rule NAME widens it (and
    marks it found by both); one that overlaps another category is dropped (the rules know an MRN or
    a street from a person; NER takes "Oak Street" for a name)."""
    spans = list(rules)
    for s, e in names:
        if any(sp.label != "NAME" and sp.start < e and s < sp.end for sp in spans):
            continue
        hits = [sp for sp in spans if sp.start < e and s < sp.end]
        if hits:
            s, e = min([s] + [h.start for h in hits]), max([e] + [h.end for h in hits])
            spans = [sp for sp in spans if sp not in hits]
            found_by = {d for h in hits for d in h.source.split("+")} - {"ner"}
            source = "+".join(sorted(found_by) + ["ner"])  # "rules+ner", "names+ner", "names+rules+ner"
        else:
            source = "ner"
        spans.append(Span(s, e, "NAME", text[s:e], source))
    return sorted(spans, key=lambda sp: sp.start)


def find_phi_batch(texts: list[str], categories: tuple[str, ...] = CATEGORIES, *,
                   detectors: tuple[str, ...] = ("rules",)) -> list[list[Span]]:
    """:func:`find_phi` for many texts: the NER model runs them in batches, which is faster."""
    _check_detectors(detectors)
    rules = [_find_rules(t, categories) if "rules" in detectors else [] for t in texts]
    if "ner" not in detectors or "NAME" not in categories:
        return rules
    names = ner.find_names(texts)
    return [_merge(t, r, n) for t, r, n in zip(texts, rules, names)]


def _render(text: str, spans: list[Span], style: str) -> ScrubResult:
    out, pos = [], 0
    for sp in spans:
        out.append(text[pos:sp.start])
        out.append(f"[{sp.label}]" if style == "tag" else "*" * (sp.end - sp.start))
        pos = sp.end
    out.append(text[pos:])
    return ScrubResult(text, "".join(out), spans)


def scrub(text: str, *, categories: tuple[str, ...] = CATEGORIES, style: str = "tag",
          detectors: tuple[str, ...] = ("rules",)) -> ScrubResult:
    """Replace PHI with ``[LABEL]`` tags (``style="tag"``) or same-length ``*`` (``"mask"``)."""
    return _render(text, find_phi(text, categories, detectors=detectors), style)


_FIELDS = ("prompt", "response", "text")


def _field_texts(examples: list[dict]) -> list[tuple[int, str, str]]:
    return [(i, f, ex[f]) for i, ex in enumerate(examples) for f in _FIELDS if isinstance(ex.get(f), str)]


def scrub_examples(examples: list[dict], *, categories: tuple[str, ...] = CATEGORIES,
                   detectors: tuple[str, ...] = ("rules",)) -> tuple[list[dict], Counter]:
    """Scrub the text fields of normalised examples; returns new examples and counts per category.

    Audio is untouched (speech PHI needs the audio redacted too; this scrubs transcripts)."""
    total: Counter = Counter()
    out = [dict(ex) for ex in examples]
    fields = _field_texts(examples)
    found = find_phi_batch([t for _, _, t in fields], categories, detectors=detectors)
    for (i, f, text), spans in zip(fields, found):
        r = _render(text, spans, "tag")
        out[i][f] = r.scrubbed
        total.update(r.counts)
    return out, total


def preview(examples: list[dict], limit: int = 20, *, detectors: tuple[str, ...] = ("rules",),
            chunk: int = 64) -> list[dict]:
    """Rows that contain PHI, with before/after text and what was found (for the UI/CLI).

    Reads the examples a chunk at a time and stops once ``limit`` rows are found, so the NER model
    runs on the first rows only and a preview of a large set stays quick."""
    rows: list[dict] = []
    for start in range(0, len(examples), chunk):
        part = examples[start:start + chunk]
        fields = _field_texts(part)
        found = find_phi_batch([t for _, _, t in fields], detectors=detectors)
        for (i, f, text), spans in zip(fields, found):
            if spans and len(rows) < limit:
                r = _render(text, spans, "tag")
                rows.append({"id": part[i].get("id"), "field": f, "before": r.original, "after": r.scrubbed,
                             "found": ", ".join(f"{s.label}: {s.text} ({s.source})" for s in r.spans)})
        if len(rows) >= limit:
            break
    return rows


# --- scoring against a gold set ------------------------------------------------------------

GOLD_SET = Path(__file__).resolve().parents[2] / "assets" / "phi" / "phi_gold.jsonl"


def load_gold(path: str | Path = GOLD_SET, split: str | None = None) -> list[dict]:
    """Gold notes: ``{"id", "split", "text", "spans": [{"start", "end", "label"}]}`` per line
    (``split`` "dev": phrasings the rules were tuned on; "heldout": never tuned on), and optionally
    ``"keep": [{"start", "end", "text"}]``: eponyms and drug names that must survive a scrub."""
    rows = []
    for lineno, raw in enumerate(split_lines(read_text_utf8(Path(path))), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg})", file=str(path), line=lineno) from e
        if not isinstance(row, dict):
            raise DataError(f"expected a JSON object, got {type(row).__name__}", file=str(path), line=lineno)
        bad_text = surrogate_issue(row, str(path), lineno)
        if bad_text is not None:
            raise bad_text.to_error()
        for sp in row.get("keep", []):
            if not (isinstance(sp, dict) and isinstance(sp.get("start"), int) and isinstance(sp.get("end"), int)):
                raise DataError("a keep span needs integer start and end", file=str(path), line=lineno, field="keep")
        for sp in row.get("spans", []):
            if sp.get("label") not in CATEGORIES:
                raise DataError(f"unknown label {sp.get('label')!r}", file=str(path), line=lineno, field="spans")
        if split is None or row.get("split") == split:
            rows.append(row)
    return rows


def _score(rows: list[dict], preds: list[list[Span]]) -> dict[str, dict]:
    tp_pred: Counter = Counter()
    n_pred: Counter = Counter()
    found: Counter = Counter()
    n_gold: Counter = Counter()
    for row, pred in zip(rows, preds):
        gold = row.get("spans", [])
        for g in gold:
            n_gold[g["label"]] += 1
            if any(p.label == g["label"] and p.start < g["end"] and g["start"] < p.end for p in pred):
                found[g["label"]] += 1
        for p in pred:
            n_pred[p.label] += 1
            if any(p.label == g["label"] and p.start < g["end"] and g["start"] < p.end for g in gold):
                tp_pred[p.label] += 1
    table = {}
    for c in CATEGORIES:
        if n_gold[c] or n_pred[c]:
            table[c] = {"gold": n_gold[c], "predicted": n_pred[c],
                        "precision": tp_pred[c] / n_pred[c] if n_pred[c] else 1.0,
                        "recall": found[c] / n_gold[c] if n_gold[c] else 1.0}
    return table


def _kept(rows: list[dict], preds: list[list[Span]]) -> dict:
    """Over-redaction: of the gold set's ``keep`` spans (eponyms, drug names: words that look like
    names and are not PHI), how many no predicted span touches."""
    total = survived = 0
    lost: list[str] = []
    for row, pred in zip(rows, preds):
        for k in row.get("keep", []):
            total += 1
            if any(p.start < k["end"] and k["start"] < p.end for p in pred):
                lost.append(k["text"])
            else:
                survived += 1
    return {"terms": total, "survived": survived, "rate": survived / total if total else 1.0, "lost": lost}


def evaluate_detectors(path: str | Path = GOLD_SET, split: str | None = None,
                       detectors: tuple[str, ...] | None = None) -> dict[str, dict]:
    """Score the rules, the NER model and their union on one run of each detector.

    Returns ``{name: {"table", "keep", "notes_per_s"}}`` for "rules", and also "ner" and "union"
    when the NER extra is installed (or asked for in ``detectors``). The rules are scored as the
    scrubber runs them; "ner" is the model's names alone; "union" merges the two as a scrub does.
    """
    detectors = detectors or default_detectors()
    _check_detectors(detectors)
    rows = load_gold(path, split)
    texts = [r["text"] for r in rows]
    names.given_names()  # read the gazetteer before the clock starts: a one-off cost
    t0 = time.perf_counter()
    rules = [_find_rules(t, CATEGORIES) for t in texts]
    t_rules = time.perf_counter() - t0
    out = {"rules": {"table": _score(rows, rules), "keep": _kept(rows, rules),
                     "notes_per_s": len(texts) / max(t_rules, 1e-9)}}
    if "ner" in detectors:
        ner.find_names(texts[:1])  # load the pipeline before the clock starts: a one-off cost
        t0 = time.perf_counter()
        found = ner.find_names(texts)
        t_ner = time.perf_counter() - t0
        only = [[Span(s, e, "NAME", t[s:e], "ner") for s, e in n] for t, n in zip(texts, found)]
        t0 = time.perf_counter()
        union = [_merge(t, r, n) for t, r, n in zip(texts, rules, found)]
        t_union = t_rules + t_ner + time.perf_counter() - t0
        out["ner"] = {"table": _score(rows, only), "keep": _kept(rows, only),
                      "notes_per_s": len(texts) / max(t_ner, 1e-9)}
        out["union"] = {"table": _score(rows, union), "keep": _kept(rows, union),
                        "notes_per_s": len(texts) / max(t_union, 1e-9)}
    return out


def evaluate_phi(path: str | Path = GOLD_SET, split: str | None = None, *,
                 detectors: tuple[str, ...] = ("rules",)) -> dict[str, dict]:
    """Precision and recall per category on a gold set.

    A predicted span is correct when it overlaps a gold span of the same category; a gold
    span is found when some predicted span of its category overlaps it (lenient overlap:
    what matters for privacy is that the identifier is covered, not the exact boundary).
    """
    rows = load_gold(path, split)
    return _score(rows, find_phi_batch([r["text"] for r in rows], detectors=detectors))


def format_comparison(results: dict[str, dict]) -> str:
    """One table: precision/recall per category for each detector scored, then the survival of
    eponyms and drug names and the speed."""
    names = list(results)
    cats = [c for c in CATEGORIES if any(c in results[n]["table"] for n in names)]
    head = "| category | gold | " + " | ".join(f"{n} P | {n} R" for n in names) + " |"
    lines = [head, "|---|---:|" + "---:|---:|" * len(names)]
    for c in cats:
        gold = next(results[n]["table"][c]["gold"] for n in names if c in results[n]["table"])
        cells = []
        for n in names:
            r = results[n]["table"].get(c)
            if n == "ner" and c != "NAME":
                cells += ["-", "-"]  # the NER detector only looks for names
            else:
                cells += [f"{r['precision']:.3f}", f"{r['recall']:.3f}"] if r else ["-", "-"]
        lines.append(f"| {c} | {gold} | " + " | ".join(cells) + " |")
    keep = [f"{n} {results[n]['keep']['survived']}/{results[n]['keep']['terms']}" for n in names]
    lines.append("")
    lines.append("Eponyms and drug names left intact: " + ", ".join(keep))
    lines.append("Speed (notes/s): " + ", ".join(f"{n} {results[n]['notes_per_s']:.0f}" for n in names))
    return "\n".join(lines)


def format_table(table: dict[str, dict]) -> str:
    lines = ["| category | gold | predicted | precision | recall |", "|---|---:|---:|---:|---:|"]
    for c, r in table.items():
        lines.append(f"| {c} | {r['gold']} | {r['predicted']} | {r['precision']:.3f} | {r['recall']:.3f} |")
    return "\n".join(lines)
