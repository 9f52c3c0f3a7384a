"""The text normalisers behind every WER, CER and term match in MedTune, and the term
matching built on the project's own one: a leaf that data (term-balanced subsampling) and
eval (metrics) share.

Scores are only comparable when both sides are normalised the same way, so every normaliser
a score can use is named here (:data:`NORMALISERS`) and the name is recorded next to the
score (engine/eval/definitions.py):

- ``"whisper"``: Whisper's English text normaliser, the one published English WER is
  computed after (the Open ASR Leaderboard, the Whisper and Canary papers): numbers become
  digits ("twenty five" -> "25"), British spellings American ("colour" -> "color"),
  titles spelled out ("Mr." -> "mister"), contractions expanded ("won't" -> "will not"),
  fillers ("uh", "hmm") and punctuation removed. The code is transformers'
  ``EnglishTextNormalizer``; its British->American table is OpenAI's ``english.json``,
  read from the ``whisper-normalizer`` package (transformers reads it from a Hub tokenizer
  folder, which an offline machine or our embedded whisper-tiny.en does not have). The
  evaluation's WER/CER default (:func:`whisper_normalize`).
- ``"medtune"``: the project's own, below (:func:`normalize`). Medical-term matching
  (term recall, term overlap, term-balanced subsampling) always uses it: it keeps words
  as said and spelled, so a listed term is found the way the list writes it; WER/CER can
  use it as a named option. Steps, in order:

1. Unicode NFKC, then lower case.
2. Symbols with a spoken form become words: ``%`` -> "percent", ``&`` -> "and",
   ``+`` -> "plus", ``°`` -> "degrees"; ``/`` between digits -> "over" (blood pressure
   "120/80"), otherwise a space ("mg/kg" -> "mg kg").
3. Thousands separators go ("1,000" -> "1000").
4. **Numbers to words**: digits are spelled out ("25" -> "twenty five", "0.5" -> "zero
   point five", "3rd" -> "third"), because speech models write numbers either way and
   the synthetic references spell some out; spelling is the direction that needs no
   guessing ("twenty five" could be 25 or 20 5, "25" is always twenty five). "and" inside
   numbers is not produced ("one hundred twenty", not "one hundred and twenty").
   (Whisper's normaliser goes the other way, digits; "25 mg" and "twenty five mg" match
   under both, but other pairs can score differently: tests/test_eval_standard_metrics.py.)
5. Hyphens and apostrophes join or split words without a trace: "beta-blocker" ->
   "beta blocker", "patient's" -> "patients".
6. Every other punctuation mark is removed; runs of whitespace become one space.

Units are NOT expanded ("mg" stays "mg"): expanding them would hide real errors a
clinician cares about.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from importlib import resources
from typing import Callable, Iterable

from engine.errors import DataError

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORD = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                 "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def int_to_words(n: int) -> str:
    """Spell a non-negative integer in English words, without "and" ("125" -> "one
    hundred twenty five")."""
    if n < 0:
        return "minus " + int_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {int_to_words(rest)}" if rest else "")
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return f"{int_to_words(head)} {name}" + (f" {int_to_words(rest)}" if rest else "")
    raise AssertionError("unreachable")


def _ordinal(words: str) -> str:
    *head, last = words.split(" ")
    if last in _ORDINAL_WORD:
        last = _ORDINAL_WORD[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def _spell_number(m: re.Match) -> str:
    whole, frac, suffix = m.group(1), m.group(2), m.group(3)
    if len(whole) > 15:  # an identifier, not a quantity: read digit by digit
        words = " ".join(_ONES[int(d)] for d in whole)
    else:
        words = int_to_words(int(whole))
    if frac:
        words += " point " + " ".join(_ONES[int(d)] for d in frac)
    elif suffix:
        words = _ordinal(words)
    return f" {words} "


_NUMBER = re.compile(r"(\d+)(?:\.(\d+))?(?:(st|nd|rd|th)\b)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_SLASH_NUM = re.compile(r"(?<=\d)\s*/\s*(?=\d)")
_SYMBOLS = {"%": " percent ", "&": " and ", "+": " plus ", "°": " degrees ", "/": " "}
_JOINERS = re.compile(r"['’`]")
_NON_WORD = re.compile(r"[^\w\s]|_")
_SPACES = re.compile(r"\s+")


def normalize(text: str | None) -> str:
    """Normalise a transcript or answer for scoring (see the module docstring for the
    exact steps). ``None`` and empty text give ``""``."""
    if not text:
        return ""
    t = unicodedata.normalize("NFKC", str(text)).lower()
    t = _SLASH_NUM.sub(" over ", t)
    t = _THOUSANDS.sub("", t)
    for sym, spoken in _SYMBOLS.items():
        t = t.replace(sym, spoken)
    t = _NUMBER.sub(_spell_number, t)
    t = _JOINERS.sub("", t)
    t = _NON_WORD.sub(" ", t)
    return _SPACES.sub(" ", t).strip()


def words(text: str | None) -> list[str]:
    """The normalised words of ``text``."""
    n = normalize(text)
    return n.split(" ") if n else []


def count_phrase(words: list[str], term: list[str]) -> int:
    """How many times the word sequence ``term`` occurs in ``words`` (non-overlapping)."""
    n, k, i, count = len(words), len(term), 0, 0
    while k and i + k <= n:
        if words[i:i + k] == term:
            count, i = count + 1, i + k
        else:
            i += 1
    return count


def prepare_terms(terms: Iterable[str]) -> list[tuple[str, list[str]]]:
    """(term as written, its normalised words) per distinct term, longest first."""
    seen, out = set(), []
    for t in terms:
        key = normalize(t)
        if key and key not in seen:
            seen.add(key)
            out.append((t.strip(), key.split(" ")))
    # Longest first, so "atrial fibrillation" is reported rather than a shorter term inside it.
    return sorted(out, key=lambda x: -len(x[1]))


# ---------------------------------------------------------------------------- Whisper's normaliser


@functools.cache
def _whisper_normalizer() -> Callable[[str], str]:
    from transformers.models.whisper.english_normalizer import (  # noqa: PLC0415 - importing transformers costs ~1.5 s, which the app's and CLI's start-up must not pay; only scoring needs it
        EnglishTextNormalizer,
    )
    table = resources.files("whisper_normalizer").joinpath("normalizers", "english.json")
    return EnglishTextNormalizer(json.loads(table.read_text(encoding="utf-8")))


def whisper_normalize(text: str | None) -> str:
    """``text`` through Whisper's English text normaliser (see the module docstring);
    ``None`` and empty text give ``""``."""
    return _whisper_normalizer()(str(text)) if text else ""


#: Every normaliser a score can name: name -> (how a score computed after it is labelled,
#: as in "WER, Whisper-normalised"; the function).
NORMALISERS: dict[str, tuple[str, Callable[[str | None], str]]] = {
    "whisper": ("Whisper-normalised", whisper_normalize),
    "medtune": ("medtune-normalised", normalize),
}


def _named(name: str) -> tuple[str, Callable[[str | None], str]]:
    if name not in NORMALISERS:
        raise DataError(f"unknown text normaliser {name!r}", field="normaliser",
                        hint=f"One of: {', '.join(NORMALISERS)}")
    return NORMALISERS[name]


def normaliser(name: str) -> Callable[[str | None], str]:
    """The normalising function named ``name`` (a key of :data:`NORMALISERS`)."""
    return _named(name)[1]


def normaliser_label(name: str) -> str:
    """How a score computed after normaliser ``name`` is labelled ("Whisper-normalised")."""
    return _named(name)[0]
