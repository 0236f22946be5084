"""A key minted by a key is refused by the gateway as soon as a key above it is
revoked or expires, cached principal or not (the API side is in
tests/security/test_key_minted_by_key.py)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from gateway import principals
from inferia import clock
from keys.models import ApiKey
from tests.gateway.conftest import assert_gateway_error
from tests.keys.conftest import key_client, mint

INFERENCE = ["inference:run", "inference:stream", "model:read"]
CHAT = {"model": "openai-main/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def _chat(llm, key: str) -> httpx.Response:
    return llm.post("/chat/completions", key, CHAT)


def _family(llm, bob_client, depth: int = 1) -> list[dict]:
    """bob's key, the key it minted, and so on: ``depth`` keys below the first."""
    keys = [llm.key_info(bob_client, permissions=[*INFERENCE, "api_key:create"])]
    for _ in range(depth):
        keys.append(mint(key_client(keys[-1]["key"]), permissions=[*INFERENCE, "api_key:create"]))
    return keys


@pytest.mark.parametrize("depth", [1, 2], ids=["child", "grandchild"])
def test_descendants_are_refused_at_once_when_the_first_key_is_revoked(
    backend, llm, bob_client, depth
):
    family = _family(llm, bob_client, depth)
    last = family[-1]
    assert _chat(llm, last["key"]).status_code == 200
    assert principals.cached(last["key"], "") is not None  # warm: the next call is a hit
    assert bob_client.delete(f"/api/v1/orgs/acme/api-keys/{family[0]['id']}").status_code == 200
    error = assert_gateway_error(_chat(llm, last["key"]), 401, "AUTHENTICATION_FAILED")
    assert error["message"] == (
        f"API key {last['prefix']} is no longer valid: the key that created it is revoked"
    )


def test_child_is_refused_on_a_cache_hit_once_its_parent_expires(llm, bob_client):
    parent, child = _family(llm, bob_client)
    # The parent's expiry moves earlier than the child's (an operator's edit).
    row = ApiKey.all_orgs.get(pk=parent["id"])
    row.expires_at = clock.now() + timedelta(hours=1)
    row.save(update_fields=["expires_at"])
    assert ApiKey.all_orgs.get(pk=child["id"]).expires_at is None
    assert _chat(llm, child["key"]).status_code == 200
    assert principals.cached(child["key"], "") is not None

    clock.advance(2 * 3600)

    error = assert_gateway_error(_chat(llm, child["key"]), 401, "AUTHENTICATION_FAILED")
    assert error["message"] == (
        f"API key {child['prefix']} is no longer valid: the key that created it is expired"
    )
    assert principals.cached(child["key"], "") is None
