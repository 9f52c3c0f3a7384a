"""Regenerate the shipped synthetic datasets from the curated facts in ``src/``.

    python assets/datasets/build_shipped.py        # rewrites the .jsonl/.txt files here

Deterministic: the same facts give byte-identical files. Everything produced is SYNTHETIC
and for demonstrating fine-tuning only; it is not medical advice.
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src"))

import dictation_facts as D  # noqa: E402
import pubmedqa_facts as P  # noqa: E402
import qa_facts as Q  # noqa: E402

GENERAL_ENGLISH = [
    "The weather was cold and windy all morning.",
    "Please close the door when you leave the room.",
    "She bought fresh bread and a bag of apples at the market.",
    "The train to the city leaves at half past eight.",
    "We watched a film and then went for a walk by the river.",
    "My brother is learning to play the piano.",
    "The library opens at nine on Saturdays.",
    "He forgot his umbrella and got wet on the way home.",
    "The children painted pictures of animals in the garden.",
    "Could you turn the music down a little?",
    "The new bridge was finished ahead of schedule.",
    "I would like a cup of tea with milk, please.",
    "The meeting has been moved to Thursday afternoon.",
    "Birds were singing in the trees outside the window.",
    "They planted tomatoes and beans along the fence.",
    "The bus was late because of heavy traffic.",
    "Our neighbours have a friendly old dog.",
    "The museum has a large collection of old maps.",
    "Please remember to water the plants while I am away.",
    "The shop on the corner sells newspapers and sweets.",
    "We need to buy a new lamp for the kitchen.",
    "The football match ended in a draw.",
    "She wrote a long letter to her grandmother.",
    "The road along the coast is narrow and winding.",
    "He makes soup with carrots, onions and potatoes.",
    "The students finished their project before the deadline.",
    "A light rain started just after lunch.",
    "The cat slept in a patch of sunshine on the floor.",
    "We are planning a short holiday in the mountains.",
    "The baker starts work very early every morning.",
    "This jacket is warm enough for the winter.",
    "The teacher read a story to the whole class.",
    "They painted the fence white last summer.",
    "Turn left at the church and the station is on your right.",
    "The river was calm and the boats moved slowly.",
    "I found my keys under a pile of papers on the desk.",
    "The garden looks lovely when the roses bloom.",
    "He likes to read the news before breakfast.",
    "Our flight was delayed by two hours.",
    "The market is busy on Saturday mornings.",
]


def dictation() -> tuple[list[dict], list[str]]:
    sents: list[str] = []
    terms: list[str] = []
    for i, (drug, dose, indication, monitor, extra) in enumerate(D.DRUGS):
        terms.append(drug)
        first = D.DOSE_TEMPLATES[i % len(D.DOSE_TEMPLATES)].format(dose=dose, indication=indication)
        second = D.MONITOR_TEMPLATES[i % len(D.MONITOR_TEMPLATES)].format(drug=drug, monitor=monitor)
        sents += [first[0].upper() + first[1:], second, extra]
        sents += [t.format(drug=drug, Drug=_cap(drug)) for t in D.DRUG_MORE[i % len(D.DRUG_MORE)]]
    for i, (cond, finding, workup, extra) in enumerate(D.CONDITIONS):
        terms.append(cond)
        a, b = D.CONDITION_TEMPLATES[i % len(D.CONDITION_TEMPLATES)]
        sents += [a.format(cond=cond, finding=finding), b.format(cond=cond, workup=workup), extra]
        sents += [t.format(cond=cond) for t in D.CONDITION_MORE[i % len(D.CONDITION_MORE)]]
    for i, (term, lines) in enumerate(D.PROCEDURES):
        terms.append(term)
        sents += lines + [t.format(proc=term) for t in D.PROCEDURE_MORE[i % len(D.PROCEDURE_MORE)]]
    for term, lines in D.ABBREVIATIONS:
        terms.append(term)
        sents += lines + D.ABBREVIATION_MORE[term]
    seen, rows = set(), []
    for s in sents:
        s = s[0].upper() + s[1:]
        if s in seen:
            raise SystemExit(f"duplicate sentence: {s}")
        seen.add(s)
        low = s.lower()
        found = [t for t in terms if f" {t.lower()} " in f" {low.replace(',', ' ').replace('.', ' ')} "]
        rows.append({"id": f"dict-{len(rows) + 1:04d}", "text": s, "terms": found})
    return rows, terms


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _age(age: int, sex: str) -> str:
    return f"A {sex}" if age == 0 else f"A {age}-year-old {sex}"


def qa() -> list[dict]:
    rows = []
    for c in Q.CONDITIONS:
        n, ct = c["name"], c["what"]
        assess = f"Assessment: {_cap(n)} is {ct}."
        items = [
            (f"{_age(*c['v1'][:2])} presents with {c['v1'][2]}. What is the likely assessment and initial plan?",
             f"Assessment: Likely {n}, given {c['why']}.\nPlan: Confirm with {c['workup']}. Treat with {c['treat']}. "
             f"Arrange {c['follow']}. Seek urgent care for {c['red']}."),
            (f"{_age(*c['v2'][:2])} has {c['v2'][2]}. How would you assess and manage this?",
             f"Assessment: Consistent with {n}, {ct}; the key features are {c['why']}.\n"
             f"Plan: {_cap(c['workup'])}; then {c['treat']}. Safety-net: {c['red']} need urgent review."),
            (f"What is the usual first-line management of {n}{c.get('pop', ' in adults')}?",
             f"{assess}\nPlan: {_cap(c['treat'])}. Follow-up: {c['follow']}."),
            (f"How is {n} usually confirmed?",
             f"{assess} Suspect it with {c['why']}.\nPlan: {_cap(c['workup'])}."),
            (f"Which warning signs in someone with {n} should prompt urgent medical care?",
             f"{assess}\nPlan: Seek urgent care for {c['red']}. Otherwise continue the agreed treatment and {c['follow']}."),
            (f"A patient with {n} asks what they can do themselves. What advice fits?",
             f"{assess}\nPlan: Self-care: {c['self']}. Keep follow-up: {c['follow']}. Return urgently for {c['red']}."),
            (f"After treatment for {n} has started, what follow-up is appropriate?",
             f"{assess} Treatment usually means {c['treat']}.\nPlan: {_cap(c['follow'])}. Escalate for {c['red']}."),
        ]
        slug = n.lower().replace(" ", "-")
        for k, (q, a) in enumerate(items, start=1):
            rows.append({"id": f"qa-{slug}-{k}", "prompt": q, "response": a,
                         "meta": {"topic": n, "template": k, "synthetic": True}})
    return rows


def _p_two_prop(x1: int, n1: int, x2: int, n2: int) -> float:
    p = (x1 + x2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2)) or 1e-9
    z = abs(x1 / n1 - x2 / n2) / se
    return math.erfc(z / math.sqrt(2))


def _arm(rng: random.Random, n: int, base: float, rr: float) -> tuple[int, int]:
    return round(n * base * rr), round(n * base)


def _fmt_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def pubmedqa() -> list[dict]:
    rows = []
    drop_maybe = set(range(0, len(P.STEMS), 3))  # a realistic imbalance: fewer "maybe" items
    for s_idx, (interv, comp, outcome, pop, sub) in enumerate(P.STEMS):
        for label in ("yes", "no", "maybe"):
            if label == "maybe" and s_idx in drop_maybe:
                continue
            rng = random.Random(f"{s_idx}-{label}")
            design = P.DESIGNS[rng.randrange(len(P.DESIGNS))]
            for _ in range(1000):
                n = rng.randrange(120, 480)
                base = rng.uniform(0.15, 0.4)
                rr = {"yes": rng.uniform(0.45, 0.7), "no": rng.uniform(0.9, 1.08), "maybe": rng.uniform(0.75, 0.9)}[label]
                x1, x2 = _arm(rng, n, base, rr)
                p = _p_two_prop(x1, n, x2, n)
                ok = {"yes": p < 0.01, "no": p > 0.3, "maybe": 0.05 < p < 0.3}[label]
                if label == "maybe" and ok:
                    m = rng.randrange(40, 90)
                    s1, s2 = _arm(rng, m, base + 0.05, rng.uniform(0.3, 0.5))
                    ps = _p_two_prop(s1, m, s2, m)
                    ok = ps < 0.05
                if ok:
                    break
            a, b = 100 * x1 / n, 100 * x2 / n
            ctx = (f"In a {design} of {2 * n} {pop}, {n} received {interv} and {n} received {comp}. "
                   f"The primary outcome, {outcome}, occurred in {a:.1f}% versus {b:.1f}% "
                   f"(risk ratio {x1 / max(x2, 1):.2f}, {_fmt_p(p)}).")
            if label == "yes":
                ctx += " The effect was consistent across prespecified subgroups and adverse events were similar."
                long = (f"Compared with {comp}, {interv} reduced {outcome} in {pop} "
                        f"({a:.1f}% versus {b:.1f}%), and the difference was statistically significant.")
            elif label == "no":
                ctx += " No prespecified subgroup showed a different result."
                long = (f"{_cap(interv)} did not reduce {outcome} compared with {comp} "
                        f"({a:.1f}% versus {b:.1f}%, {_fmt_p(p)}).")
            else:
                ctx += (f" In the prespecified subgroup of {sub} ({m} per arm), the rates were "
                        f"{100 * s1 / m:.1f}% versus {100 * s2 / m:.1f}% ({_fmt_p(ps)}).")
                long = (f"Overall, {interv} did not significantly reduce {outcome}, but a benefit was "
                        f"seen in {sub}; the evidence is inconclusive and a larger trial is needed.")
            rows.append({"id": f"pqa-{s_idx + 1:02d}-{label}",
                         "question": f"Does {interv} reduce the rate of {outcome} in {pop}?",
                         "context": ctx, "long_answer": long, "final_decision": label, "synthetic": True})
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    rows, terms = dictation()
    _write_jsonl(HERE / "med-dictation" / "sentences.jsonl", rows)
    (HERE / "med-dictation" / "terms.txt").write_text("\n".join(terms) + "\n", encoding="utf-8")
    _write_jsonl(HERE / "general-english" / "sentences.jsonl",
                 [{"id": f"gen-{i:03d}", "text": t} for i, t in enumerate(GENERAL_ENGLISH, start=1)])
    _write_jsonl(HERE / "med-qa" / "qa.jsonl", qa())
    _write_jsonl(HERE / "pubmedqa-synth" / "pubmedqa.jsonl", pubmedqa())
    print(f"dictation {len(rows)} sentences / {len(terms)} terms; general {len(GENERAL_ENGLISH)}; "
          f"qa {len(qa())}; pubmedqa {len(pubmedqa())}")


if __name__ == "__main__":
    main()
