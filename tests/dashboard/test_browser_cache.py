"""The Response cache page in real headless Chromium, on Redis: the owner turns the
cache on, the gateway then answers a repeated request from it, the page counts the hit,
and a purge asks in a dialog first.

As in test_browser.py, everything that needs the ORM happens in fixtures, before
Playwright starts (its sync API runs an event loop in this thread)."""

from __future__ import annotations

import httpx
import pytest

from tests.dashboard.test_browser import _login, _shot, browser  # noqa: F401

pytestmark = pytest.mark.browser

GPT4O = "openai-main/gpt-4o"


@pytest.fixture
def cache_key(on_redis, llm) -> str:
    """An inference key of Acme's, minted before the browser starts."""
    return llm.key()


def test_owner_turns_the_cache_on_sees_the_hit_and_purges(
    cache_key,
    gateway_server,
    browser,  # noqa: F811
):
    base = gateway_server.url
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    _login(page, base, "alice")
    page.goto(f"{base}/orgs/acme/")
    page.get_by_role("navigation", name="Organization").get_by_role(
        "link", name="Response cache"
    ).click()
    assert page.get_by_test_id("cache-state").inner_text().startswith("Off")

    page.get_by_label("Cache answers for this organization").check()
    page.get_by_label("Time to live (seconds)").fill("600")
    page.get_by_role("button", name="Save cache settings").click()
    page.wait_for_selector("text=Cache settings saved.")
    assert page.get_by_test_id("cache-state").inner_text().startswith("On")

    def ask() -> httpx.Response:
        return httpx.post(
            f"{base}/api/llm/v1/chat/completions",
            json={"model": GPT4O, "messages": [{"role": "user", "content": "Say hello"}]},
            headers={"Authorization": f"Bearer {cache_key}"},
            timeout=30,
        )

    assert ask().headers["X-Inferia-Cache"] == "miss"
    assert ask().headers["X-Inferia-Cache"] == "hit"
    page.reload()
    assert page.get_by_test_id("cache-entries").inner_text() == "1"
    assert page.get_by_test_id("cache-hits").inner_text() == "1"
    assert page.get_by_test_id("cache-hit-rate").inner_text() == "50%"
    _shot(page, "30-response-cache")

    # The purge asks in a dialog; cancelled, nothing is dropped.
    page.get_by_label("Model").fill(GPT4O)
    page.get_by_role("button", name="Purge").click()
    dialog = page.locator("dialog#confirm-dialog")
    assert dialog.is_visible() and "Purge these cached answers?" in dialog.inner_text()
    dialog.get_by_role("button", name="Cancel").click()
    assert ask().headers["X-Inferia-Cache"] == "hit"
    page.get_by_role("button", name="Purge").click()
    dialog.get_by_role("button", name="Purge").click()
    page.wait_for_selector(f"text=1 cached answer purged ({GPT4O}).")
    assert page.get_by_test_id("cache-entries").inner_text() == "0"
    assert ask().headers["X-Inferia-Cache"] == "miss"
