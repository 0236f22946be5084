"""``GET /api/llm/v1/models/{account}/{model}``: one model, refused like a call naming it.

The answer matches ``_authorize`` (a call naming the model): the model object when
the caller may use it, 403 without ``inference:run`` or for a model of the caller's
org that no access rule grants them, 404 for a model the org does not have
(another org's included)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import client_for
from tests.gateway.conftest import assert_gateway_error, assert_sdk_error, usage_rows


def _get(llm, key: str, fqn: str) -> httpx.Response:
    return httpx.get(
        f"{llm.base_url}/models/{fqn}", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def test_a_granted_model_is_returned(llm):
    llm.grant("authz_rules:\n  - models: ['openai-main/gpt-4o']\n    users: [bob]\n")
    key = llm.key()
    response = _get(llm, key, "openai-main/gpt-4o")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": "openai-main/gpt-4o",
        "object": "model",
        "created": 0,
        "owned_by": "openai-main",
    }
    for header in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert response.headers.get(header), header
    model = llm.sdk(key).models.retrieve("openai-main/gpt-4o")
    assert (model.id, model.owned_by) == ("openai-main/gpt-4o", "openai-main")


def test_a_model_of_the_org_not_granted_is_403_like_a_call(llm):
    llm.grant("authz_rules:\n  - models: ['openai-main/gpt-4o']\n    users: [bob]\n")
    key = llm.key()
    error = assert_gateway_error(
        _get(llm, key, "openai-main/gpt-4o-mini"), 403, "PERMISSION_DENIED"
    )
    assert error["type"] == "permission_error"
    called = llm.post(
        "/chat/completions",
        key,
        {"model": "openai-main/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
    )
    assert assert_gateway_error(called, 403, "PERMISSION_DENIED")["message"] == error["message"]
    with pytest.raises(openai.PermissionDeniedError) as caught:
        llm.sdk(key).models.retrieve("openai-main/gpt-4o-mini")
    assert_sdk_error(caught.value, 403, "PERMISSION_DENIED")
    # The refusal is an authorization decision: recorded with the model it named.
    records = usage_rows(2, status_code=403, model="openai-main/gpt-4o-mini", endpoint="model")
    assert [r.error_code for r in records] == ["PERMISSION_DENIED"] * 2


def test_an_unknown_model_or_another_orgs_is_404(llm, cast):
    key = llm.key()
    for fqn in ("openai-main/gpt-9", "nowhere/gpt-4o", "globex-ai/gpt-4o"):
        assert_gateway_error(_get(llm, key, fqn), 404, "NOT_FOUND")
    with pytest.raises(openai.NotFoundError) as caught:
        llm.sdk(key).models.retrieve("openai-main/gpt-9")
    assert_sdk_error(caught.value, 404, "NOT_FOUND")
    # charlie (Globex) asking for Acme's model: 404, never 403.
    charlie_key = llm.key(
        client_for(cast.charlie), org="globex", permissions=["inference:run", "model:read"]
    )
    assert_gateway_error(_get(llm, charlie_key, "openai-main/gpt-4o"), 404, "NOT_FOUND")


def test_without_inference_run_it_is_403(llm):
    key = llm.key(permissions=["model:read"])
    error = assert_gateway_error(_get(llm, key, "openai-main/gpt-4o"), 403, "PERMISSION_DENIED")
    assert "inference:run" in error["message"]


def test_credentials_and_method_are_checked(llm):
    assert_gateway_error(
        httpx.get(f"{llm.base_url}/models/openai-main/gpt-4o", timeout=30),
        401,
        "AUTHENTICATION_FAILED",
    )
    key = llm.key()
    posted = httpx.post(
        f"{llm.base_url}/models/openai-main/gpt-4o",
        headers={"Authorization": f"Bearer {key}"},
        json={},
        timeout=30,
    )
    assert_gateway_error(posted, 405, "METHOD_NOT_ALLOWED")
    revoked = llm.key_info()
    assert _get(llm, revoked["key"], "openai-main/gpt-4o").status_code == 200
    gone = llm.admin.delete(f"/api/v1/orgs/acme/api-keys/{revoked['id']}")
    assert gone.status_code == 200 and gone.json()["revoked_at"], gone.content
    assert_gateway_error(
        _get(llm, revoked["key"], "openai-main/gpt-4o"), 401, "AUTHENTICATION_FAILED"
    )
