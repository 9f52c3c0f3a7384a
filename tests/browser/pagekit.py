"""Page helpers shared by the browser tests (conftest fixtures cannot be imported as functions).

Selectors are the app's own elem_ids: ``#train-progress .train-points`` is the Train tab's
count of train-loss points, which the tests watch to see a live run's chart grow.
"""

from __future__ import annotations


def wait_text(page, selector: str, pattern: str, timeout_ms: int = 300_000) -> str:
    """Wait until ``selector``'s text matches the regex ``pattern`` (case-insensitive); the text."""
    page.wait_for_function(
        """([sel, pat]) => { const el = document.querySelector(sel);
              return !!el && new RegExp(pat, 'i').test(el.innerText); }""",
        arg=[selector, pattern], timeout=timeout_ms)
    return page.locator(selector).first.inner_text()


def pick(page, elem_id: str, value: str) -> None:
    """Choose the option containing ``value`` in the Gradio dropdown ``#elem_id``."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    page.get_by_role("option").filter(has_text=value).first.click()
    box.blur()


def fill(page, elem_id: str, value: str, enter: bool = False) -> None:
    """Type ``value`` into the Gradio textbox/number ``#elem_id`` (Enter submits when asked)."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(value)
    if enter:
        box.press("Enter")
    box.blur()


def points(page) -> int:
    """Train-loss points in the Train tab's chart of the selected run."""
    loc = page.locator("#train-progress .train-points")
    return int(loc.first.inner_text()) if loc.count() else 0


def wait_points_above(page, n: int, timeout_ms: int = 180_000) -> int:
    """Wait until the chart has more than ``n`` train-loss points; the count."""
    page.wait_for_function(
        """(n) => { const el = document.querySelector('#train-progress .train-points');
                    return el && parseInt(el.innerText) > n; }""", arg=n, timeout=timeout_ms)
    return points(page)
