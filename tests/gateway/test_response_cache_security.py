"""The response cache as an attacker sees it: never shared across orgs, never a way
around a grant or a limit, no credential in Redis, governed by cache:manage only."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from inferia.store import redis_store
from orgs.models import Organization
from tests.conftest import assert_error, client_for
from tests.gateway.conftest import UPSTREAM_SECRET, assert_gateway_error
from tests.keys.conftest import mint

GPT4O = "openai-main/gpt-4o"
BODY = {"model": GPT4O, "messages": [{"role": "user", "content": "Say hello"}]}


def chat_calls(upstream_requests) -> int:
    return sum(1 for r in upstream_requests if r["path"].endswith("/chat/completions"))


def enable(client, org: str = "acme", **fields) -> None:
    response = client.patch(f"/api/v1/orgs/{org}/cache", {"enabled": True, **fields}, format="json")
    assert response.status_code == 200, response.content


@pytest.fixture
def globex(llm, cast, fake_upstream):
    """Globex with the same account and model names as Acme, granted to charlie,
    its cache on; returns charlie's key."""
    charlie = client_for(cast.charlie)
    port = fake_upstream.url.rsplit(":", 1)[1]
    response = charlie.patch(
        "/api/v1/orgs/globex",
        {"settings": {"allowed_private_hosts": [f"127.0.0.1:{port}"]}},
        format="json",
    )
    assert response.status_code == 200, response.content
    response = charlie.post(
        "/api/v1/orgs/globex/provider-accounts",
        {
            "name": "openai-main",
            "provider_type": "openai",
            "base_url": f"{fake_upstream.url}/v1",
            "models": [{"name": "gpt-4o"}],
            "secret": UPSTREAM_SECRET,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    response = charlie.post(
        "/api/v1/orgs/globex/access-rules",
        {"models": ["openai-main/*"], "users": ["charlie"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    enable(charlie, "globex")
    return mint(charlie, "globex", permissions=["inference:run"])["key"]


def test_an_identical_request_of_another_org_never_gets_the_entry(
    on_redis, llm, globex, upstream_requests
):
    enable(llm.admin)
    acme_key = llm.key()
    assert llm.post("/chat/completions", acme_key, BODY).headers["X-Inferia-Cache"] == "miss"
    assert llm.post("/chat/completions", acme_key, BODY).headers["X-Inferia-Cache"] == "hit"
    other = llm.post("/chat/completions", globex, BODY)
    assert other.status_code == 200, other.text
    assert other.headers["X-Inferia-Cache"] == "miss"
    assert chat_calls(upstream_requests) == 2
    assert llm.post("/chat/completions", globex, BODY).headers["X-Inferia-Cache"] == "hit"


def test_purging_one_org_leaves_the_other_alone(on_redis, llm, globex, cast):
    enable(llm.admin)
    acme_key = llm.key()
    llm.post("/chat/completions", acme_key, BODY)
    llm.post("/chat/completions", globex, BODY)
    response = llm.admin.delete("/api/v1/orgs/acme/cache")
    assert response.json()["purged"] == 1
    assert llm.post("/chat/completions", globex, BODY).headers["X-Inferia-Cache"] == "hit"
    assert llm.post("/chat/completions", acme_key, BODY).headers["X-Inferia-Cache"] == "miss"
    # Purging a model name both orgs use touches only the caller's org.
    response = llm.admin.delete(f"/api/v1/orgs/acme/cache?model={GPT4O}")
    assert response.json()["purged"] == 1
    assert llm.post("/chat/completions", globex, BODY).headers["X-Inferia-Cache"] == "hit"
    globex_state = client_for(cast.charlie).get("/api/v1/orgs/globex/cache").json()
    assert globex_state["entries"] == 1


def test_a_caller_without_the_grant_is_refused_though_an_entry_exists(
    on_redis, llm, cast, upstream_requests
):
    enable(llm.admin)
    llm.post("/chat/completions", llm.key(), BODY)  # bob's answer is stored
    dave_key = llm.key(client_for(cast.dave))  # an admin with no access rule to the model
    refused = llm.post("/chat/completions", dave_key, BODY)
    assert_gateway_error(refused, 403, "PERMISSION_DENIED")
    assert "X-Inferia-Cache" not in refused.headers
    no_run = llm.key(permissions=["model:read"])
    assert_gateway_error(llm.post("/chat/completions", no_run, BODY), 403, "PERMISSION_DENIED")
    assert chat_calls(upstream_requests) == 1


def test_a_stream_without_inference_stream_is_refused_though_an_entry_exists(on_redis, llm):
    enable(llm.admin)
    body = {**BODY, "stream": True}
    assert llm.post("/chat/completions", llm.key(), body).status_code == 200
    run_only = llm.key(permissions=["inference:run"])
    assert_gateway_error(llm.post("/chat/completions", run_only, body), 403, "PERMISSION_DENIED")


def test_an_exhausted_rate_limit_refuses_a_would_be_hit(on_redis, llm, upstream_requests):
    llm.org_settings(key_requests_per_minute=2)
    enable(llm.admin)
    key = llm.key()
    assert llm.post("/chat/completions", key, BODY).headers["X-Inferia-Cache"] == "miss"
    hit = llm.post("/chat/completions", key, BODY)
    assert hit.headers["X-Inferia-Cache"] == "hit"
    assert hit.headers["X-RateLimit-Remaining"] == "0"  # the hit counted
    refused = llm.post("/chat/completions", key, BODY)
    assert_gateway_error(refused, 429, "RATE_LIMITED")
    assert refused.headers.get("Retry-After")
    assert chat_calls(upstream_requests) == 1


def test_a_revoked_key_is_refused_though_an_entry_exists(on_redis, llm):
    enable(llm.admin)
    info = llm.key_info()
    assert llm.post("/chat/completions", info["key"], BODY).status_code == 200
    response = client_for(llm.key_row(info["key"]).owner_user).delete(
        f"/api/v1/orgs/acme/api-keys/{info['id']}"
    )
    assert response.status_code == 200, response.content
    assert_gateway_error(
        llm.post("/chat/completions", info["key"], BODY), 401, "AUTHENTICATION_FAILED"
    )


def _everything_in_redis(only: bytes = b"") -> bytes:
    """Every key (holding ``only``) and every value of this run's Redis database, as one
    blob: on a cluster, every master's keys (KEYS answers for one node only)."""

    async def dump(c) -> bytes:
        out: list[bytes] = []
        names: list[bytes] = []
        for master in await c.masters():
            (reply,) = await master.pipeline([("KEYS", "*")])
            names += reply
        for key in names:
            if only not in key:
                continue
            out.append(key)
            kind = (await c.execute("TYPE", key)).decode()
            if kind == "string":
                out.append(await c.execute("GET", key))
            elif kind == "hash":
                out += await c.execute("HGETALL", key)
            elif kind == "zset":
                out += await c.execute("ZRANGE", key, 0, -1)
            elif kind == "set":
                out += await c.execute("SMEMBERS", key)
            elif kind == "list":
                out += await c.execute("LRANGE", key, 0, -1)
            elif kind == "stream":
                for _id, fields in await c.execute("XRANGE", key, "-", "+"):
                    out += fields
        return b"\n".join(out)

    return redis_store.call(dump)


def test_no_credential_reaches_the_cache(on_redis, llm, cast):
    enable(llm.admin)
    key = llm.key()
    llm.post("/chat/completions", key, BODY)
    llm.post("/chat/completions", key, {**BODY, "stream": True})
    blob = _everything_in_redis()
    assert b":cache:e:" in blob  # the entries are there
    for secret in (key, key.split("_")[-1], UPSTREAM_SECRET):
        assert secret.encode() not in blob
    entry_keys = [k for k in blob.split(b"\n") if b":cache:" in k]
    assert entry_keys and all(b"bob" not in k and b"gpt-4o" not in k for k in entry_keys)
    # The caller's identity is in no cache key or value (the usage stream, which holds
    # it, is not the cache's).
    assert str(cast.bob.pk).encode() not in _everything_in_redis(only=b":cache:")


def test_members_without_cache_manage_cannot_change_or_purge(cast):
    bob = client_for(cast.bob)
    assert bob.get("/api/v1/orgs/acme/cache").status_code == 200
    assert_error(
        bob.patch("/api/v1/orgs/acme/cache", {"enabled": True}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert_error(bob.put("/api/v1/orgs/acme/cache", {}, format="json"), 403, "PERMISSION_DENIED")
    assert_error(bob.delete("/api/v1/orgs/acme/cache"), 403, "PERMISSION_DENIED")
    assert Organization.objects.get(slug="acme").policy.cache_enabled is False
    # Admins hold cache:manage.
    dave = client_for(cast.dave)
    response = dave.patch("/api/v1/orgs/acme/cache", {"ttl_seconds": 60}, format="json")
    assert response.status_code == 200, response.content
    assert dave.delete("/api/v1/orgs/acme/cache").status_code == 200


def test_an_org_update_only_role_cannot_turn_the_cache_on(cast, alice_client):
    response = alice_client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": "settings", "name": "Settings", "permissions": ["org:view", "org:update"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    membership = alice_client.get("/api/v1/orgs/acme/members?page_size=100").json()["results"]
    vera_id = next(m["id"] for m in membership if m["user"]["username"] == "vera")
    response = alice_client.patch(
        f"/api/v1/orgs/acme/members/{vera_id}", {"role": "settings"}, format="json"
    )
    assert response.status_code == 200, response.content
    vera = client_for(cast.vera)
    # The generic settings PATCH works for other knobs, not for the cache's.
    response = vera.patch("/api/v1/orgs/acme", {"settings": {"alert_denials": 9}}, format="json")
    assert response.status_code == 200, response.content
    for knobs in ({"cache_enabled": True}, {"cache_ttl_seconds": 5}, {"cache_max_bytes": 4096}):
        assert_error(
            vera.patch("/api/v1/orgs/acme", {"settings": knobs}, format="json"),
            403,
            "PERMISSION_DENIED",
        )
    assert_error(
        vera.patch("/api/v1/orgs/acme/cache", {"enabled": True}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    policy = Organization.objects.get(slug="acme").policy
    assert (policy.cache_enabled, policy.cache_ttl_seconds) == (False, 3600)
    # Resending the current values is no change, so it needs nothing more.
    response = vera.patch(
        "/api/v1/orgs/acme", {"settings": {"cache_enabled": False}}, format="json"
    )
    assert response.status_code == 200, response.content
    # With cache:manage the generic PATCH may set them too.
    response = alice_client.patch(
        "/api/v1/orgs/acme", {"settings": {"cache_ttl_seconds": 5}}, format="json"
    )
    assert response.status_code == 200, response.content
    assert Organization.objects.get(slug="acme").policy.cache_ttl_seconds == 5


def test_another_orgs_admin_gets_404(cast):
    charlie = client_for(cast.charlie)
    assert_error(charlie.get("/api/v1/orgs/acme/cache"), 404, "NOT_FOUND")
    assert_error(
        charlie.patch("/api/v1/orgs/acme/cache", {"enabled": True}, format="json"),
        404,
        "NOT_FOUND",
    )
    assert_error(charlie.delete("/api/v1/orgs/acme/cache"), 404, "NOT_FOUND")
    assert Organization.objects.get(slug="acme").policy.cache_enabled is False


def test_settings_changes_are_validated_and_audited(cast, alice_client):
    admin = alice_client
    for bad in (
        {"ttl_seconds": 0},
        {"ttl_seconds": 604_801},
        {"max_bytes": 10},
        {"max_entry_bytes": 10**9},
        {"enabled": True, "surprise": 1},
    ):
        assert_error(
            admin.patch("/api/v1/orgs/acme/cache", bad, format="json"), 400, "VALIDATION_ERROR"
        )
    response = admin.patch(
        "/api/v1/orgs/acme/cache", {"max_bytes": 4096, "ttl_seconds": 120}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["enabled"], body["ttl_seconds"], body["max_bytes"]) == (False, 120, 4096)
    # PUT resets what it omits.
    response = admin.put("/api/v1/orgs/acme/cache", {"max_entry_bytes": 2048}, format="json")
    assert (response.json()["ttl_seconds"], response.json()["max_bytes"]) == (3600, 64 * 1024**2)
    records = AuditRecord.objects.filter(action="cache:update").order_by("created_at")
    assert [r.data["changed"] for r in records] == [
        ["cache_max_bytes", "cache_ttl_seconds"],
        ["cache_enabled", "cache_max_bytes", "cache_max_entry_bytes", "cache_ttl_seconds"],
    ]
    assert records[0].actor_user_id == cast.alice.pk and records[0].org_id == cast.acme.pk
    assert records[1].data["before"]["cache_ttl_seconds"] == 120


def test_unauthenticated_is_401(cast, anon_client):
    assert_error(anon_client.get("/api/v1/orgs/acme/cache"), 401, "AUTHENTICATION_FAILED")
    assert_error(anon_client.delete("/api/v1/orgs/acme/cache"), 401, "AUTHENTICATION_FAILED")


def test_embedded_the_cache_cannot_be_turned_on(settings, cast, alice_client):
    settings.REDIS_URL = ""
    state = alice_client.get("/api/v1/orgs/acme/cache").json()
    assert (state["available"], state["enabled"], state["entries"]) == (False, False, 0)
    error = assert_error(
        alice_client.patch("/api/v1/orgs/acme/cache", {"enabled": True}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert "Redis" in error["message"] and "cache_enabled" in error["details"]
    assert_error(
        alice_client.patch(
            "/api/v1/orgs/acme", {"settings": {"cache_enabled": True}}, format="json"
        ),
        400,
        "VALIDATION_ERROR",
    )
    # The other knobs may be prepared; purging an empty cache is harmless.
    response = alice_client.patch("/api/v1/orgs/acme/cache", {"ttl_seconds": 60}, format="json")
    assert response.status_code == 200 and response.json()["ttl_seconds"] == 60
    assert alice_client.delete("/api/v1/orgs/acme/cache").json() == {"model": None, "purged": 0}
    assert Organization.objects.get(slug="acme").policy.cache_enabled is False


def test_turning_the_cache_on_is_audited(on_redis, cast, alice_client):
    response = alice_client.patch("/api/v1/orgs/acme/cache", {"enabled": True}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["enabled"] is True and response.json()["available"] is True
    record = AuditRecord.objects.get(action="cache:update")
    assert record.data["changed"] == ["cache_enabled"]
    assert record.data["before"]["cache_enabled"] is None
    assert Organization.objects.get(slug="acme").policy.cache_enabled is True
