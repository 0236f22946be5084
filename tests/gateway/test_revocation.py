"""A revoke, a rule change or a demotion is refused at once, by every server process.

Gateway processes cache principals in memory; the org epoch (Redis, or the
database when embedded) is what makes the very next call see the change.
"""

from __future__ import annotations

import httpx
import openai
import pytest

from orgs.models import Membership
from tests.gateway.conftest import (
    assert_gateway_error,
    assert_sdk_error,
)

CHAT = [{"role": "user", "content": "hi"}]


def _chat(client: openai.OpenAI, model: str = "openai-main/gpt-4o"):
    return client.chat.completions.create(model=model, messages=CHAT)


def _warm(client: openai.OpenAI, times: int = 2) -> None:
    for _ in range(times):
        assert _chat(client).choices[0].message.content == "Hello from the fake upstream."


def test_revoked_key_is_refused_by_the_very_next_call(backend, llm, bob_client):
    info = llm.key_info(bob_client)
    client = llm.sdk(info["key"])
    _warm(client)  # the principal is now cached in the server
    response = bob_client.delete(f"/api/v1/orgs/acme/api-keys/{info['id']}")
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError) as caught:
        _chat(client)
    error = assert_sdk_error(caught.value, 401, "AUTHENTICATION_FAILED")
    assert error["message"] == f"API key {info['prefix']} is revoked"
    # /models checks the epoch too.
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_other_keys_keep_working_after_a_revoke(backend, llm, bob_client):
    doomed, kept = llm.key_info(bob_client), llm.key_info(bob_client)
    _warm(llm.sdk(doomed["key"]), 1)
    _warm(llm.sdk(kept["key"]), 1)
    assert bob_client.delete(f"/api/v1/orgs/acme/api-keys/{doomed['id']}").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        _chat(llm.sdk(doomed["key"]))
    _warm(llm.sdk(kept["key"]), 1)


def test_rule_change_takes_effect_at_once(backend, llm):
    client = llm.sdk(llm.key())
    _warm(client)
    assert "openai-main/gpt-4o" in {m.id for m in client.models.list()}
    llm.grant("authz_rules:\n  - models: ['openai-main/gpt-4o-mini']\n    users: [bob]\n")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _chat(client)
    assert_sdk_error(caught.value, 403, "PERMISSION_DENIED")
    assert _chat(client, "openai-main/gpt-4o-mini").model == "openai-main/gpt-4o-mini"
    assert {m.id for m in client.models.list()} == {"openai-main/gpt-4o-mini"}


def test_demoting_the_keys_owner_takes_effect_at_once(backend, llm, cast):
    client = llm.sdk(llm.key())
    _warm(client)
    membership = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
    response = llm.admin.patch(
        f"/api/v1/orgs/acme/members/{membership.pk}", {"role": "viewer"}, format="json"
    )
    assert response.status_code == 200, response.content
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _chat(client)
    error = assert_sdk_error(caught.value, 403, "PERMISSION_DENIED")
    assert error["message"] == "Missing permission inference:run"


def test_removing_the_keys_owner_kills_the_key_at_once(backend, llm, cast):
    client = llm.sdk(llm.key())
    _warm(client)
    membership = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
    assert llm.admin.delete(f"/api/v1/orgs/acme/members/{membership.pk}").status_code == 204
    with pytest.raises(openai.AuthenticationError) as caught:
        _chat(client)
    assert_sdk_error(caught.value, 401, "AUTHENTICATION_FAILED")


def test_disabling_the_provider_model_takes_effect_at_once(backend, llm):
    client = llm.sdk(llm.key())
    _warm(client)
    account_id = llm.admin.get("/api/v1/orgs/acme/provider-accounts").json()["results"][0]["id"]
    response = llm.admin.patch(
        f"/api/v1/orgs/acme/provider-accounts/{account_id}",
        {"models": [{"name": "gpt-4o-mini"}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    with pytest.raises(openai.NotFoundError) as caught:
        _chat(client)
    assert_sdk_error(caught.value, 404, "NOT_FOUND")


# --- across processes ------------------------------------------------------------


def test_revoke_is_refused_by_every_process_at_once(two_processes, llm, bob_client):
    info = llm.key_info(bob_client)
    clients = [process.sdk(info["key"]) for process in two_processes]
    for client in clients:
        _warm(client, 3)
    response = bob_client.delete(f"/api/v1/orgs/acme/api-keys/{info['id']}")
    assert response.status_code == 200
    for client in clients:
        with pytest.raises(openai.AuthenticationError) as caught:
            _chat(client)
        error = assert_sdk_error(caught.value, 401, "AUTHENTICATION_FAILED")
        assert error["message"] == f"API key {info['prefix']} is revoked"


def test_rule_change_is_seen_by_every_process_at_once(two_processes, llm):
    key = llm.key()
    clients = [process.sdk(key) for process in two_processes]
    for client in clients:
        _warm(client, 3)
    llm.grant("authz_rules:\n  - models: ['openai-main/gpt-4o-mini']\n    users: [bob]\n")
    for client in clients:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            _chat(client)
        assert_sdk_error(caught.value, 403, "PERMISSION_DENIED")
        assert _chat(client, "openai-main/gpt-4o-mini").model == "openai-main/gpt-4o-mini"


# --- fail closed -----------------------------------------------------------------


def test_unreachable_redis_refuses_a_new_credential_with_503(llm, redis_outage):
    key = llm.key()
    redis_outage()  # the org epoch cannot be read: the key cannot be confirmed
    for path, method in (("/chat/completions", "POST"), ("/models", "GET")):
        response = httpx.request(
            method,
            f"{llm.base_url}{path}",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "openai-main/gpt-4o", "messages": CHAT},
            timeout=30,
        )
        assert_gateway_error(response, 503, "SERVICE_UNAVAILABLE")
        assert key not in response.text


def test_unreachable_redis_refuses_a_cached_credential_with_503(
    on_redis, llm, redis_outage, upstream_requests
):
    client = llm.sdk(llm.key())
    _warm(client)
    upstream_requests.clear()
    redis_outage()
    with pytest.raises(openai.APIStatusError) as caught:
        _chat(client)
    assert_sdk_error(caught.value, 503, "SERVICE_UNAVAILABLE")
    with pytest.raises(openai.APIStatusError) as caught:
        client.models.list()
    assert_sdk_error(caught.value, 503, "SERVICE_UNAVAILABLE")
    assert upstream_requests == []
