"""Who may scrape ``/metrics`` and what each one sees: the operator's token everything;
a credential of an org holding ``metrics:read`` only that org's series, never another
org's nor a global one; everyone else a refusal in the contract's envelope, audited."""

from __future__ import annotations

import httpx
import pytest

from audit.models import AuditRecord
from orgs.services import auth
from tests.conftest import client_for
from tests.gateway.conftest import UPSTREAM_SECRET
from tests.keys.conftest import mint
from tests.observability.conftest import SCRAPE_TOKEN

CHAT = [{"role": "user", "content": "hi"}]


def _envelope(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert SCRAPE_TOKEN not in response.text
    assert "inferia_gateway" not in response.text


@pytest.fixture
def two_orgs_called(llm, cast):
    """A chat call in Acme (bob's key) and one in Globex (charlie's), each through its
    own provider account on the fake upstream."""
    port = llm.upstream.url.rsplit(":", 1)[1]
    charlie = client_for(cast.charlie)
    assert (
        charlie.patch(
            "/api/v1/orgs/globex",
            {"settings": {"allowed_private_hosts": [f"127.0.0.1:{port}"]}},
            format="json",
        ).status_code
        == 200
    )
    created = charlie.post(
        "/api/v1/orgs/globex/provider-accounts",
        {
            "name": "globex-llm",
            "provider_type": "openai",
            "base_url": f"{llm.upstream.url}/v1",
            "models": [{"name": "gpt-4o"}],
            "secret": UPSTREAM_SECRET,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    granted = charlie.post(
        "/api/v1/orgs/globex/access-rules",
        {"models": ["globex-llm/*"], "users": ["charlie"]},
        format="json",
    )
    assert granted.status_code == 201, granted.content
    globex_key = mint(charlie, "globex", permissions=["inference:run"])["key"]
    acme_key = llm.key()
    for key, model in ((acme_key, "openai-main/gpt-4o"), (globex_key, "globex-llm/gpt-4o")):
        answer = llm.post("/chat/completions", key, {"model": model, "messages": CHAT})
        assert answer.status_code == 200, answer.text
    return llm


def test_the_operators_token_sees_every_org_and_the_global_series(two_orgs_called, scrape):
    page = scrape.page(SCRAPE_TOKEN)
    orgs = {labels.get("org") for _, labels, _ in page.samples}
    assert {"acme", "globex"} <= orgs
    assert page.value("inferia_gateway_requests_total", org="globex") >= 1
    assert "inferia_usage_dead_letters_stored" in page.families
    assert "process_cpu_seconds_total" in page.text or "python_gc_objects_collected" in page.text


def test_a_key_with_metrics_read_sees_only_its_org(two_orgs_called, scrape, cast):
    for permissions in (["metrics:read"], ["read_metrics"]):
        key = mint(client_for(cast.bob), permissions=permissions)["key"]
        page = scrape.page(key)
        assert page.samples
        assert page.value("inferia_gateway_requests_total", org="acme") >= 1
        # Every sample is Acme's: no Globex series, no global (unlabelled) series.
        assert {labels.get("org") for _, labels, _ in page.samples} == {"acme"}
        assert "globex" not in page.text
        assert "inferia_usage_stream_length" not in page.families
        assert "process_cpu_seconds_total" not in page.text
        record = AuditRecord.objects.filter(action="metrics:read").latest("created_at")
        assert (record.outcome, record.org_id, record.status_code) == ("allowed", cast.acme.pk, 200)
        assert key not in str(record.data) and key.split("_")[1] in record.actor_label


def test_a_key_naming_another_org_finds_nothing(two_orgs_called, scrape, cast):
    key = mint(client_for(cast.bob), permissions=["metrics:read"])["key"]
    _envelope(scrape(key, org="globex"), 404, "NOT_FOUND")
    assert scrape(key, org="acme").status_code == 200


def test_an_access_token_picks_its_org_with_the_org_parameter(two_orgs_called, scrape, cast):
    alice = auth.token_pair_issue(user=cast.alice).access_token
    page = scrape.page(alice, org="acme")
    assert {labels.get("org") for _, labels, _ in page.samples} == {"acme"}
    # Alice is in Acme only: the org may be left out.
    assert {labels.get("org") for _, labels, _ in scrape.page(alice).samples} == {"acme"}
    charlie = auth.token_pair_issue(user=cast.charlie).access_token
    page = scrape.page(charlie, org="globex")
    assert {labels.get("org") for _, labels, _ in page.samples} == {"globex"}
    # Not a member of Acme: the same 404 as an org that does not exist.
    _envelope(scrape(charlie, org="acme"), 404, "NOT_FOUND")
    _envelope(scrape(charlie, org="no-such-org"), 404, "NOT_FOUND")
    for hostile in ("acme' OR '1'='1", "../acme", "acme\x00", "a" * 5000, "%", "*"):
        _envelope(scrape(charlie, org=hostile), 404, "NOT_FOUND")
    denied = AuditRecord.objects.filter(action="auth:metrics", outcome="denied")
    assert denied.filter(status_code=404).count() >= 8


def test_a_viewer_may_scrape(two_orgs_called, scrape, cast):
    vera = auth.token_pair_issue(user=cast.vera).access_token
    page = scrape.page(vera, org="acme")
    assert {labels.get("org") for _, labels, _ in page.samples} == {"acme"}


def test_a_credential_without_metrics_read_is_403_and_audited(two_orgs_called, scrape, cast):
    key = mint(client_for(cast.bob), permissions=["inference:run"])["key"]
    _envelope(scrape(key), 403, "PERMISSION_DENIED")
    record = AuditRecord.objects.filter(action="metrics:read").latest("created_at")
    assert (record.outcome, record.org_id, record.status_code) == ("denied", cast.acme.pk, 403)


def test_no_credential_or_a_wrong_one_is_401(two_orgs_called, scrape, settings):
    before = AuditRecord.objects.filter(action="auth:metrics").count()
    for credential in (None, SCRAPE_TOKEN + "x", SCRAPE_TOKEN[:-1], "ifr_x", "not-a-token"):
        response = scrape(credential)
        _envelope(response, 401, "AUTHENTICATION_FAILED")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert AuditRecord.objects.filter(action="auth:metrics", status_code=401).count() == before + 5
    # The token unset: that way in is off, the old token is just a wrong credential.
    settings.INFERIA_METRICS_TOKEN = ""
    _envelope(scrape(SCRAPE_TOKEN), 401, "AUTHENTICATION_FAILED")
    _envelope(scrape(""), 401, "AUTHENTICATION_FAILED")


def test_two_different_credentials_are_refused(two_orgs_called, gateway_server, cast):
    key = mint(client_for(cast.bob), permissions=["metrics:read"])["key"]
    response = httpx.get(
        f"{gateway_server.url}/metrics",
        headers={"Authorization": f"Bearer {SCRAPE_TOKEN}", "X-API-Key": key},
        timeout=30,
    )
    _envelope(response, 401, "AUTHENTICATION_FAILED")


def test_metrics_off_is_404_for_everyone(scrape, settings, llm):
    llm.post("/chat/completions", llm.key(), {"model": "openai-main/gpt-4o", "messages": CHAT})
    settings.INFERIA_METRICS_ENABLED = False
    _envelope(scrape(SCRAPE_TOKEN), 404, "NOT_FOUND")
    _envelope(scrape(None), 404, "NOT_FOUND")


def test_metrics_off_records_nothing(scrape, settings, llm):
    key = llm.key()
    before = scrape.page(SCRAPE_TOKEN).value("inferia_gateway_requests_total")
    settings.INFERIA_METRICS_ENABLED = False
    answer = llm.post("/chat/completions", key, {"model": "openai-main/gpt-4o", "messages": CHAT})
    assert answer.status_code == 200
    scrape.settled()  # the call's end, where it would be recorded, is behind it
    settings.INFERIA_METRICS_ENABLED = True
    assert scrape.page(SCRAPE_TOKEN).value("inferia_gateway_requests_total") == before


def test_only_get(scrape, gateway_server):
    response = httpx.post(
        f"{gateway_server.url}/metrics",
        headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"},
        timeout=30,
    )
    _envelope(response, 405, "METHOD_NOT_ALLOWED")
