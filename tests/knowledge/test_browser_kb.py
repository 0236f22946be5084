"""A knowledge base in real headless Chromium: create it, upload a file with the progress
bar, watch it become ready, run a test query (Playwright driving Debian's chromium)."""

from __future__ import annotations

import pytest

from tests.dashboard.test_browser import _login, _shot, browser  # noqa: F401
from tests.knowledge.conftest import EMBED_MODEL

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HANDBOOK = (
    "# Handbook\n\nVacation policy: every employee gets twenty five days of paid vacation.\n\n"
    "Expense reports are filed monthly through the finance portal.\n"
)


def test_create_upload_with_progress_and_query(kb_world, gateway_server, browser, tmp_path):  # noqa: F811
    base = gateway_server.url
    file = tmp_path / "handbook.md"
    file.write_text(HANDBOOK)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _login(page, base, "alice")
    page.goto(f"{base}/orgs/acme/")
    page.get_by_role("link", name="Knowledge bases").click()
    page.get_by_label("Name").fill("handbook")
    page.get_by_label("Embedding model").select_option(EMBED_MODEL)
    page.get_by_role("button", name="Create knowledge base").click()
    page.wait_for_selector("text=Knowledge base handbook created.")

    page.get_by_label("File").set_input_files(str(file))
    page.get_by_label("Metadata").fill('{"team": "hr"}')
    page.get_by_role("button", name="Upload").click()
    # The script shows the bar, then polls the document's progress until it is ready
    # and reloads the page.
    page.wait_for_selector("[data-upload-progress]:not([hidden])")
    try:
        page.wait_for_selector("#documents >> text=handbook.md", timeout=30_000)
    except Exception:
        _shot(page, "kb-00-upload-failed")
        raise AssertionError(page.locator("[data-upload-text]").inner_text()) from None
    row = page.locator("#documents tbody tr", has_text="handbook.md")
    assert "Ready" in row.inner_text()
    _shot(page, "kb-01-uploaded")

    page.get_by_label("Query").fill("how many days of paid vacation")
    page.get_by_role("button", name="Search").click()
    results = page.locator("#query-results")
    results.wait_for()
    assert "twenty five days of paid vacation" in results.inner_text()
    _shot(page, "kb-02-query")
    context.close()
