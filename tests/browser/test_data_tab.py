"""The Data tab in a real browser: load the shipped dictation set (its audio is synthesized
on first use), play a row's audio, see the statistics plot, then validate and scrub."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def wait_status(page, pattern: str, timeout_ms: int = 300_000) -> str:
    page.wait_for_function(
        """(pat) => { const el = document.querySelector('#data-status');
                      return el && new RegExp(pat, 'i').test(el.innerText); }""",
        arg=pattern, timeout=timeout_ms)
    return page.locator("#data-status").inner_text()


def test_load_dictation_play_audio_and_see_stats(app, browser_page, goto_app, open_tab, shot):
    page = goto_app(browser_page)
    open_tab(page, "Data")
    page.locator("#data-load").click()
    msg = wait_status(page, r"Loaded|error")
    assert "Loaded" in msg and "speech" in msg, msg
    assert "medtune-banner-ok" in page.locator("#data-status").inner_html()

    # statistics plot: plotly rendered a figure with the term-frequency panel
    page.locator("#data-stats-plot .js-plotly-plot").first.wait_for()
    assert "Medical term frequency" in page.locator("#data-stats-plot").inner_text()
    assert "page 1 of" in page.locator("#data-page-info").inner_text()
    # the table is virtualised: rows are div[role=row].virtual-row, only the visible ones exist
    page.wait_for_function("() => document.querySelectorAll('#data-table .virtual-row').length >= 5")

    # pick a row: the row view, audio player and waveform appear
    page.locator("#data-row input").fill("3")
    page.locator("#data-show-row").click()
    wait_status(page, r"Row 3:")
    page.locator("#data-wave .js-plotly-plot").first.wait_for()
    play = page.locator("#data-audio button[aria-label='Play']").first
    play.wait_for()
    play.click()
    # playback has started: the control turns into Pause (or the media element advances)
    page.wait_for_function(
        """() => { const root = document.querySelector('#data-audio');
                   const pause = root && root.querySelector("button[aria-label='Pause'], button[aria-label='pause']");
                   const a = root && root.querySelector('audio');
                   return !!pause || (a && a.currentTime > 0); }""", timeout=30_000)
    shot(page, "data-tab-dictation")

    # searching narrows the table
    page.locator("#data-search textarea, #data-search input").first.fill("levetiracetam")
    page.locator("#data-search textarea, #data-search input").first.press("Enter")
    page.wait_for_function(
        "() => /rows match/.test(document.querySelector('#data-page-info').innerText) && "
        "!/^1\\d{3} of/.test(document.querySelector('#data-page-info').innerText)")
    page.wait_for_function("() => [...document.querySelectorAll('#data-table .virtual-row')]"
                           ".every(r => /levetiracetam/i.test(r.innerText))")
    rows = page.locator("#data-table .virtual-row").all_inner_texts()
    assert rows and all("levetiracetam" in r.lower() for r in rows)
    assert page.external_requests == []


def test_validate_and_scrub_uploaded_file(app, browser_page, goto_app, open_tab, tmp_path):
    f = tmp_path / "notes.jsonl"
    f.write_text('{"prompt": "Patient John Smith, MRN 1234567, call 555-201-3344", "response": "Noted."}\n'
                 '{"prompt": "broken", \n'
                 '{"prompt": "What is INR?", "response": "A clotting test ratio."}\n')
    page = goto_app(browser_page)
    open_tab(page, "Data")
    page.get_by_label("Upload", exact=True).check()
    page.locator("#data-upload input[type=file]").set_input_files(str(f))
    page.locator("#data-load").click()
    msg = wait_status(page, r"Loaded|error", 120_000)
    assert "Loaded 2 examples" in msg and "1 row(s) had problems" in msg, msg
    page.get_by_role("button", name="Validation report").click()
    page.locator("#data-validate").click()
    page.wait_for_function("() => /line 2/.test(document.querySelector('#data-report').innerText)")
    assert "not valid JSON" in page.locator("#data-report").inner_text()
    page.get_by_role("button", name="PHI scrub").click()
    page.locator("#data-phi-preview").click()
    page.wait_for_function("() => /NAME 1/.test(document.querySelector('#data-phi-counts').innerText)")
    assert "[PHONE]" in page.locator("#data-phi-table").inner_text()

    # apply the scrub and save the result as a workspace dataset the Train tab can pick
    page.locator("#data-phi-apply").click()
    wait_status(page, r"Replaced 3 identifier", 60_000)
    page.get_by_role("button", name="Split and save").click()
    page.locator("#data-save-name input, #data-save-name textarea").first.fill("notes-clean")
    page.locator("#data-save").click()
    wait_status(page, r"Saved dataset notes-clean|error", 60_000)
    import json

    saved = app.workspace.datasets / "notes-clean"
    info = json.loads((saved / "dataset.json").read_text())
    assert info["seed"] == 1234 and sum(info["splits"].values()) == 2
    rows = [json.loads(x) for s in ("train", "validation", "test") if (saved / f"{s}.jsonl").exists()
            for x in (saved / f"{s}.jsonl").read_text().splitlines()]
    assert any(r["prompt"] == "Patient [NAME], MRN [MRN], call [PHONE]" for r in rows)
