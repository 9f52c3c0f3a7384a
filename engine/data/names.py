"""Names by a gazetteer of common given names, read in context (part of the rules detector).

The NER model misses what it has no capitals or context for: lower-case dictation ("seen today with
tomas lopez") and lone first names ("because Sofia felt dizzy"). A list of common US given names
(``assets/phi/given_names.txt``: the 1990 census's most frequent first names, public domain) finds
them, with context to keep precision:

- a capitalised given name followed by a capitalised word that is not a common or clinical word ->
  a full name ("Maria Lopez"); alone -> a first name, unless the name is also an everyday word;
- a lower-case given name followed by a lower-case word that is not a common or clinical word ->
  a full name ("tomas lopez"); alone only after a cue ("with", "patient", "wife", ...); never when
  the name is also an everyday word ("mark improvement", "grace period").

Given names that are also everyday or clinical words (Will, May, Grace, Mark, Bill, Amber, Iris,
Walker, Gene, ...) count only when a surname-like word follows them. Eponyms and drug names
(:data:`engine.data.ner.MEDICAL_TERMS`) never count. Spans are labelled "names" by the scrubber.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from engine.data.ner import MEDICAL_TERMS

GIVEN_NAMES_FILE = Path(__file__).resolve().parents[2] / "assets" / "phi" / "given_names.txt"

#: Given names that are also everyday words, months, places or clinical words: a name only when
#: capitalised and followed by a capitalised surname-like word ("Grace Tanaka"), never alone.
AMBIGUOUS = frozenset("""
al art august april autumn angel amber bill brain bud buddy candy carol chance chase cherry chi christian clay
cliff coy crystal daisy dale dawn dean dee dick dolly don drew dusty earnest ebony ed eve faith fay fern forest
frank gay gale gene ginger glen grace grant guy hazel heath holly hope hunter ivory ivy iris jack jan jewel jewell jo
joy june kitty lacy lacey lance lane laurel lily lilly mac mack major mark mason max may miles misty olive opal pat
patience pearl penny prince queen ray reed rich rob rocky rod rose royal ruby rusty sandy sang son sterling sue
summer sung hung tad tia ty van violet wade ward will young numbers foster walker tanner wilson parker carter
dallas houston cleveland denver lincoln georgia virginia carolina florence sydney kenya savannah augusta geneva
helena orlando trinidad israel lourdes guadalupe german cruz santos reyes mercedes harmony charity constance
brooks bennie cary carey lou les ira ina ila ada ali eli ola ora eva ava ida amy joe tom kim lee ann jean
flora basil pansy myrtle nick chuck patsy robin jay sherry brandy randy kip marina rosemary viola austin
""".split())

#: Words that follow a given name and are not a surname: function words, common verbs and clinical
#: words ("Maria was", "tomas for", "Sofia felt", "John Hospital"). Lower case.
COMMON_WORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing done down during each either else ever every few for from further had has
have having he her here hers him his how i if in into is it its itself just let like may me might more most much
must my near neither never no nor not now of off on once only or other our out over own per same she should since
so some still such than that the their them then there these they this those though through to too under until up
upon us very via was we were what when where whether which while who whom whose why will with within without would
yet you your
agrees agreed appears appeared arrived asked asks awoke became becomes began came called calls comes complains
complained continues continued declined declines denies denied describes described developed did does ended feels
felt fell gets got gave gives goes went had has held improved is lives lived looked looks needs needed notes noted
presents presented received receives refused refuses remains remained reports reported returns returned said says
seems seemed started starts states stated takes took tolerated tolerates underwent uses used wants wanted was woke
will would admits admitted
today tonight tomorrow yesterday now again also still already daily weekly nightly twice once morning evening
night overnight here there well better worse stable
patient pt mother father wife husband son daughter sister brother family nurse doctor dr md rn np pa
follow follows followed continue start stop return monitor plan assessment history exam note notes
hospital clinic center centre medical health department unit ward room service services team office
disease syndrome sign score scale catheter monitor procedure maneuver line test tests lab labs level levels
pain fever cough mg ml dose doses tablet tablets
""".split())

#: Words before a lone lower-case given name that say it is a person.
_CUES = frozenset("""
with for patient pt mother father wife husband son daughter sister brother partner caregiver friend
by to and named called dictation
""".split())

_TOKEN = re.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]|[A-Za-z]")
_TITLE = re.compile(r"[A-Z][a-z]*(?:'[A-Z])?[a-z]+(?:-[A-Z][a-z]+)?$")  # Maria, O'Brien, Lloyd-Jones
_LOWER = re.compile(r"[a-z][a-z'\-]*[a-z]$")


@lru_cache(maxsize=1)
def given_names() -> frozenset[str]:
    """The gazetteer (lower case), minus eponyms and drug names."""
    words = (ln.strip().lower() for ln in GIVEN_NAMES_FILE.read_text(encoding="utf-8").splitlines())
    return frozenset(w for w in words if w and not w.startswith("#") and w not in MEDICAL_TERMS)


def _strip_s(word: str) -> str:
    return word[:-2] if word.endswith("'s") else word


def _base(word: str) -> str:
    return _strip_s(word.lower())


def _surname_like(word: str, title: bool) -> bool:
    """Could ``word`` be the surname after a given name (same case as the given name)?"""
    if not (_TITLE.match(_strip_s(word)) if title else _LOWER.match(word)):
        return False
    base = _base(word)
    return len(base) > 1 and base not in COMMON_WORDS and base not in MEDICAL_TERMS \
        and not all(p in MEDICAL_TERMS for p in base.split("-"))


def find_given_names(text: str) -> list[tuple[int, int]]:
    """Character spans of names found through the given-name gazetteer, in context."""
    names = given_names()
    toks = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(toks):
        s, e, word = toks[i]
        base = _base(word)
        title = bool(_TITLE.match(_strip_s(word)))
        # a lower-case everyday word ("mark improvement", "grace period") is never a name here
        if base not in names or not (title or (_LOWER.match(word) and base not in AMBIGUOUS)):
            i += 1
            continue
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        adjacent = nxt is not None and text[e:nxt[0]] == " " and not word.endswith("'s")
        if adjacent and _surname_like(nxt[2], title):
            spans.append((s, nxt[1]))
            i += 2
            continue
        if base not in AMBIGUOUS and len(base) > 2:
            prev = _base(toks[i - 1][2]) if i > 0 else ""
            if title or prev in _CUES:
                spans.append((s, e))
        i += 1
    return spans
