"""Requests the gateway refuses before calling upstream: size, prompt length, JSON,
content type, fields and methods, all in the contract's envelope (plus ``type``)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.gateway.conftest import assert_gateway_error, assert_sdk_error

BODY = {"model": "openai-main/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def _post_raw(
    llm,
    key: str,
    content: bytes,
    content_type: str = "application/json",
    path: str = "/chat/completions",
):
    return httpx.post(
        f"{llm.base_url}{path}",
        content=content,
        headers={"Authorization": f"Bearer {key}", "Content-Type": content_type},
        timeout=30,
    )


def test_a_valid_request_reaches_upstream(llm, upstream_requests):
    assert llm.post("/chat/completions", llm.key(), BODY).status_code == 200
    assert len(upstream_requests) == 1


def test_body_over_the_orgs_limit_is_413(llm, upstream_requests):
    llm.org_settings(max_body_bytes=2048)
    key = llm.key()
    small = {**BODY, "messages": [{"role": "user", "content": "x" * 1500}]}
    assert llm.post("/chat/completions", key, small).status_code == 200
    big = {**BODY, "messages": [{"role": "user", "content": "x" * 2100}]}
    error = assert_gateway_error(llm.post("/chat/completions", key, big), 413, "PAYLOAD_TOO_LARGE")
    assert "2048" in error["message"]
    assert error["type"] == "invalid_request_error"
    assert len(upstream_requests) == 1


def test_body_over_the_global_limit_is_413_in_the_gateways_envelope(llm, settings):
    # 10 MB by default; refused from Content-Length before the body is parsed.
    content = json.dumps(
        {**BODY, "messages": [{"role": "user", "content": "x" * (10 * 1024 * 1024)}]}
    ).encode()
    error = assert_gateway_error(_post_raw(llm, llm.key(), content), 413, "PAYLOAD_TOO_LARGE")
    assert error["type"] == "invalid_request_error"


def test_sdk_sees_413(llm):
    llm.org_settings(max_body_bytes=1024)
    with pytest.raises(openai.APIStatusError) as caught:
        llm.sdk(llm.key()).chat.completions.create(
            model="openai-main/gpt-4o", messages=[{"role": "user", "content": "y" * 2000}]
        )
    assert_sdk_error(caught.value, 413, "PAYLOAD_TOO_LARGE")


def test_prompt_limit_counts_every_message(llm, upstream_requests):
    llm.org_settings(max_prompt_chars=100)
    client = llm.sdk(llm.key())
    fits = [{"role": "system", "content": "s" * 50}, {"role": "user", "content": "u" * 50}]
    assert client.chat.completions.create(model="openai-main/gpt-4o", messages=fits).choices
    too_long = [
        {"role": "system", "content": "s" * 40},
        {"role": "user", "content": "u" * 40},
        {"role": "assistant", "content": "a" * 10},
        {
            "role": "user",
            "content": [{"type": "text", "text": "p" * 11}],
        },  # content parts count too
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="openai-main/gpt-4o", messages=too_long)
    error = assert_sdk_error(caught.value, 400, "VALIDATION_ERROR")
    assert "101" in error["message"] and "100" in error["message"]
    assert error["details"] == {"messages": ["At most 100 characters."]}
    assert len(upstream_requests) == 1


def test_default_prompt_limit_is_10000_characters(llm):
    client = llm.sdk(llm.key())
    half = "z" * 5000
    client.chat.completions.create(
        model="openai-main/gpt-4o",
        messages=[{"role": "user", "content": half}, {"role": "user", "content": half}],
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="openai-main/gpt-4o",
            messages=[{"role": "user", "content": half}, {"role": "user", "content": half + "!"}],
        )
    assert_sdk_error(caught.value, 400, "VALIDATION_ERROR")


def test_prompt_limit_applies_to_completions_and_embeddings(llm):
    llm.org_settings(max_prompt_chars=10)
    client = llm.sdk(llm.key())
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="openai-main/gpt-4o-mini", prompt="p" * 11)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(
            model="openai-main/text-embedding-3-small", input=["a" * 6, "b" * 5]
        )
    assert client.embeddings.create(
        model="openai-main/text-embedding-3-small", input=["a" * 5, "b" * 5]
    ).data


def test_malformed_json_is_400(llm, upstream_requests):
    response = _post_raw(llm, llm.key(), b'{"model": "openai-main/gpt-4o", "messages": [')
    error = assert_gateway_error(response, 400, "VALIDATION_ERROR")
    assert error["type"] == "invalid_request_error"
    assert set(error["details"]) == {"body"}
    assert upstream_requests == []


def test_json_that_is_not_an_object_is_400(llm):
    assert_gateway_error(
        _post_raw(llm, llm.key(), b'["openai-main/gpt-4o"]'), 400, "VALIDATION_ERROR"
    )


def test_wrong_content_type_is_415(llm, upstream_requests):
    key = llm.key()
    content = json.dumps(BODY).encode()
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ):
        error = assert_gateway_error(
            _post_raw(llm, key, content, content_type), 415, "UNSUPPORTED_MEDIA_TYPE"
        )
        assert error["type"] == "invalid_request_error"
    assert upstream_requests == []
    assert _post_raw(llm, key, content, "application/json; charset=utf-8").status_code == 200


def test_missing_model_is_400(llm, upstream_requests):
    key = llm.key()
    for body in ({"messages": BODY["messages"]}, {**BODY, "model": ""}, {**BODY, "model": 42}):
        error = assert_gateway_error(
            llm.post("/chat/completions", key, body), 400, "VALIDATION_ERROR"
        )
        assert set(error["details"]) == {"model"}
    assert upstream_requests == []


def test_get_on_chat_completions_is_405(llm):
    key = llm.key()
    for path in ("/chat/completions", "/completions", "/embeddings"):
        response = httpx.get(f"{llm.base_url}{path}", headers={"Authorization": f"Bearer {key}"})
        error = assert_gateway_error(response, 405, "METHOD_NOT_ALLOWED")
        assert response.headers["Allow"] == "POST"
        assert error["type"] == "invalid_request_error"


def test_post_on_models_is_405(llm):
    response = httpx.post(
        f"{llm.base_url}/models", json={}, headers={"Authorization": f"Bearer {llm.key()}"}
    )
    assert_gateway_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == "GET"


def test_org_limits_cannot_be_set_to_nonsense(llm):
    response = llm.admin.patch(
        "/api/v1/orgs/acme", {"settings": {"max_body_bytes": 10}}, format="json"
    )
    assert response.status_code == 400
    response = llm.admin.patch(
        "/api/v1/orgs/acme", {"settings": {"max_prompt_chars": 0}}, format="json"
    )
    assert response.status_code == 400
