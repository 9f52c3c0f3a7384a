"""Generate the synthetic PHI gold set: clinical-style notes with exact identifier spans.

    python assets/phi/build_phi_gold.py     # rewrites phi_gold.jsonl (deterministic)

Every name, number and address here is invented. Notes mix identifiers in several
formats with look-alikes that are NOT PHI (doses, blood pressures, lab values, ages under
90, bare years), so precision is measured as well as recall.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
R = random.Random(20261123)

FIRST = ["John", "Maria", "Wei", "Aisha", "Carlos", "Emily", "Rahul", "Fatima", "Liam", "Olga", "Kwame", "Sofia",
         "Hiroshi", "Grace", "Mateo", "Chloe", "Dmitri", "Amara", "Noah", "Ingrid", "Tomas", "Leila", "Peter", "Nadia"]
LAST = ["Smith", "Garcia", "Chen", "Okafor", "Novak", "Johnson", "Patel", "Haddad", "O'Brien", "Ivanova", "Mensah",
        "Rossi", "Tanaka", "Williams", "Lopez", "Dubois", "Petrov", "Nwosu", "Brown", "Larsen", "Silva", "Karimi",
        "Schmidt", "Kowalski"]
STREETS = ["Oak", "Maple", "Cedar Hill", "Pine", "Elm", "Lakeview", "Sunset", "Church", "Mill", "Willow Creek"]
SUFFIX = ["Street", "St.", "Avenue", "Ave", "Road", "Lane", "Drive", "Court", "Boulevard", "Way"]
CITIES = [("Springfield", "IL"), ("Riverton", "WY"), ("Fairview", "OR"), ("Georgetown", "TX"), ("Salem", "MA")]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
DOMAINS = ["example.com", "mail.example.org", "clinic-example.net", "example.edu"]


def d(n: int) -> str:
    return "".join(str(R.randrange(10)) for _ in range(n))


def phone() -> str:
    a, b, c = f"{R.randrange(200, 999)}", f"{R.randrange(200, 999)}", d(4)
    return R.choice([f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}", f"{a} {b} {c}",
                     f"1-{a}-{b}-{c}"])


def value(label: str) -> str:
    if label == "NAME":
        return R.choice([f"{R.choice(FIRST)} {R.choice(LAST)}", R.choice(LAST), f"{R.choice(FIRST)} {R.choice(LAST)}"])
    if label == "FIRSTLAST":
        return f"{R.choice(FIRST)} {R.choice(LAST)}"
    if label == "FIRST":
        return R.choice(FIRST)
    if label == "LOWERNAME":  # dictation transcribed without capitals
        return f"{R.choice(FIRST)} {R.choice(LAST)}".lower()
    if label == "DATE":
        y, m, day = R.randrange(1990, 2026), R.randrange(1, 13), R.randrange(1, 29)
        return R.choice([f"{m:02d}/{day:02d}/{y}", f"{m}/{day}/{y % 100:02d}", f"{y}-{m:02d}-{day:02d}",
                         f"{MONTHS[m - 1]} {day}, {y}", f"{day} {MONTHS[m - 1]} {y}", f"{MONTHS[m - 1][:3]} {day}",
                         f"{MONTHS[m - 1]} {y}", f"{day}.{m:02d}.{y}"])
    if label in ("PHONE", "FAX"):
        return phone()
    if label == "BAREPHONE":
        return d(10)
    if label == "EMAIL":
        return f"{R.choice(FIRST).lower()}{R.choice(['.', '_', ''])}{R.choice(LAST).lower().replace(chr(39), '')}{R.randrange(1, 99)}@{R.choice(DOMAINS)}"
    if label == "SSN":
        a, b, c = f"{R.randrange(100, 899)}", d(2), d(4)
        return R.choice([f"{a}-{b}-{c}", f"{a}-{b}-{c}", f"{a}{b}{c}", f"{a} {b} {c}"])
    if label == "MRN":
        return R.choice([d(8), d(7), f"A{d(7)}", f"MR-{d(6)}", f"{d(2)}-{d(6)}"])
    if label == "ADDRESS":
        city, st = R.choice(CITIES)
        street = f"{R.randrange(1, 9999)} {R.choice(STREETS)} {R.choice(SUFFIX)}"
        return R.choice([street, f"{street}, {city}, {st} {d(5)}", f"{street}, Apt {R.randrange(1, 40)}{R.choice('ABC')}",
                         f"PO Box {R.randrange(10, 9999)}"])
    if label == "AGE":
        return str(R.randrange(90, 106))
    if label == "URL":
        return R.choice([f"https://portal.{R.choice(DOMAINS)}/patients/{d(6)}", f"www.{R.choice(DOMAINS)}/chart?id={d(5)}",
                         f"http://{R.choice(DOMAINS)}/r/{d(4)}"])
    if label == "IP":
        return R.choice([f"10.{R.randrange(256)}.{R.randrange(256)}.{R.randrange(1, 255)}",
                         f"192.168.{R.randrange(256)}.{R.randrange(1, 255)}", f"172.16.{R.randrange(32)}.{R.randrange(1, 255)}"])
    raise KeyError(label)


# {LABEL} is an identifier; {BAREPHONE} is a PHONE; {FIRSTLAST} a NAME. Other text is not PHI.
TEMPLATES = [
    "Patient {NAME} was seen in clinic on {DATE} for follow up of hypertension, BP 142/88.",
    "Dr. {NAME} reviewed the chest X-ray on {DATE}.",
    "Call the patient at {PHONE} with the potassium result of 5.1.",
    "Discharge summary faxed to {FAX} at the patient's request.",
    "Fax number: {FAX}.",
    "Please send records to {EMAIL} before the visit.",
    "SSN: {SSN}. Insurance verified.",
    "MRN: {MRN}. Admitted with community acquired pneumonia.",
    "Medical record number {MRN}, bed 12, started ceftriaxone 1 g daily.",
    "MR# {MRN} - allergy to penicillin documented.",
    "Lives alone at {ADDRESS} and manages her own medicines.",
    "Home address: {ADDRESS}.",
    "A {AGE}-year-old woman with atrial fibrillation on apixaban 2.5 mg twice daily.",
    "Aged {AGE}, she walks with a frame and had two falls in 2023.",
    "Results are available at {URL} for 30 days.",
    "Remote login from {IP} was recorded during the video visit.",
    "Contact: {NAME}, phone {PHONE}.",
    "Her daughter, {FIRSTLAST}, can be reached at {PHONE}.",
    "Mrs. {NAME} reports chest pain since {DATE}.",
    "Seen by Dr. {NAME}; next appointment {DATE}.",
    "Date of birth {DATE}. Age 67. Weight 72 kg.",
    "DOB: {DATE}; MRN {MRN}.",
    "{FIRSTLAST} is a 58-year-old man with COPD, FEV1 45 percent.",
    "Spoke with {FIRSTLAST} about the biopsy results today.",
    "Cell {BAREPHONE}. Prefers text messages.",
    "Social security number {SSN} on file.",
    "Patient ID: {MRN}. Hemoglobin 9.8 g/dL, platelets 140.",
    "Email {EMAIL} or call {PHONE} to reschedule.",
    "The {AGE} yo resident of the care home has a urinary tract infection.",
    "Follow-up on {DATE} with repeat INR; current INR 2.6 on warfarin 5 mg.",
    "Chart #: {MRN}.",
    "Referred by Dr. {NAME} from {ADDRESS}.",
    "Take 1/2 tablet twice daily and return in 2 weeks.",
    "Blood pressure 128/76, pulse 72, temperature 37.1 C.",
    "She had a hip replacement in 2019 and cataract surgery in 2021.",
    "A 45-year-old man presents with 3 days of cough.",
    "Dose reduced to 0.5 mg on day 3 of admission.",
    "Pager {PHONE} for urgent questions.",
    "Uploaded via {URL} from {IP}.",
]


# Written after the scrubber was tuned on TEMPLATES and never used to tune it: phrasings
# and cues the rules were not built around, so these notes show how it does on text it has
# not seen (report both figures; "heldout" is the honest one).
HELDOUT_TEMPLATES = [
    "Pt. {FIRSTLAST} arrived by ambulance at 02:10.",
    "Next of kin: {FIRSTLAST} (son), tel. {PHONE}.",
    "Admission date {DATE}; discharge date {DATE}.",
    "Telephone {PHONE} (home) or {PHONE} (work).",
    "Reach me on my mobile {PHONE} after 5 pm.",
    "Electronic mail: {EMAIL}",
    "Record no. {MRN} was merged with the new chart.",
    "The social security # is {SSN}.",
    "Hospital number {MRN}, ward 7B.",
    "Resides at {ADDRESS} with two cats.",
    "Centenarian, {AGE} years of age, admitted from home.",
    "She is {AGE} and lives with her granddaughter {FIRSTLAST}.",
    "Grandson {FIRSTLAST} is the health care proxy.",
    "Signed electronically by {FIRSTLAST}, MD, on {DATE}.",
    "Lab accession 23-445566 processed; platelets 150-400 is the normal range.",
    "Telehealth session from IP {IP} dropped twice.",
    "Images can be viewed at {URL}.",
    "Fax: {FAX}",
    "{DATE}: patient called with a worsening cough.",
    "Visit on {DATE} at 10:30 with Nurse {NAME}.",
    "Allergies reviewed with {FIRSTLAST} and her husband.",
    "Pain score 6/10, ratio 1:2 dilution, room 4-12.",
    "Wife's e-mail is {EMAIL}; her cell is {PHONE}.",
    "Prior MRN {MRN} (old system).",
    "Born {DATE} in Fairview.",
]


# Words that look like names to a model and are NOT PHI: eponyms (diseases, signs, scores, devices,
# procedures) and brand drug names. {EPONYM} and {DRUG} become "keep" spans: a scrubber that
# redacts them over-redacts (phi.evaluate_detectors measures how many survive).
EPONYMS = ["Parkinson disease", "Crohn's disease", "Hodgkin lymphoma", "Apgar score", "Foley catheter",
           "Bell's palsy", "Graves disease", "Cushing syndrome", "Addison disease", "Alzheimer dementia",
           "Hashimoto thyroiditis", "Guillain-Barre syndrome", "Barrett esophagus", "Kaposi sarcoma",
           "Raynaud phenomenon", "Sjogren syndrome", "Wernicke encephalopathy", "Meniere disease",
           "Paget disease", "Glasgow Coma Scale", "Babinski sign", "Holter monitor", "Swan-Ganz catheter",
           "Epley maneuver", "Whipple procedure", "Nissen fundoplication", "Tourette syndrome",
           "Kawasaki disease", "Marfan syndrome", "Huntington disease", "Lyme disease", "Hickman line"]
DRUGS = ["Lasix", "Coumadin", "Eliquis", "Xarelto", "Keppra", "Zofran", "Lipitor", "Norvasc", "Humira", "Ozempic",
         "Synthroid", "Plavix", "Tylenol", "Ativan", "Haldol", "Dilaudid", "Toradol", "Lovenox", "Protonix",
         "Flomax", "Seroquel", "Augmentin", "Bactrim", "Keflex", "Zoloft", "Lexapro", "Neurontin", "Jardiance"]

# Names that rules find hard: no title or cue word, lower-case dictation, names next to eponyms and
# drug names. Development part (the deny-list in engine/data/ner.py was checked against these).
NAME_TEMPLATES = [
    "{FIRSTLAST} came in with worsening {EPONYM}.",
    "History of {EPONYM}; {FIRSTLAST} also takes {DRUG} daily.",
    "seen today with {LOWERNAME} for a recheck of her {EPONYM}.",
    "{FIRST} was calm during the {EPONYM} assessment.",
    "Plan discussed at length and {FIRSTLAST} agrees with starting {DRUG}.",
    "{DRUG} 40 mg was given and {FIRSTLAST} tolerated it well.",
    "dictation for {LOWERNAME}, {EPONYM} follow up, continue {DRUG}.",
    "Her {EPONYM} is stable according to {FIRSTLAST}.",
    "{EPONYM} screening negative. {FIRSTLAST} to return in six weeks.",
    "{DRUG} was held overnight because {FIRST} felt dizzy.",
]
# Held-out part: other phrasings, written at the same time but never used to tune anything.
NAME_HELDOUT_TEMPLATES = [
    "Thank you for referring {FIRSTLAST}, who has {EPONYM}.",
    "{FIRSTLAST} and {FIRSTLAST} attended the family meeting.",
    "okay so this is {LOWERNAME} here for her {EPONYM} check, she ran out of {DRUG}.",
    "Per {FIRSTLAST}, the {EPONYM} symptoms began after {DRUG} was stopped.",
    "{DRUG} refilled for {FIRSTLAST}.",
    "I met {FIRST} and her father in the {EPONYM} clinic.",
    "The {EPONYM} was reviewed with {FIRSTLAST} on the ward.",
    "um {LOWERNAME} called back about the {DRUG} dose.",
    "Transferred to {FIRSTLAST} for {EPONYM} management.",
    "{FIRSTLAST} remains on {DRUG} for {EPONYM}.",
]


def fill(template: str) -> tuple[str, list[dict]]:
    out, spans, pos = "", [], 0
    for m in re.finditer(r"\{([A-Z]+)\}", template):
        out += template[pos:m.start()]
        key = m.group(1)
        if key == "DOMAIN":
            out += R.choice(DOMAINS)
        elif key in ("EPONYM", "DRUG"):
            v = R.choice(EPONYMS if key == "EPONYM" else DRUGS)
            spans.append({"start": len(out), "end": len(out) + len(v), "label": "KEEP", "text": v,
                          "kind": key.lower()})
            out += v
        else:
            v = value(key)
            label = {"BAREPHONE": "PHONE", "FIRSTLAST": "NAME", "FIRST": "NAME", "LOWERNAME": "NAME"}.get(key, key)
            spans.append({"start": len(out), "end": len(out) + len(v), "label": label, "text": v})
            out += v
        pos = m.end()
    return out + template[pos:], spans


def note(templates: list[str], i: int, split: str, kind: str | None = None) -> dict:
    text, spans = "", []
    for t in R.sample(templates, R.randrange(3, 6)):
        s, sp = fill(t)
        if text:
            text += " "
        for x in sp:
            x["start"] += len(text)
            x["end"] += len(text)
        text += s
        spans += sp
    for x in spans:
        assert text[x["start"]:x["end"]] == x["text"]
    row = {"id": f"phi-{i + 1:03d}", "split": split, "text": text, "spans": [x for x in spans if x["label"] != "KEEP"]}
    keep = [{k: x[k] for k in ("start", "end", "text", "kind")} for x in spans if x["label"] == "KEEP"]
    if kind:
        row["kind"] = kind
    if keep:
        row["keep"] = keep
    return {**row, "synthetic": True}


def main(n_notes: int = 200, n_heldout: int = 100, n_names: int = 60) -> None:
    rows = [note(TEMPLATES if i < n_notes else HELDOUT_TEMPLATES, i, "dev" if i < n_notes else "heldout")
            for i in range(n_notes + n_heldout)]
    # The name notes come after, from the same random stream: the first 300 notes stay as they were.
    base = len(rows)
    for j in range(2 * n_names):
        split = "dev" if j < n_names else "heldout"
        rows.append(note(NAME_TEMPLATES if split == "dev" else NAME_HELDOUT_TEMPLATES, base + j, split, "names"))
    (HERE / "phi_gold.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} notes, {sum(len(r['spans']) for r in rows)} spans, "
          f"{sum(len(r.get('keep', [])) for r in rows)} keep terms")


if __name__ == "__main__":
    main()
