"""The app shell in a real browser: title, header, every tab, no off-machine requests."""

from __future__ import annotations

import pytest

from ui.app import TABS, TITLE

pytestmark = pytest.mark.browser


def test_every_tab_is_shown_and_opens(browser_page, goto_app, open_tab, shot):
    page = goto_app(browser_page)
    assert page.title() == TITLE
    assert page.get_by_role("heading", name=TITLE).is_visible()
    labels = [label for label, _ in TABS]
    for label in labels:
        assert page.get_by_role("tab", name=label, exact=True).count() >= 1, f"tab {label} missing"
    for label, module in TABS:
        open_tab(page, label)
        assert page.locator(f"#tab-{module}").is_visible()
        shot(page, f"tab-{module}")
    # The page loaded fonts, scripts and styles from the app only: nothing left the machine.
    assert page.external_requests == []
