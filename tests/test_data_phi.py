"""PHI scrubber: figures on the shipped synthetic gold set, and look-alikes left alone."""

from __future__ import annotations

import pytest

from engine.data import phi

STRUCTURED = ("PHONE", "EMAIL", "SSN", "MRN", "DATE")


def test_gold_set_is_well_formed():
    rows = phi.load_gold()
    assert len(rows) >= 200 and {r["split"] for r in rows} == {"dev", "heldout"}
    labels = {sp["label"] for r in rows for sp in r["spans"]}
    assert labels == set(phi.CATEGORIES)
    for r in rows:
        for sp in r["spans"]:
            assert r["text"][sp["start"]:sp["end"]] == sp["text"]


@pytest.mark.parametrize("split", ["dev", "heldout"])
def test_structured_identifiers_recall(split):
    table = phi.evaluate_phi(split=split)
    for cat in STRUCTURED:
        assert table[cat]["gold"] >= 10, cat
        assert table[cat]["recall"] >= 0.95, (cat, table[cat])
        assert table[cat]["precision"] >= 0.9, (cat, table[cat])


def test_lookalikes_are_not_phi():
    clean = ("BP 120/80, pulse 95, INR 2.4, platelets 150-400, score 6/10. Take 1/2 tablet. "
             "A 67-year-old man on metoprolol 25 mg; heart rate is 95. Hip replacement in 2019. "
             "May we review the plan? The patient presents with chest pain.")
    assert phi.find_phi(clean) == []


def test_scrub_replaces_and_counts():
    text = ("Patient Maria Lopez, MRN 00482913, DOB 04/02/1931, a 93-year-old woman at 12 Oak Street. "
            "Call (555) 201-3344, fax 555-201-3399, email m.lopez@example.com, SSN 123-45-6789. "
            "Portal https://portal.example.org/p/1 from 10.0.0.12 on March 3, 2024.")
    r = phi.scrub(text)
    for secret in ("Maria Lopez", "00482913", "04/02/1931", "93", "12 Oak Street", "201-3344", "201-3399",
                   "m.lopez@example.com", "123-45-6789", "portal.example.org", "10.0.0.12", "March 3"):
        assert secret not in r.scrubbed, secret
    assert r.counts == {"NAME": 1, "MRN": 1, "DATE": 2, "AGE": 1, "ADDRESS": 1, "PHONE": 1, "FAX": 1,
                        "EMAIL": 1, "SSN": 1, "URL": 1, "IP": 1}
    assert "[NAME], MRN [MRN]" in r.scrubbed
    masked = phi.scrub("SSN 123-45-6789", style="mask").scrubbed
    assert masked == "SSN ***********"


def test_scrub_examples_and_preview():
    exs = [{"id": "1", "prompt": "Email jo@example.com", "response": "ok", "meta": {}},
           {"id": "2", "audio": "/x.flac", "text": "call 555-123-4567", "duration": 1.0, "meta": {}},
           {"id": "3", "prompt": "nothing here", "response": "fine", "meta": {}}]
    out, counts = phi.scrub_examples(exs)
    assert counts == {"EMAIL": 1, "PHONE": 1}
    assert out[0]["prompt"] == "Email [EMAIL]" and out[1]["text"] == "call [PHONE]" and out[1]["audio"] == "/x.flac"
    assert exs[0]["prompt"] == "Email jo@example.com"  # input untouched
    rows = phi.preview(exs)
    assert [(r["id"], r["field"]) for r in rows] == [("1", "prompt"), ("2", "text")]
    assert "EMAIL: jo@example.com" in rows[0]["found"]
