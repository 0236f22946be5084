"""An Inferia key in any of the three credential headers, on the gateway.

``Authorization: Bearer <key>`` (OpenAI SDKs), ``X-API-Key: <key>`` (Anthropic SDK)
and ``api-key: <key>`` (Azure OpenAI SDKs). Two different credentials at once are
ambiguous (401), never "the first one wins". The API edge is tested in
``tests/inferia/test_key_headers_api.py``; both use ``inferia.authentication.credential_from``.
"""

from __future__ import annotations

import httpx
import openai
import pytest

from audit.models import AuditRecord, UsageRecord
from tests.gateway.conftest import assert_gateway_error, flush_usage

CHAT = {"model": "openai-main/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
THREE_WAYS = ("Authorization: Bearer <key>", "X-API-Key: <key>", "api-key: <key>")


def _chat(llm, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{llm.base_url}/chat/completions", json=CHAT, headers=headers, timeout=30)


@pytest.mark.parametrize(
    "header",
    ["Authorization", "X-API-Key", "api-key", "API-KEY", "x-api-key"],
)
def test_a_key_works_in_each_header(llm, header):
    key = llm.key()
    value = f"Bearer {key}" if header == "Authorization" else key
    response = _chat(llm, {header: value})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    flush_usage()
    record = UsageRecord.objects.get(request_id=response.headers["X-Request-ID"])
    assert record.key_prefix == llm.key_row(key).prefix
    assert record.status_code == 200


def test_the_same_key_in_several_headers_is_one_credential(llm):
    key = llm.key()
    response = _chat(llm, {"Authorization": f"Bearer {key}", "X-API-Key": key, "api-key": key})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("first", "second"),
    [("Authorization", "X-API-Key"), ("Authorization", "api-key"), ("X-API-Key", "api-key")],
)
def test_two_different_keys_are_ambiguous(llm, first, second):
    # Each key works alone; together neither wins.
    one, other = llm.key(), llm.key()
    assert _chat(llm, {"X-API-Key": one}).status_code == 200
    assert _chat(llm, {"api-key": other}).status_code == 200

    def value(header: str, key: str) -> str:
        return f"Bearer {key}" if header == "Authorization" else key

    response = _chat(llm, {first: value(first, one), second: value(second, other)})
    error = assert_gateway_error(response, 401, "AUTHENTICATION_FAILED")
    assert error["type"] == "authentication_error"
    assert "Two different credentials" in error["message"]
    for way in THREE_WAYS:
        assert way in error["message"]
    # Neither key's secret part is echoed.
    for key in (one, other):
        assert key not in response.text
    # A valid key next to a wrong one is refused too (the valid one does not win).
    response = _chat(llm, {first: value(first, one), second: value(second, "ifr_wrong_key")})
    assert_gateway_error(response, 401, "AUTHENTICATION_FAILED")
    # The refusal is audited like any failed authentication, without the credentials.
    refused = AuditRecord.objects.filter(action="auth:gateway", outcome="denied")
    assert refused.count() == 2
    for record in refused:
        assert one not in str(record.data) and other not in str(record.data)


def test_no_key_names_the_three_headers(llm):
    response = httpx.post(f"{llm.base_url}/chat/completions", json=CHAT, timeout=30)
    error = assert_gateway_error(response, 401, "AUTHENTICATION_FAILED")
    for way in THREE_WAYS:
        assert way in error["message"], error["message"]
    # An Authorization header of another scheme is no Inferia credential.
    response = _chat(llm, {"Authorization": "Basic Ym9iOnB3"})
    error = assert_gateway_error(response, 401, "AUTHENTICATION_FAILED")
    assert all(way in error["message"] for way in THREE_WAYS)


def test_models_listing_with_the_azure_header(llm):
    response = httpx.get(f"{llm.base_url}/models", headers={"api-key": llm.key()}, timeout=30)
    assert response.status_code == 200, response.text
    assert "openai-main/gpt-4o" in [m["id"] for m in response.json()["data"]]


def test_openai_sdk_sending_only_the_azure_header(llm, upstream_requests):
    """The key in ``api-key`` and no Authorization, on the ``/v1/`` paths: the OpenAI
    SDK with the Azure header and its Authorization header removed; the request is
    checked to carry exactly that. (``openai.AzureOpenAI`` itself, on its deployment
    URLs, is tested in ``tests/clients/test_azure_openai_sdk.py``.)"""
    key = llm.key()
    client = openai.OpenAI(
        base_url=llm.base_url,
        api_key="unused",  # required by the SDK; its Authorization header is omitted below
        max_retries=0,
        default_headers={"api-key": key, "Authorization": openai.Omit()},
    )
    raw = client.chat.completions.with_raw_response.create(
        **CHAT, extra_headers={"Authorization": openai.Omit()}
    )
    assert "authorization" not in raw.http_request.headers
    assert raw.http_request.headers["api-key"] == key
    assert raw.parse().choices[0].message.content == "Hello from the fake upstream."
    # The upstream got the account's secret, never the caller's key.
    assert key not in str(upstream_requests[-1]["headers"])


@pytest.mark.parametrize("header", ["X-API-Key", "api-key"])
def test_the_rest_api_over_real_http_takes_each_header(llm, header):
    """The same headers on the REST API served by the same ASGI application (a real
    HTTP header name, not a test client's META key)."""
    server = llm.base_url.removesuffix("/api/llm/v1")
    key = llm.key()
    response = httpx.get(f"{server}/api/v1/orgs/acme/access-rules", headers={header: key})
    assert response.status_code == 200, response.text
    both = {"X-API-Key": key, "api-key": llm.key()}
    response = httpx.get(f"{server}/api/v1/orgs/acme/access-rules", headers=both)
    assert response.status_code == 401
    assert "Two different credentials" in response.json()["error"]["message"]
