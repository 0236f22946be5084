"""The owner's journey in real headless Chromium (Playwright driving Debian's chromium).

The app is served by uvicorn in a thread (the gateway tests' ServerThread); the
database is set up before Playwright starts, because Playwright's sync API runs
an event loop in this thread and Django refuses ORM calls inside one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, require_or_skip
from tests.gateway.conftest import UPSTREAM_SECRET

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def _totp(seed: bytes) -> str:
    from django_otp.oath import TOTP

    generator = TOTP(seed, step=30, digits=6)
    generator.time = time.time()
    return str(generator.token()).zfill(6)


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        require_or_skip("the browser tests need Debian's chromium at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def owner_seed(transactional_db, cast) -> bytes:
    """Alice has a confirmed authenticator; returns its seed (computed codes need no database)."""
    from orgs.models import TOTPDevice
    from orgs.services import two_factor

    two_factor.totp_setup(user=cast.alice)
    TOTPDevice.objects.filter(user=cast.alice).update(confirmed=True)
    return TOTPDevice.objects.get(user=cast.alice).seed_plaintext()


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _login(page, base: str, username: str, seed: bytes | None = None) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    if seed is not None:
        page.get_by_label("Code from your authenticator app").fill(_totp(seed))
        page.get_by_role("button", name="Verify").click()
    page.wait_for_selector(f"text=Signed in as {username}")


def test_owner_journey_and_viewer_limits(owner_seed, cast, fake_upstream, gateway_server, browser):
    from openai import OpenAI

    base = gateway_server.url
    upstream_host = fake_upstream.url.removeprefix("http://")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    # Log in with the TOTP step.
    page.goto(f"{base}/login")
    _shot(page, "01-login")
    _login(page, base, "alice", owner_seed)
    page.goto(f"{base}/orgs/acme/")
    assert page.get_by_role("link", name="API keys").is_visible()

    # Private endpoints: the fake upstream listens on 127.0.0.1.
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Private endpoints allowed as provider base URLs").fill(upstream_host)
    page.get_by_role("button", name="Save settings").click()
    page.wait_for_selector("text=Settings saved.")
    _shot(page, "02-settings")

    # Register the provider account; the secret field is write-only.
    page.get_by_role("link", name="Providers").click()
    page.get_by_label("Name").fill("openai-main")
    page.get_by_label("Provider type").select_option("openai")
    page.get_by_label("Base URL").fill(f"{fake_upstream.url}/v1")
    page.get_by_label("Enabled models").fill("gpt-4o gpt-4o-mini")
    page.get_by_label("Upstream API key").fill(UPSTREAM_SECRET)
    page.get_by_role("button", name="Create provider account").click()
    page.wait_for_selector("text=Provider account openai-main created.")
    assert UPSTREAM_SECRET not in page.content()
    _shot(page, "03-providers")

    # Grant the model with a YAML import.
    page.get_by_role("link", name="Model access").click()
    page.get_by_label("Access rules (YAML)").fill(
        "authz_rules:\n  - models: [openai-main/gpt-4o]\n    users: [alice]\n"
    )
    page.get_by_role("button", name="Import rules").click()
    # Replacing every rule asks first, in a dialog.
    dialog = page.locator("dialog#confirm-dialog")
    assert dialog.is_visible() and "Replace every access rule" in dialog.inner_text()
    dialog.get_by_role("button", name="Import rules").click()
    page.wait_for_selector("text=Access rules imported.")
    assert (
        "openai-main/gpt-4o" in page.locator("section", has_text="Models you may use").inner_text()
    )
    _shot(page, "04-access-rules")

    # Mint a key; copy the secret from the page (shown once).
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("journey")
    page.get_by_label("inference:run").check()
    page.get_by_role("button", name="Create key").click()
    secret_box = page.get_by_test_id("new-key-secret")
    secret = secret_box.input_value()
    assert secret.startswith("ifr_")
    assert page.get_by_role("button", name="Copy").is_visible()
    _shot(page, "05-key-created")
    page.get_by_role("link", name="Done, back to the keys").click()
    assert secret not in page.content()

    # Call the gateway with the OpenAI SDK and that key.
    client = OpenAI(api_key=secret, base_url=f"{base}/api/llm/v1", max_retries=0, timeout=30)
    reply = client.chat.completions.create(
        model="openai-main/gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content

    # The call is in the audit log (with Redis, once the worker's ingest ran: run it
    # here, in a thread because Playwright's loop owns this one).
    import threading

    from tests.gateway.conftest import flush_usage

    ingest = threading.Thread(target=flush_usage)
    ingest.start()
    ingest.join(timeout=30)
    page.goto(f"{base}/orgs/acme/audit-log?model=openai-main/gpt-4o")
    row = page.locator("table.audit tbody tr").first
    assert "inference:run" in row.inner_text()
    assert "openai-main/gpt-4o" in row.inner_text()
    _shot(page, "06-audit-log")
    page.goto(f"{base}/orgs/acme/")
    _shot(page, "07-overview")
    page.set_viewport_size({"width": 390, "height": 844})
    _shot(page, "08-overview-phone")
    context.close()

    # A Viewer: no link to keys or providers, and the pages answer 403.
    viewer = browser.new_context()
    vpage = viewer.new_page()
    _login(vpage, base, "vera")
    vpage.goto(f"{base}/orgs/acme/")
    nav = vpage.get_by_role("navigation", name="Organization")
    assert nav.get_by_role("link", name="Overview").is_visible()
    assert nav.get_by_role("link", name="API keys").count() == 0
    assert nav.get_by_role("link", name="Providers").count() == 0
    _shot(vpage, "09-viewer-overview")
    for path in ("/orgs/acme/api-keys", "/orgs/acme/provider-accounts"):
        response = vpage.goto(f"{base}{path}")
        assert response.status == 403
        assert vpage.get_by_role("heading", name="Permission denied").is_visible()
    viewer.close()
