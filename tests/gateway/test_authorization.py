"""Who may call which model through the gateway: keys, JWTs, permissions, rules, tenants."""

from __future__ import annotations

from datetime import timedelta

import httpx
import openai
import pytest

from keys.apikeys import generate
from orgs.services import auth
from tests.conftest import add_member, client_for
from tests.gateway.conftest import assert_gateway_error, assert_sdk_error

CHAT = [{"role": "user", "content": "hi"}]


def _chat(client: openai.OpenAI, model: str = "openai-main/gpt-4o", **kwargs):
    return client.chat.completions.create(model=model, messages=CHAT, **kwargs)


def test_the_granted_model_answers(llm):
    completion = _chat(llm.sdk(llm.key()))
    assert completion.choices[0].message.content == "Hello from the fake upstream."


def test_no_credential_is_401(llm):
    response = httpx.post(
        f"{llm.base_url}/chat/completions", json={"model": "openai-main/gpt-4o", "messages": CHAT}
    )
    error = assert_gateway_error(response, 401, "AUTHENTICATION_FAILED")
    assert error["type"] == "authentication_error"


def test_malformed_key_is_401_without_echoing_it(llm):
    bogus = "ifr_notarealkey_" + "x" * 30
    with pytest.raises(openai.AuthenticationError) as caught:
        _chat(llm.sdk(bogus))
    error = assert_sdk_error(caught.value, 401, "AUTHENTICATION_FAILED")
    assert bogus not in error["message"] and "x" * 30 not in error["message"]


def test_well_formed_key_with_a_wrong_secret_is_401_naming_only_its_prefix(llm):
    real = llm.key()
    public_id = real.split("_")[1]
    forged = generate(public_id=public_id).plaintext  # same public id, other secret
    assert forged != real
    with pytest.raises(openai.AuthenticationError) as caught:
        _chat(llm.sdk(forged))
    error = assert_sdk_error(caught.value, 401, "AUTHENTICATION_FAILED")
    assert f"ifr_{public_id}" in error["message"]
    assert forged not in error["message"] and forged.split("_")[2][:10] not in error["message"]


def test_revoked_key_is_401_naming_only_its_prefix(llm, bob_client):
    info = llm.key_info(bob_client)
    assert bob_client.delete(f"/api/v1/orgs/acme/api-keys/{info['id']}").status_code == 200
    with pytest.raises(openai.AuthenticationError) as caught:
        _chat(llm.sdk(info["key"]))
    error = assert_sdk_error(caught.value, 401, "AUTHENTICATION_FAILED")
    assert error["message"] == f"API key {info['prefix']} is revoked"
    assert info["key"] not in str(caught.value.body)


def test_expired_key_is_401(llm, clock_shift):
    key = llm.key(expires_in_days=1)
    _chat(llm.sdk(key))  # valid now, and cached
    clock_shift(timedelta(days=1, seconds=1).total_seconds())
    with pytest.raises(openai.AuthenticationError) as caught:
        _chat(llm.sdk(key))
    error = assert_sdk_error(caught.value, 401, "AUTHENTICATION_FAILED")
    assert error["message"] == f"API key {llm.key_row(key).prefix} is expired"


def test_key_without_inference_run_is_403(llm):
    key = llm.key(permissions=["model:read"])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _chat(llm.sdk(key))
    error = assert_sdk_error(caught.value, 403, "PERMISSION_DENIED")
    assert error["message"] == "Missing permission inference:run"
    assert error["type"] == "permission_error"


def test_streaming_without_inference_stream_is_403_but_a_plain_call_works(llm):
    client = llm.sdk(llm.key(permissions=["inference:run"]))
    assert _chat(client).choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _chat(client, stream=True)
    error = assert_sdk_error(caught.value, 403, "PERMISSION_DENIED")
    assert error["message"] == "Missing permission inference:stream"


def test_model_no_rule_grants_is_403(llm):
    llm.grant("authz_rules:\n  - models: ['openai-main/gpt-4o']\n    users: [bob]\n")
    client = llm.sdk(llm.key())
    assert _chat(client).model == "openai-main/gpt-4o"
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _chat(client, model="openai-main/gpt-4o-mini")
    error = assert_sdk_error(caught.value, 403, "PERMISSION_DENIED")
    assert "openai-main/gpt-4o-mini" in error["message"]


def test_member_without_any_rule_is_403(llm, cast):
    llm.grant("authz_rules: []\n")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _chat(llm.sdk(llm.key()))
    assert_sdk_error(caught.value, 403, "PERMISSION_DENIED")


def test_unknown_model_is_404(llm):
    client = llm.sdk(llm.key())
    for model in ("openai-main/gpt-5-imaginary", "nowhere/gpt-4o", "gpt-4o"):
        with pytest.raises(openai.NotFoundError) as caught:
            _chat(client, model=model)
        error = assert_sdk_error(caught.value, 404, "NOT_FOUND")
        assert error["type"] == "not_found_error"


def test_key_restricted_to_one_model_cannot_use_another(llm):
    client = llm.sdk(llm.key(models=["openai-main/gpt-4o"]))
    assert _chat(client).model == "openai-main/gpt-4o"
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _chat(client, model="openai-main/gpt-4o-mini")
    assert_sdk_error(caught.value, 403, "PERMISSION_DENIED")
    assert {m.id for m in client.models.list()} == {"openai-main/gpt-4o"}


def test_access_token_works_with_the_org_slug_in_openai_organization(llm, cast):
    add_member(cast.globex, cast.bob, "member")  # bob now belongs to two orgs
    token = auth.token_pair_issue(user=cast.bob).access_token
    completion = _chat(llm.sdk(token, organization="acme"))
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    # Without the header the gateway cannot tell which org is meant.
    with pytest.raises(openai.NotFoundError) as caught:
        _chat(llm.sdk(token))
    assert_sdk_error(caught.value, 404, "NOT_FOUND")
    # Globex has no rule for bob and no such model.
    with pytest.raises(openai.NotFoundError) as caught:
        _chat(llm.sdk(token, organization="globex"))
    assert_sdk_error(caught.value, 404, "NOT_FOUND")


def test_access_token_for_an_org_the_user_is_not_in_is_404(llm, cast):
    token = auth.token_pair_issue(user=cast.bob).access_token
    with pytest.raises(openai.NotFoundError) as caught:
        _chat(llm.sdk(token, organization="globex"))
    assert_sdk_error(caught.value, 404, "NOT_FOUND")


def test_refresh_token_is_not_an_access_token(llm, cast):
    refresh = auth.token_pair_issue(user=cast.bob).refresh_token
    with pytest.raises(openai.AuthenticationError) as caught:
        _chat(llm.sdk(refresh, organization="acme"))
    assert_sdk_error(caught.value, 401, "AUTHENTICATION_FAILED")


def test_another_orgs_model_is_404_even_with_a_catch_all_rule(llm, cast, charlie_client):
    port = llm.upstream.url.rsplit(":", 1)[1]
    assert (
        charlie_client.patch(
            "/api/v1/orgs/globex",
            {"settings": {"allowed_private_hosts": [f"127.0.0.1:{port}"]}},
            format="json",
        ).status_code
        == 200
    )
    created = charlie_client.post(
        "/api/v1/orgs/globex/provider-accounts",
        {
            "name": "globex-ai",
            "provider_type": "openai",
            "base_url": f"{llm.upstream.url}/v1",
            "models": [{"name": "gpt-4o"}],
            "secret": "sk-globex-secret-0123456789",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    llm.grant("authz_rules:\n  - models: ['*']\n    users: [bob]\n")
    client = llm.sdk(llm.key())
    assert _chat(client).model == "openai-main/gpt-4o"
    with pytest.raises(openai.NotFoundError) as caught:
        _chat(client, model="globex-ai/gpt-4o")
    assert_sdk_error(caught.value, 404, "NOT_FOUND")
    assert "globex-ai/gpt-4o" not in {m.id for m in client.models.list()}


def test_models_lists_only_what_the_caller_may_use(llm, cast):
    llm.grant(
        "authz_rules:\n  - models: ['openai-main/gpt-4o', 'openai-main/gpt-4o-mini']\n    users: [bob]\n"
    )
    ids = [m.id for m in llm.sdk(llm.key()).models.list()]
    assert ids == ["openai-main/gpt-4o", "openai-main/gpt-4o-mini"]
    # A key that may not run inference lists nothing, even with a rule.
    assert list(llm.sdk(llm.key(permissions=["model:read"])).models.list()) == []
    # dave (admin) may run inference but no rule grants him a model.
    dave_key = llm.key(client_for(cast.dave))
    assert list(llm.sdk(dave_key).models.list()) == []


def test_models_without_a_credential_is_401(llm):
    assert_gateway_error(httpx.get(f"{llm.base_url}/models"), 401, "AUTHENTICATION_FAILED")


def test_refused_credentials_are_audited_without_the_credential(llm):
    from audit.models import AuditRecord

    forged = "ifr_ABCDEFGHIJKL_" + "x" * 50
    response = llm.post(
        "/chat/completions", forged, {"model": "openai-main/gpt-4o", "messages": []}
    )
    assert response.status_code == 401
    record = AuditRecord.objects.get(
        action="auth:gateway", request_id=response.headers["X-Request-ID"]
    )
    assert record.outcome == "denied" and record.status_code == 401
    assert forged not in str(record.data) and record.client_ip == "127.0.0.1"
