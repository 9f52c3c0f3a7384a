"""PHI scrubber for free text: the HIPAA Safe Harbor identifiers that text can carry.

Categories: NAME, DATE, PHONE, FAX, EMAIL, MRN, SSN, ADDRESS, AGE (over 89), URL, IP.
Rule-based on purpose: every decision can be read and audited, it runs offline, and it
is measured against a synthetic gold set (:func:`evaluate_phi`). Structured identifiers
(phone, e-mail, SSN, MRN, dates) are caught by patterns with high recall; names are the
weak spot of any rule-based scrubber and the measured figures say so.

NOT a certified de-identification tool: review the preview before sharing data.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from engine.data.readers import read_text_utf8, split_lines
from engine.data.schema import surrogate_issue
from engine.errors import DataError

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


def find_phi(text: str, categories: tuple[str, ...] = CATEGORIES) -> list[Span]:
    """All PHI spans in ``text`` (non-overlapping, sorted; earlier categories win overlaps)."""
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
    return sorted(spans, key=lambda sp: sp.start)


def scrub(text: str, *, categories: tuple[str, ...] = CATEGORIES, style: str = "tag") -> ScrubResult:
    """Replace PHI with ``[LABEL]`` tags (``style="tag"``) or same-length ``*`` (``"mask"``)."""
    spans = find_phi(text, categories)
    out, pos = [], 0
    for sp in spans:
        out.append(text[pos:sp.start])
        out.append(f"[{sp.label}]" if style == "tag" else "*" * (sp.end - sp.start))
        pos = sp.end
    out.append(text[pos:])
    return ScrubResult(text, "".join(out), spans)


def scrub_examples(examples: list[dict], *, categories: tuple[str, ...] = CATEGORIES) -> tuple[list[dict], Counter]:
    """Scrub the text fields of normalised examples; returns new examples and counts per category.

    Audio is untouched (speech PHI needs the audio redacted too; this scrubs transcripts)."""
    total: Counter = Counter()
    out = []
    for ex in examples:
        new = dict(ex)
        for f in ("prompt", "response", "text"):
            if isinstance(ex.get(f), str):
                r = scrub(ex[f], categories=categories)
                new[f] = r.scrubbed
                total.update(r.counts)
        out.append(new)
    return out, total


def preview(examples: list[dict], limit: int = 20) -> list[dict]:
    """Rows that contain PHI, with before/after text and what was found (for the UI/CLI)."""
    rows = []
    for ex in examples:
        for f in ("prompt", "response", "text"):
            if isinstance(ex.get(f), str):
                r = scrub(ex[f])
                if r.spans:
                    rows.append({"id": ex.get("id"), "field": f, "before": r.original, "after": r.scrubbed,
                                 "found": ", ".join(f"{s.label}: {s.text}" for s in r.spans)})
        if len(rows) >= limit:
            break
    return rows


# --- scoring against a gold set ------------------------------------------------------------

GOLD_SET = Path(__file__).resolve().parents[2] / "assets" / "phi" / "phi_gold.jsonl"


def load_gold(path: str | Path = GOLD_SET, split: str | None = None) -> list[dict]:
    """Gold notes: ``{"id", "split", "text", "spans": [{"start", "end", "label"}]}`` per line
    (``split`` "dev": phrasings the rules were tuned on; "heldout": never tuned on)."""
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
        for sp in row.get("spans", []):
            if sp.get("label") not in CATEGORIES:
                raise DataError(f"unknown label {sp.get('label')!r}", file=str(path), line=lineno, field="spans")
        if split is None or row.get("split") == split:
            rows.append(row)
    return rows


def evaluate_phi(path: str | Path = GOLD_SET, split: str | None = None) -> dict[str, dict]:
    """Precision and recall per category on a gold set.

    A predicted span is correct when it overlaps a gold span of the same category; a gold
    span is found when some predicted span of its category overlaps it (lenient overlap:
    what matters for privacy is that the identifier is covered, not the exact boundary).
    """
    tp_pred: Counter = Counter()
    n_pred: Counter = Counter()
    found: Counter = Counter()
    n_gold: Counter = Counter()
    for row in load_gold(path, split):
        pred = find_phi(row["text"])
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


def format_table(table: dict[str, dict]) -> str:
    lines = ["| category | gold | predicted | precision | recall |", "|---|---:|---:|---:|---:|"]
    for c, r in table.items():
        lines.append(f"| {c} | {r['gold']} | {r['predicted']} | {r['precision']:.3f} | {r['recall']:.3f} |")
    return "\n".join(lines)
