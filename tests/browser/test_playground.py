"""The Playground tab in a real browser, on the real embedded models.

Transcribe a clip synthesized with eSpeak (uploaded as FLAC), ask SmolLM2 a question, and
check that bad input (corrupt audio, missing file, a path out of the workspace, an unknown
model, a hub id that cannot be fetched offline) gives a clear message and the app keeps serving.
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

SENTENCE = "The patient has a mild fever and a dry cough."


def pick_model(page, name: str) -> None:
    """Choose ``name`` in the model dropdown (typing it works for custom values too)."""
    box = page.locator("#pg-model input")
    box.click()
    box.fill(name)
    options = page.get_by_role("option")
    texts = [t.replace("✓", "").strip() for t in options.all_inner_texts()]
    match = [i for i, t in enumerate(texts) if t == name or t.startswith(name + " (")]
    if match:
        options.nth(match[0]).click()
    else:  # a custom value (hub id, path): confirm it
        box.press("Enter")
    box.blur()


def status_text(page) -> str:
    return page.locator("#pg-status").inner_text()


def wait_status(page, pattern: str, *, before: str | None = None, timeout_ms: int = 300_000) -> str:
    """Wait until the status banner matches ``pattern`` (regex, case-insensitive), or, when
    ``before`` (the banner's HTML before the click) is given, until it turns into a different
    error banner (so a failure is reported at once instead of after the timeout)."""
    page.wait_for_function(
        """([pat, before]) => { const el = document.querySelector('#pg-status');
              if (!el) return false;
              if (new RegExp(pat, 'i').test(el.innerText)) return true;
              return before !== null && el.innerHTML !== before && !!el.querySelector('.medtune-banner-error'); }""",
        arg=[pattern, before], timeout=timeout_ms)
    return status_text(page)


def status_html(page) -> str:
    return page.locator("#pg-status").inner_html()


def wait_clip_ready(page) -> str:
    """Wait until the uploaded/recorded clip reached the server (or was refused)."""
    page.wait_for_function(
        "() => /Clip ready|cannot/i.test((document.querySelector('#pg-clip') || {}).innerText || '')")
    return page.locator("#pg-clip").inner_text()


def textbox_value(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea").input_value()


@pytest.fixture
def clip(tmp_path):
    from engine.audio import write_flac
    from engine.tts import synthesize

    path = tmp_path / "dictation.flac"
    write_flac(path, synthesize(SENTENCE))
    return path


def test_transcribe_uploaded_clip(browser_page, goto_app, shot, clip):
    page = goto_app(browser_page)
    pick_model(page, "whisper-tiny.en")
    page.locator("#pg-transcribe").first.wait_for(state="visible")
    page.locator("#pg-audio input[type=file]").set_input_files(str(clip))
    assert "Clip ready: dictation.flac" in wait_clip_ready(page)
    before = status_html(page)
    page.locator("#pg-transcribe").first.click()
    wait_status(page, r"Transcribed", before=before)
    transcript = textbox_value(page, "pg-transcript").lower()
    shot(page, "playground-transcript")
    assert "medtune-banner-ok" in page.locator("#pg-status").inner_html(), status_text(page)
    from jiwer import wer

    words = re.sub(r"[^a-z ]", "", transcript).split()
    assert wer(re.sub(r"[^a-z ]", "", SENTENCE.lower()), " ".join(words)) <= 0.25, transcript
    assert page.external_requests == []


def test_record_from_microphone_then_transcribe(app, browser_page, goto_app):
    """Chromium's fake microphone plays a beep: the recording reaches the server as a WAV
    inside the workspace, decodes, and goes through the model without an error."""
    wavs_before = set(app.workspace.uploads.rglob("*.wav"))
    page = goto_app(browser_page)
    pick_model(page, "whisper-tiny.en")
    page.locator("#pg-audio button[aria-label='Record audio']").click()
    page.locator("#pg-audio button:visible", has_text="Record").first.click()
    page.wait_for_timeout(2000)
    page.locator("#pg-audio button:visible", has_text="Stop").first.click()
    assert "Clip ready" in wait_clip_ready(page)
    before = status_html(page)
    page.locator("#pg-transcribe").first.click()
    msg = wait_status(page, r"Transcribed", before=before)
    assert "medtune-banner-ok" in page.locator("#pg-status").inner_html(), msg
    recorded = set(app.workspace.uploads.rglob("*.wav")) - wavs_before
    assert recorded, "the recording did not land in the workspace"
    from engine.audio import audio_info

    assert audio_info(recorded.pop())["duration"] > 0.5


def test_ask_smollm2(browser_page, goto_app, shot):
    page = goto_app(browser_page)
    pick_model(page, "smollm2-135m-instruct")
    page.locator("#pg-settings").get_by_text("Generation settings").click()
    tokens = page.locator("#pg-max-new-tokens input[type=number]")
    tokens.fill("48")
    tokens.press("Enter")
    page.locator("#pg-question textarea").fill("What is hypertension?")
    # Record every distinct value the answer box shows: a streamed answer grows in steps.
    page.evaluate("""() => { window.__seen = new Set();
        window.__poll = setInterval(() => { const t = document.querySelector('#pg-answer textarea');
            if (t && t.value) window.__seen.add(t.value); }, 30); }""")
    before = status_html(page)
    page.locator("#pg-ask").click()
    wait_status(page, r"Answer: \d+ characters", before=before)
    answer = textbox_value(page, "pg-answer")
    seen = page.evaluate("() => { clearInterval(window.__poll); return [...window.__seen]; }")
    assert len(seen) >= 2 and all(answer.startswith(v.rstrip()) for v in seen), seen
    shot(page, "playground-answer")
    assert "medtune-banner-ok" in page.locator("#pg-status").inner_html(), status_text(page)
    assert re.search(r"blood|pressure|heart", answer, re.I), answer


def test_stop_then_ask_again(browser_page, goto_app):
    """Stop cuts a long answer short and frees the model for the next question."""
    page = goto_app(browser_page)
    pick_model(page, "smollm2-135m-instruct")
    page.locator("#pg-settings").get_by_text("Generation settings").click()
    tokens = page.locator("#pg-max-new-tokens input[type=number]")
    tokens.fill("400")
    tokens.press("Enter")
    page.locator("#pg-question textarea").fill("Write a long essay about the history of medicine.")
    page.locator("#pg-ask").click()
    page.wait_for_function("() => (document.querySelector('#pg-answer textarea') || {}).value?.length > 0")
    page.locator("#pg-stop").click()
    page.wait_for_timeout(1500)
    stopped = textbox_value(page, "pg-answer")
    page.wait_for_timeout(1500)
    assert textbox_value(page, "pg-answer") == stopped  # nothing more arrives after Stop
    assert not re.search(r"Answer: \d+ characters", status_text(page))
    tokens.fill("16")
    tokens.press("Enter")
    page.locator("#pg-question textarea").fill("What is a fever?")
    before = status_html(page)
    page.locator("#pg-ask").click()
    wait_status(page, r"Answer: \d+ characters", before=before)
    assert "medtune-banner-ok" in page.locator("#pg-status").inner_html(), status_text(page)
    assert textbox_value(page, "pg-answer") and textbox_value(page, "pg-answer") != stopped


def test_bad_input_gives_clear_messages(app, browser_page, goto_app, shot, tmp_path):
    log_start = len(app.log())
    page = goto_app(browser_page)
    # Unknown model name: named, with the choices, before any loading.
    pick_model(page, "no-such-model")
    msg = wait_status(page, "Unknown model")
    assert "no-such-model" in msg and "whisper-tiny.en" in msg

    # A corrupt clip uploaded through the browser: the file is named, no traceback.
    pick_model(page, "whisper-tiny.en")
    page.locator("#pg-transcribe").first.wait_for(state="visible")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 64)
    page.locator("#pg-audio input[type=file]").set_input_files(str(junk))
    assert "junk.wav" in wait_clip_ready(page)  # refused as soon as it arrives...
    page.locator("#pg-transcribe").first.click()  # ...and again if transcribed anyway
    msg = wait_status(page, "cannot decode audio")
    assert "junk.wav" in msg
    shot(page, "playground-corrupt-audio")
    page.locator("#pg-audio button[aria-label='Clear']").first.click()

    # A missing file and a path out of the workspace, typed in the path box.
    path_box = page.locator("#pg-audio-path textarea, #pg-audio-path input").first
    path_box.fill("uploads/missing.wav")
    page.locator("#pg-transcribe").first.click()
    assert "does not exist" in wait_status(page, "does not exist")
    path_box.fill("../../../etc/passwd")
    page.locator("#pg-transcribe").first.click()
    assert "outside the workspace" in wait_status(page, "outside the workspace")

    # A hub id that cannot be fetched offline.
    pick_model(page, "nobody-here/not-a-model")
    wait_status(page, "Not loaded yet")  # the pick has settled before Load is pressed
    page.locator("#pg-load").click()
    msg = wait_status(page, "could not be found locally", timeout_ms=120_000)
    assert "medtune-banner-error" in page.locator("#pg-status").inner_html(), msg
    assert "Traceback" not in page.content()
    shot(page, "playground-offline-hub-id")

    # The app still serves.
    page.reload()
    page.get_by_role("tab", name="Playground").first.wait_for()
    # Every message above was an engine error, not a bug caught by the last-resort handler.
    assert "unexpected error in a UI handler" not in app.log()[log_start:], app.log()[log_start:][-3000:]
    assert page.external_requests == []
