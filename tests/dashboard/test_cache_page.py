"""The response cache's dashboard page (``/orgs/{org}/cache``): what the org's cache
holds, its settings and purges, through the same service as ``/api/v1/orgs/{org}/cache``
(docs/response-cache.md). Counts and purges on real Redis."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from orgs.models import Organization
from orgs.services.cache import NEEDS_REDIS
from tests.gateway.conftest import redis_url_or_skip
from tests.gateway.test_response_cache import GPT4O, MINI, ask, enable

PAGE = "/orgs/acme/cache"
PURGE = "/orgs/acme/cache/purge"
SETTINGS = {"enabled": "on", "ttl_seconds": "600", "max_bytes": "2048", "max_entry_bytes": "512"}


def _acme() -> Organization:
    return Organization.objects.get(slug="acme")


def _records(action: str) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(action=action).order_by("seq"))


@pytest.fixture
def embedded(settings):
    settings.REDIS_URL = ""


@pytest.fixture
def on_redis_page(settings):
    settings.REDIS_URL = redis_url_or_skip()


def test_embedded_the_page_says_redis_is_needed_and_turning_it_on_is_refused(embedded, alice_page):
    page = alice_page.get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert NEEDS_REDIS in html
    assert 'data-testid="cache-entries">0<' in html
    refused = alice_page.post(PAGE, SETTINGS)
    assert refused.status_code == 400
    assert NEEDS_REDIS in refused.content.decode()
    assert _acme().policy.cache_enabled is False
    assert _records("cache:update") == []


def test_the_owner_turns_it_on_and_sets_its_knobs(on_redis_page, alice_page, cast):
    response = alice_page.post(PAGE, SETTINGS, follow=True)
    assert response.status_code == 200
    assert "Cache settings saved." in response.content.decode()
    policy = _acme().policy
    assert (
        policy.cache_enabled,
        policy.cache_ttl_seconds,
        policy.cache_max_bytes,
        policy.cache_max_entry_bytes,
    ) == (True, 600, 2048, 512)
    [record] = _records("cache:update")
    assert record.actor_user_id == cast.alice.pk and record.outcome == "success"
    assert record.data["before"]["cache_enabled"] is None
    # The page and the API read the same settings.
    assert alice_page.get(PAGE).context["form"].initial["ttl_seconds"] == 600
    # Unticking the box turns it off again.
    alice_page.post(PAGE, {**SETTINGS, "enabled": ""})
    assert _acme().policy.cache_enabled is False


@pytest.mark.parametrize(
    "field,value",
    [
        ("ttl_seconds", "0"),
        ("ttl_seconds", str(7 * 24 * 3600 + 1)),
        ("max_bytes", "1023"),
        ("max_entry_bytes", str(16 * 1024 * 1024 + 1)),
        ("ttl_seconds", "soon"),
        ("max_bytes", ""),
    ],
)
def test_values_out_of_bounds_are_refused_on_the_field(alice_page, field, value):
    response = alice_page.post(PAGE, {**SETTINGS, field: value})
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert _acme().settings.get("cache_ttl_seconds") is None
    assert _records("cache:update") == []


def test_a_member_sees_the_state_but_cannot_change_or_purge(bob_page, cast):
    page = bob_page.get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Save cache settings" not in html and PURGE not in html
    assert "needs the cache:manage permission" in html
    assert bob_page.post(PAGE, SETTINGS).status_code == 403
    assert bob_page.post(PURGE, {"confirm": "yes"}).status_code == 403
    assert _acme().policy.cache_enabled is False
    denied = _records("cache:manage")
    assert [(r.outcome, r.actor_user_id, r.status_code) for r in denied] == [
        ("denied", cast.bob.pk, 403),
        ("denied", cast.bob.pk, 403),
    ]
    assert _records("cache:purge") == []


def test_the_nav_links_the_page_for_cache_managers_only(alice_page, dave_page, bob_page):
    assert 'data-nav="cache"' in alice_page.get("/orgs/acme/").content.decode()
    assert 'data-nav="cache"' in dave_page.get("/orgs/acme/").content.decode()
    assert 'data-nav="cache"' not in bob_page.get("/orgs/acme/").content.decode()


def test_another_orgs_owner_gets_404(charlie_page):
    assert charlie_page.get(PAGE).status_code == 404
    assert charlie_page.post(PAGE, SETTINGS).status_code == 404
    assert charlie_page.post(PURGE, {"confirm": "yes"}).status_code == 404
    assert _acme().policy.cache_enabled is False
    assert _records("cache:purge") == []


def test_purge_is_only_a_post(alice_page):
    assert alice_page.get(PURGE).status_code == 405


def test_a_model_name_too_long_is_refused_by_page_and_api(alice_page, alice_client):
    response = alice_page.post(PURGE, {"model": "m" * 261, "confirm": "yes"}, follow=True)
    assert "at most 260 characters" in response.content.decode()
    api = alice_client.delete(f"/api/v1/orgs/acme/cache?model={'m' * 261}")
    assert api.status_code == 400
    assert api.json()["error"]["code"] == "VALIDATION_ERROR"
    assert api.json()["error"]["details"] == {"model": ["At most 260 characters."]}
    assert _records("cache:purge") == []


def test_redis_down_shows_a_notice_and_purges_nothing(alice_page, redis_outage):
    redis_outage()
    page = alice_page.get(PAGE)
    assert page.status_code == 200
    assert "Redis did not answer" in page.content.decode()
    purged = alice_page.post(PURGE, {"confirm": "yes"}, follow=True)
    assert "nothing was purged" in purged.content.decode()
    assert _records("cache:purge") == []


def test_counts_then_purge_one_model_then_all(on_redis, llm, alice_page, cast):
    enable(llm)
    key = llm.key()
    ask(llm, key)
    ask(llm, key, model=MINI)
    assert ask(llm, key).headers["X-Inferia-Cache"] == "hit"
    page = alice_page.get(PAGE)
    state = page.context["state"]
    assert (state["enabled"], state["entries"], state["hits"], state["misses"]) == (True, 2, 1, 2)
    assert state["bytes"] > 0
    assert 'data-testid="cache-hit-rate">33%<' in page.content.decode()

    # A purge asks first and changes nothing until confirmed.
    asked = alice_page.post(PURGE, {"model": GPT4O})
    assert asked.status_code == 200
    html = asked.content.decode()
    assert f"Purge the cached answers of {GPT4O}?" in html and 'value="yes"' in html
    assert alice_page.get(PAGE).context["state"]["entries"] == 2

    done = alice_page.post(PURGE, {"model": GPT4O, "confirm": "yes"}, follow=True)
    assert f"1 cached answer purged ({GPT4O})." in done.content.decode()
    assert ask(llm, key, model=MINI).headers["X-Inferia-Cache"] == "hit"
    assert ask(llm, key).headers["X-Inferia-Cache"] == "miss"

    done = alice_page.post(PURGE, {"model": "", "confirm": "yes"}, follow=True)
    assert "2 cached answers purged." in done.content.decode()
    assert alice_page.get(PAGE).context["state"]["entries"] == 0
    purges = _records("cache:purge")
    assert [(r.data["model"], r.data["entries"], r.actor_user_id) for r in purges] == [
        (GPT4O, 1, cast.alice.pk),
        (None, 2, cast.alice.pk),
    ]
