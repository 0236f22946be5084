"""The dashboard's product pages in real headless Chromium, at 1280 and 390 px, with
screenshots in test-artifacts/screenshots/: usage charts with the range picker, usage
per team, the request log and one request, provider prices and "test connection",
the key page's reload, confirmation dialogs (with and without JavaScript), the 404
page, and the members table on a phone.

As in test_browser.py, the database is set up before Playwright starts (its sync API
runs an event loop in this thread, where Django refuses ORM calls).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.dashboard.test_browser import _login, _shot, browser  # noqa: F401
from tests.gateway.conftest import UPSTREAM_SECRET

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


@dataclass
class Product:
    account_id: str
    detail_id: str
    request_id: str


@pytest.fixture
def product(transactional_db, cast, fake_upstream) -> Product:
    from django.utils import timezone

    from audit.models import Payload, UsageRecord
    from audit.rollups import usage_rollup
    from audit.services import record
    from inferia import crypto
    from inferia.request_meta import RequestMeta
    from keys import services
    from orgs.access import resolve_member
    from orgs.models import Membership, Organization
    from orgs.scoping import org_scope
    from orgs.services import tenancy

    host = fake_upstream.url.removeprefix("http://")
    Organization.objects.filter(pk=cast.acme.pk).update(
        settings={"allowed_private_hosts": [host], "payload_logging": True}
    )
    cast.acme.refresh_from_db()
    owner = resolve_member(cast.acme, cast.alice)
    with org_scope(cast.acme):
        account = services.provider_account_create(
            access=owner,
            name="openai-main",
            provider_type="openai",
            base_url=f"{fake_upstream.url}/v1",
            api_version="",
            models=[{"name": "gpt-4o"}, {"name": "gpt-4o-mini"}],
            tags={},
            secret=UPSTREAM_SECRET,
        )
        team = tenancy.team_create(access=owner, name="ML platform", slug="ml", description="")
        tenancy.team_member_add(
            access=owner, team=team, membership=Membership.objects.get(user=cast.bob)
        )
    now = timezone.now()
    calls = [
        (cast.alice, "openai-main/gpt-4o", "ifr_alice1", 200, 180.0, 0.004),
        (cast.alice, "openai-main/gpt-4o-mini", "ifr_alice1", 200, 90.0, 0.001),
        (cast.bob, "openai-main/gpt-4o", "ifr_bob0001", 200, 240.0, 0.006),
        (cast.bob, "openai-main/gpt-4o", "ifr_bob0001", 502, 1200.0, 0.0),
        (cast.bob, "openai-main/gpt-4o-mini", "ifr_bob0001", 429, 5.0, 0.0),
    ]
    records = []
    for index, (user, model, key, status, latency_ms, cost) in enumerate(calls * 3):
        records.append(
            UsageRecord.objects.create(
                created_at=now - timedelta(hours=index % 20, minutes=index),
                org=cast.acme,
                request_id=f"req-{index:03d}-{uuid.uuid4().hex[:6]}",
                endpoint="chat",
                model=model,
                provider_account="openai-main",
                key_prefix=key,
                user_id=user.pk,
                status_code=status,
                error_code="UPSTREAM_ERROR" if status == 502 else "",
                prompt_tokens=12 * (index + 1),
                completion_tokens=30,
                cost=cost,
                latency_ms=latency_ms,
            )
        )
    detail = records[0]
    record(
        action="inference:run",
        outcome="allowed",
        org=cast.acme,
        actor=cast.alice,
        status_code=200,
        meta=RequestMeta(request_id=detail.request_id),
        data={"model": detail.model},
    )
    payload = Payload(org_id=cast.acme.pk, usage_id=detail.pk, request_id=detail.request_id)
    body = {
        "request": {"messages": [{"role": "user", "content": "Summarise the Q3 report"}]},
        "response": {"choices": [{"message": {"content": "Revenue grew."}}]},
    }
    payload.encrypted = crypto.encrypt(json.dumps(body).encode(), context=payload.context())
    payload.save()
    for hours in range(0, 21):
        moment = now - timedelta(hours=hours)
        usage_rollup(period="hour", moment=moment)
        usage_rollup(period="day", moment=moment)
    return Product(
        account_id=str(account.pk), detail_id=str(detail.pk), request_id=detail.request_id
    )


def _fits(page, width: int = 390) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def test_product_pages_at_1280_and_390(product, cast, gateway_server, browser):  # noqa: F811
    base = gateway_server.url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _login(page, base, "alice")

    # Usage: the range picker and grouping per team.
    page.goto(f"{base}/orgs/acme/usage")
    nav = page.get_by_role("navigation", name="Organization")
    assert nav.locator('[aria-current="page"]').inner_text() == "Usage"
    page.get_by_label("Time range").select_option("24h")
    page.get_by_label("Group by").select_option("team")
    page.get_by_role("button", name="Show").click()
    page.wait_for_selector('[data-testid="usage-groups"]')
    groups = page.get_by_test_id("usage-groups").inner_text()
    assert "ml" in groups and "(no team)" in groups
    for title in ("Requests an hour", "Cost an hour", "Latency p95 an hour"):
        assert page.get_by_role("img", name=title).is_visible()
    _shot(page, "10-usage-24h-by-team")
    today = page.evaluate("new Date().toISOString().slice(0, 10)")
    page.get_by_label("Time range").select_option("custom")
    page.get_by_label("From (custom)").fill(today)
    page.get_by_label("To (custom)").fill(today)
    page.get_by_label("Group by").select_option("model")
    page.get_by_role("button", name="Show").click()
    page.wait_for_selector('[data-testid="usage-groups"]')
    assert "openai-main/gpt-4o" in page.get_by_test_id("usage-groups").inner_text()
    _shot(page, "11-usage-custom-by-model")

    # Team usage on the team page.
    page.goto(f"{base}/orgs/acme/teams")
    assert "requests" in page.get_by_test_id("team-usage").first.inner_text()
    _shot(page, "12-teams-usage")

    # The request log: filter by status, open one request (audit record and payload).
    page.goto(f"{base}/orgs/acme/requests")
    assert page.locator('[data-testid="request-log"] tbody tr').count() == 15
    page.get_by_label("Status").fill("5xx")
    page.get_by_role("button", name="Show").click()
    page.wait_for_selector('[data-testid="request-log"]')
    assert page.locator('[data-testid="request-log"] tbody tr').count() == 3
    _shot(page, "13-request-log-5xx")
    page.goto(f"{base}/orgs/acme/requests/{product.detail_id}")
    assert product.request_id in page.get_by_role("heading", level=1).inner_text()
    assert "inference:run" in page.get_by_test_id("request-audit").inner_text()
    assert "Summarise the Q3 report" in page.get_by_test_id("request-payload").inner_text()
    _shot(page, "14-request-detail")

    # Provider: prices, then "test connection" against the fake upstream.
    page.goto(f"{base}/orgs/acme/provider-accounts/{product.account_id}")
    page.get_by_label("gpt-4o: input price per million tokens").fill("2.5")
    page.get_by_label("gpt-4o: output price per million tokens").fill("10")
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("text=Provider account openai-main saved.")
    assert page.get_by_label("gpt-4o: output price per million tokens").input_value() == "10.0"
    page.get_by_role("button", name="Test connection").click()
    page.wait_for_selector("text=Connection test passed.")
    assert UPSTREAM_SECRET not in page.content()
    _shot(page, "15-provider-prices-test-connection")

    # A new key: the reload shows "already shown", never a second key or the secret.
    page.goto(f"{base}/orgs/acme/api-keys")
    assert page.get_by_label("inference:stream").is_checked()
    page.get_by_label("Name").fill("reload-check")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("new-key-secret").input_value()
    page.reload()
    assert page.get_by_test_id("key-already-shown").is_visible()
    assert secret not in page.content()
    page.goto(f"{base}/orgs/acme/api-keys")
    assert page.locator("td", has_text="reload-check").count() == 1
    _shot(page, "16-api-keys-scopes")

    # Destructive actions ask in a dialog; Cancel changes nothing.
    page.goto(f"{base}/orgs/acme/members")
    vera_row = page.locator("tr", has_text="vera")
    vera_row.get_by_role("button", name="Remove").click()
    dialog = page.locator("dialog#confirm-dialog")
    assert dialog.is_visible() and "Remove vera from Acme?" in dialog.inner_text()
    _shot(page, "17-confirm-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    assert not dialog.is_visible() and page.locator("tr", has_text="vera").count() == 1
    vera_row.get_by_role("button", name="Remove").click()
    dialog.get_by_role("button", name="Remove").click()
    page.wait_for_selector("text=vera was removed.")

    # An unknown dashboard URL: the site's 404 page.
    response = page.goto(f"{base}/orgs/acme/no-such-page")
    assert response.status == 404 and "text/html" in response.headers["content-type"]
    assert page.get_by_role("heading", name="Not found").is_visible()
    _shot(page, "18-not-found")

    # On a phone: the members table fits; the new pages are screenshotted.
    page.set_viewport_size(PHONE)
    page.goto(f"{base}/orgs/acme/members")
    assert _fits(page) <= 390, _fits(page)
    # The table itself fits (rows stack), not only the page around a scrolled table.
    table_width = page.evaluate("document.querySelector('table.stack').scrollWidth")
    assert table_width <= 390 - 16, table_width
    _shot(page, "19-members-phone")
    for path, name in (
        ("/orgs/acme/usage?range=7d&group=user", "20-usage-phone"),
        ("/orgs/acme/requests", "21-request-log-phone"),
        (f"/orgs/acme/requests/{product.detail_id}", "22-request-detail-phone"),
        (f"/orgs/acme/provider-accounts/{product.account_id}", "23-provider-phone"),
    ):
        page.goto(f"{base}{path}")
        assert _fits(page) <= 390, (path, _fits(page))
        _shot(page, name)
    context.close()

    # Without JavaScript the confirmation is a page; its button does it.
    nojs = browser.new_context(java_script_enabled=False, viewport=PHONE)
    plain = nojs.new_page()
    _login(plain, base, "alice")
    plain.goto(f"{base}/orgs/acme/teams")
    plain.get_by_role("button", name="Delete team").click()
    assert plain.get_by_role("heading", name="Delete team ML platform?").is_visible()
    _shot(plain, "24-confirm-page-no-js")
    plain.get_by_role("button", name="Yes, delete it").click()
    plain.wait_for_selector("text=Team ML platform deleted.")
    nojs.close()
