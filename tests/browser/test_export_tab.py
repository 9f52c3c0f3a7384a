"""The Export tab in a real browser: export a merged model from a finished tiny run, download it."""

from __future__ import annotations

import json
import re
import zipfile

import pytest
from export_runs import make_run, tiny_llama

pytestmark = pytest.mark.browser


def test_export_merged_model_and_download_it(app, browser_page, goto_app, open_tab, shot, tmp_path):
    from playwright.sync_api import expect

    ws = app.workspace
    base = tiny_llama(ws.root / "models" / "tiny-llama")
    run = make_run(ws, base, name="browser-export",
                   eval_metrics={"base": {"accuracy": 0.4}, "tuned": {"accuracy": 0.6}})
    page = goto_app(browser_page)
    open_tab(page, "Export")
    page.locator("#export-refresh").click()
    page.locator("#export-run input").click()
    page.get_by_role("option", name=re.compile("browser-export")).click()
    expect(page.locator("#export-status")).to_contain_text("No export yet")
    # Default formats: merged model + adapter zip.
    page.locator("#export-start").click()
    expect(page.locator("#export-status")).to_contain_text("Export completed.", timeout=240_000)
    verification = page.locator("#export-verification")
    expect(verification).to_contain_text("merged (reloaded, no peft) vs base + adapter")
    expect(verification).to_contain_text("passed")
    page.get_by_text("Model card preview (README.md)").click()
    expect(page.locator("#export-card")).to_contain_text("not a medical device")
    expect(page.locator("#export-card")).to_contain_text("Accuracy")
    shot(page, "export-tab-done")

    with page.expect_download() as info:
        # Gradio renders the name as stem + extension spans; the size cell is the download link.
        page.locator("#export-files tr", has_text="merged").locator("a").first.click()
    saved = tmp_path / "merged.zip"
    info.value.save_as(saved)
    with zipfile.ZipFile(saved) as zf:
        zf.extractall(tmp_path / "unzipped")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "unzipped" / "merged")
    assert not any("lora_" in k for k in model.state_dict())
    ver = json.loads((run / "export" / "verification.json").read_text())
    assert ver["merged"]["passed"]
    assert page.external_requests == []
