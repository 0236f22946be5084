"""The database down, Redis up: a cached principal past its lifetime keeps serving
for ``INFERIA_GATEWAY_CACHE_STALE_SECONDS`` (the fault suite restarts PostgreSQL
under load to prove it end to end), and the org epoch still revokes it at once."""

from __future__ import annotations

from django.db import OperationalError

from inferia import store
from tests.gateway.conftest import assert_gateway_error

CHAT = {"model": "openai-main/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def _database_down(monkeypatch) -> None:
    def refused(*args, **kwargs):
        raise OperationalError("connection to server failed: Connection refused")

    monkeypatch.setattr("gateway.principals.resolver.gateway_org_id", refused)


def test_an_expired_principal_stands_in_while_the_database_is_down(
    on_redis, llm, settings, monkeypatch, cast
):
    key = llm.key()
    assert llm.post("/chat/completions", key, CHAT).status_code == 200  # cached
    settings.INFERIA_GATEWAY_CACHE_SECONDS = 0  # that snapshot is now past its lifetime
    _database_down(monkeypatch)
    assert llm.post("/chat/completions", key, CHAT).status_code == 200

    # Beyond the stale allowance: fail closed.
    settings.INFERIA_GATEWAY_CACHE_STALE_SECONDS = 0
    response = llm.post("/chat/completions", key, CHAT)
    assert_gateway_error(response, 503, "SERVICE_UNAVAILABLE")


def test_an_access_change_refuses_the_stale_principal_at_once(
    on_redis, llm, settings, monkeypatch, cast
):
    key = llm.key()
    assert llm.post("/chat/completions", key, CHAT).status_code == 200
    settings.INFERIA_GATEWAY_CACHE_SECONDS = 0
    _database_down(monkeypatch)
    store.bump_epoch(cast.acme.pk)  # a revoke or a rule change, committed before the outage
    response = llm.post("/chat/completions", key, CHAT)
    assert_gateway_error(response, 503, "SERVICE_UNAVAILABLE")
