"""The gateway's response cache: hits, misses, bypass, TTL, the size cap, purges, and
the usage and audit records of a hit (docs/response-cache.md). On real Redis."""

from __future__ import annotations

import httpx
import pytest

from audit.models import AuditRecord
from inferia import clock
from inferia.store import response_cache
from tests.gateway.conftest import usage_rows

CHAT = [{"role": "user", "content": "Say hello"}]
GPT4O = "openai-main/gpt-4o"
MINI = "openai-main/gpt-4o-mini"


def enable(llm, **fields) -> dict:
    response = llm.admin.patch(
        "/api/v1/orgs/acme/cache", {"enabled": True, **fields}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def chat_calls(upstream_requests) -> int:
    return sum(1 for r in upstream_requests if r["path"].endswith("/chat/completions"))


def ask(llm, key: str, model: str = GPT4O, content: str = "Say hello", **extra) -> httpx.Response:
    headers = extra.pop("headers", {})
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return llm.post("/chat/completions", key, body, **headers)


@pytest.fixture
def cached(on_redis, llm):
    """Acme on Redis with the cache on; returns the ``llm`` namespace."""
    enable(llm)
    return llm


def test_miss_then_hit_calls_the_upstream_once(cached, upstream_requests):
    key = cached.key()
    first = ask(cached, key)
    second = ask(cached, key)
    assert first.status_code == second.status_code == 200, second.text
    assert first.headers["X-Inferia-Cache"] == "miss"
    assert second.headers["X-Inferia-Cache"] == "hit"
    assert second.content == first.content
    assert second.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    assert chat_calls(upstream_requests) == 1
    # The OpenAI SDK reads a hit like any answer.
    reply = cached.sdk(key).chat.completions.create(model=GPT4O, messages=CHAT)
    assert reply.choices[0].message.content == first.json()["choices"][0]["message"]["content"]
    assert chat_calls(upstream_requests) == 1


def test_a_different_body_or_model_is_a_different_entry(cached, upstream_requests):
    key = cached.key()
    ask(cached, key)
    assert ask(cached, key, content="Say goodbye").headers["X-Inferia-Cache"] == "miss"
    assert ask(cached, key, model=MINI).headers["X-Inferia-Cache"] == "miss"
    assert ask(cached, key, temperature=0.5).headers["X-Inferia-Cache"] == "miss"
    assert chat_calls(upstream_requests) == 4


def test_streamed_miss_then_hit_replays_the_same_events(cached, upstream_requests):
    key = cached.key()
    body = {"model": GPT4O, "messages": CHAT, "stream": True}
    with httpx.stream(
        "POST",
        f"{cached.base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as first:
        assert first.headers["X-Inferia-Cache"] == "miss"
        relayed = first.read()
    usage_rows(1, streamed=True)  # the stream completed and was recorded (and stored)
    second = cached.post("/chat/completions", key, body)
    assert second.status_code == 200
    assert second.headers["X-Inferia-Cache"] == "hit"
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.content == relayed
    assert b"data: [DONE]" in second.content
    assert chat_calls(upstream_requests) == 1
    # The SDK reads the replay as a stream; a non-streamed call is another entry.
    stream = cached.sdk(key).chat.completions.create(model=GPT4O, messages=CHAT, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text
    assert ask(cached, key).headers["X-Inferia-Cache"] == "miss"
    assert chat_calls(upstream_requests) == 2


def test_a_broken_stream_is_not_stored(cached, upstream_requests):
    key = cached.key()
    body = {"model": "openai-main/fake-stream-reset", "messages": CHAT, "stream": True}
    first = cached.post("/chat/completions", key, body)
    assert first.headers["X-Inferia-Cache"] == "miss"
    assert b"UPSTREAM_ERROR" in first.content
    second = cached.post("/chat/completions", key, body)
    assert second.headers["X-Inferia-Cache"] == "miss"
    assert chat_calls(upstream_requests) == 2


def test_no_cache_bypasses_the_lookup_and_stores_the_fresh_answer(cached, upstream_requests):
    key = cached.key()
    ask(cached, key)
    bypass = ask(cached, key, headers={"Cache-Control": "no-cache"})
    assert bypass.status_code == 200
    assert bypass.headers["X-Inferia-Cache"] == "bypass"
    assert chat_calls(upstream_requests) == 2
    assert ask(cached, key).headers["X-Inferia-Cache"] == "hit"
    assert chat_calls(upstream_requests) == 2


def test_no_store_neither_reads_nor_writes(cached, upstream_requests):
    key = cached.key()
    first = ask(cached, key, headers={"Cache-Control": "no-store"})
    assert first.headers["X-Inferia-Cache"] == "bypass"
    assert ask(cached, key).headers["X-Inferia-Cache"] == "miss"  # nothing was stored
    assert (
        ask(cached, key, headers={"Cache-Control": "no-store"}).headers["X-Inferia-Cache"]
        == "bypass"
    )
    assert chat_calls(upstream_requests) == 3


def test_entries_expire_after_the_ttl(on_redis, llm, upstream_requests):
    enable(llm, ttl_seconds=60)
    key = llm.key()
    ask(llm, key)
    clock.advance(59)
    assert ask(llm, key).headers["X-Inferia-Cache"] == "hit"
    clock.advance(2)
    assert ask(llm, key).headers["X-Inferia-Cache"] == "miss"
    assert chat_calls(upstream_requests) == 2
    assert ask(llm, key).headers["X-Inferia-Cache"] == "hit"  # stored again


def test_the_size_cap_evicts_the_entries_that_expire_first(on_redis, llm, cast):
    enable(llm, max_bytes=2048, max_entry_bytes=2048)
    key = llm.key()
    one = len(ask(llm, key, content="prompt 0").content)
    assert 2048 // (one + 200) >= 2, one  # several entries fit, not many
    for n in range(1, 12):
        assert ask(llm, key, content=f"prompt {n}").headers["X-Inferia-Cache"] == "miss"
        held = response_cache.stats(cast.acme.pk, int(clock.time() * 1000))
        assert 0 < held["bytes"] <= 2048, held
    assert ask(llm, key, content="prompt 0").headers["X-Inferia-Cache"] == "miss"  # evicted
    assert ask(llm, key, content="prompt 11").headers["X-Inferia-Cache"] == "hit"  # newest kept
    state = llm.admin.get("/api/v1/orgs/acme/cache").json()
    assert 0 < state["bytes"] <= 2048 and state["entries"] >= 2


def test_an_answer_over_the_entry_limit_is_not_stored(on_redis, llm, upstream_requests):
    enable(llm, max_entry_bytes=256)
    key = llm.key()
    assert ask(llm, key).headers["X-Inferia-Cache"] == "miss"
    assert ask(llm, key).headers["X-Inferia-Cache"] == "miss"
    assert chat_calls(upstream_requests) == 2


def test_purge_by_model_then_all(cached, cast):
    key = cached.key()
    ask(cached, key)
    ask(cached, key, model=MINI)
    response = cached.admin.delete(f"/api/v1/orgs/acme/cache?model={GPT4O}")
    assert response.status_code == 200, response.content
    assert response.json() == {"model": GPT4O, "purged": 1}
    assert ask(cached, key, model=MINI).headers["X-Inferia-Cache"] == "hit"
    assert ask(cached, key).headers["X-Inferia-Cache"] == "miss"
    response = cached.admin.delete("/api/v1/orgs/acme/cache")
    assert response.json() == {"model": None, "purged": 2}
    assert ask(cached, key).headers["X-Inferia-Cache"] == "miss"
    assert ask(cached, key, model=MINI).headers["X-Inferia-Cache"] == "miss"
    purges = AuditRecord.objects.filter(action="cache:purge").order_by("created_at")
    assert [(r.data["model"], r.data["entries"], r.outcome) for r in purges] == [
        (GPT4O, 1, "success"),
        (None, 2, "success"),
    ]
    assert {r.actor_user_id for r in purges} == {cast.alice.pk}


def test_a_hit_is_recorded_as_a_cache_hit_with_no_tokens_or_cost(cached):
    key = cached.key()
    miss = ask(cached, key)
    hit = ask(cached, key)
    rows = usage_rows(2)
    by_request = {row.request_id: row for row in rows}
    fresh = by_request[miss.headers["X-Request-ID"]]
    cached_row = by_request[hit.headers["X-Request-ID"]]
    assert not fresh.cache_hit and fresh.prompt_tokens > 0 and fresh.cost > 0
    assert cached_row.cache_hit
    assert (cached_row.prompt_tokens, cached_row.completion_tokens) == (0, 0)
    assert cached_row.cost == 0 and cached_row.upstream_latency_ms == 0
    assert (cached_row.status_code, cached_row.model) == (200, GPT4O)
    audit = AuditRecord.objects.get(request_id=cached_row.request_id)
    assert (audit.action, audit.outcome, audit.status_code) == ("inference:run", "success", 200)
    assert audit.data["cache"] == "hit"
    assert audit.data["cached_prompt_tokens"] == fresh.prompt_tokens
    assert audit.data["cached_completion_tokens"] == fresh.completion_tokens
    assert "cache" not in AuditRecord.objects.get(request_id=fresh.request_id).data


def test_a_hit_releases_its_token_reservation(on_redis, llm):
    llm.org_settings(key_tokens_per_minute=100_000)
    enable(llm)
    key = llm.key()
    ask(llm, key)
    before = int(ask(llm, key).headers["X-RateLimit-Remaining-Tokens"])
    usage_rows(2)
    # The next call's reservation is measured against what the hits left: all of it.
    after = ask(llm, key)
    assert after.headers["X-Inferia-Cache"] == "hit"
    assert int(after.headers["X-RateLimit-Remaining-Tokens"]) == before


def test_no_cache_header_when_the_org_has_caching_off(on_redis, llm, upstream_requests):
    key = llm.key()
    first, second = ask(llm, key), ask(llm, key)
    assert "X-Inferia-Cache" not in first.headers and "X-Inferia-Cache" not in second.headers
    assert chat_calls(upstream_requests) == 2


def test_turning_it_off_stops_hits_at_once(cached, upstream_requests):
    key = cached.key()
    ask(cached, key)
    response = cached.admin.patch("/api/v1/orgs/acme/cache", {"enabled": False}, format="json")
    assert response.status_code == 200
    off = ask(cached, key)
    assert "X-Inferia-Cache" not in off.headers
    assert chat_calls(upstream_requests) == 2


def test_the_responses_dialect_is_cached_on_its_own_key(cached, upstream_requests):
    key = cached.key()
    body = {"model": GPT4O, "input": "Say hello"}
    first = cached.post("/responses", key, body)
    second = cached.post("/responses", key, body)
    assert first.status_code == 200, first.text
    assert (first.headers["X-Inferia-Cache"], second.headers["X-Inferia-Cache"]) == ("miss", "hit")
    assert second.json() == first.json()
    # The same conversation through chat completions is a different entry.
    assert ask(cached, key).headers["X-Inferia-Cache"] == "miss"
    assert chat_calls(upstream_requests) == 2


def test_embeddings_are_not_cached(cached):
    key = cached.key()
    body = {"model": "openai-main/fake-embed", "input": "hello"}
    response = cached.post("/embeddings", key, body)
    assert response.status_code == 200, response.text
    assert "X-Inferia-Cache" not in response.headers


def test_a_redis_failure_during_lookup_is_a_miss(on_redis, llm, settings, upstream_requests):
    llm.org_settings(rate_limit_on_backend_error="allow", quota_on_backend_error="allow")
    enable(llm)
    key = llm.key()
    ask(llm, key)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = ask(llm, key)
    assert response.status_code == 200, response.text
    assert response.headers["X-Inferia-Cache"] == "miss"
    assert chat_calls(upstream_requests) == 2


def test_hits_and_misses_are_counted(cached):
    key = cached.key()
    ask(cached, key)
    ask(cached, key)
    ask(cached, key)
    state = cached.admin.get("/api/v1/orgs/acme/cache").json()
    assert (state["hits"], state["misses"], state["entries"]) == (2, 1, 1)
    assert state["bytes"] > 0 and state["available"] is True


def test_a_deployment_is_cached_under_its_own_name_and_a_hit_tries_no_target(
    cached, upstream_requests
):
    cached.grant(
        "authz_rules:\n  - models: ['openai-main/*', 'deployment/*']\n    users: [bob, alice]\n"
    )
    created = cached.admin.post(
        "/api/v1/orgs/acme/deployments",
        {
            "name": "chat",
            "targets": [{"name": "primary", "account": "openai-main", "model": "gpt-4o"}],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    key = cached.key()
    first = ask(cached, key, model="deployment/chat")
    assert first.status_code == 200, first.text
    assert (first.headers["X-Inferia-Cache"], first.headers["X-Inferia-Target"]) == (
        "miss",
        "primary",
    )
    second = ask(cached, key, model="deployment/chat")
    assert second.headers["X-Inferia-Cache"] == "hit"
    assert "X-Inferia-Target" not in second.headers
    assert second.content == first.content
    # The target's own model is another entry.
    assert ask(cached, key).headers["X-Inferia-Cache"] == "miss"
    assert chat_calls(upstream_requests) == 2
    purged = cached.admin.delete("/api/v1/orgs/acme/cache?model=deployment/chat")
    assert purged.json() == {"model": "deployment/chat", "purged": 1}
    (row,) = usage_rows(1, cache_hit=True)
    assert (row.model, row.provider_account, row.prompt_tokens) == ("deployment/chat", "", 0)
