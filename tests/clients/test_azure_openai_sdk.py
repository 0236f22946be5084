"""The official ``openai.AzureOpenAI`` client against the gateway, unchanged.

``AzureOpenAI(azure_endpoint="<server>/api/llm", api_key=<inferia key>, api_version=...)``
rewrites each call to ``/api/llm/openai/deployments/<deployment>/<endpoint>?api-version=``
with the model FQN as the deployment (percent-encoded: ``openai-main%2Fgpt-4o``) and the
key in ``api-key``. The gateway serves that URL shape as the same endpoints as
``/api/llm/v1/...``: same governance, limits, streaming and usage records.
"""

from __future__ import annotations

import httpx
import openai
import pytest

from audit.models import AuditRecord
from tests.gateway.conftest import (
    UPSTREAM_SECRET,
    assert_gateway_error,
    assert_sdk_error,
    usage_rows,
)

ANSWER = "Hello from the fake upstream."
CHAT_MODEL = "openai-main/gpt-4o"
EMBEDDING_MODEL = "openai-main/text-embedding-3-small"
GRANTED = (
    "authz_rules:\n  - models: ['openai-main/gpt-4o', 'openai-main/text-embedding-3-small', "
    "'hf/*']\n    users: [bob]\n"
)
NOT_GRANTED = "openai-main/gpt-4o-mini"  # in Acme's catalog, granted to nobody here
CHAT = [{"role": "user", "content": "Say hello"}]
API_VERSION = "2024-10-21"


@pytest.fixture
def key(llm) -> str:
    llm.grant(GRANTED)
    return llm.key()


def endpoint(llm) -> str:
    """What a user passes as ``azure_endpoint``: the server plus ``/api/llm``."""
    return llm.base_url.removesuffix("/v1")


def azure(llm, key: str, **options) -> openai.AzureOpenAI:
    """The client as a user would build it, without automatic retries."""
    return openai.AzureOpenAI(
        azure_endpoint=endpoint(llm),
        api_key=key,
        api_version=API_VERSION,
        max_retries=0,
        timeout=30,
        **options,
    )


def test_chat(llm, key, upstream_requests):
    raw = azure(llm, key).chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=CHAT)
    # What the SDK sent: the deployment URL, the key in api-key only.
    sent = raw.http_request
    assert sent.url.raw_path == (
        b"/api/llm/openai/deployments/openai-main%2Fgpt-4o/chat/completions"
        b"?api-version=" + API_VERSION.encode()
    )
    assert sent.headers["api-key"] == key and "authorization" not in sent.headers
    chat = raw.parse()
    assert chat.choices[0].message.content == ANSWER
    assert chat.usage.completion_tokens == 6
    # The upstream got the model part and the account's secret, never the caller's key.
    [upstream] = upstream_requests
    assert upstream["path"] == "/v1/chat/completions"
    assert upstream["body"]["model"] == "gpt-4o"
    assert upstream["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert key not in str(upstream["headers"])
    # The same usage and audit records as /api/llm/v1/chat/completions.
    [record] = usage_rows(request_id=raw.headers["X-Request-ID"])
    assert (record.endpoint, record.model, record.status_code, record.streamed) == (
        "chat",
        CHAT_MODEL,
        200,
        False,
    )
    assert record.key_prefix == llm.key_row(key).prefix
    assert (record.prompt_tokens, record.completion_tokens) == (2, 6)
    audit = AuditRecord.objects.get(request_id=raw.headers["X-Request-ID"])
    assert (audit.action, audit.outcome, audit.target_id) == (
        "inference:run",
        "success",
        CHAT_MODEL,
    )


def test_streamed_chat(llm, key):
    stream = azure(llm, key).chat.completions.create(model=CHAT_MODEL, messages=CHAT, stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == ANSWER
    [record] = usage_rows(endpoint="chat", streamed=True)
    assert (record.model, record.status_code, record.completion_tokens) == (CHAT_MODEL, 200, 6)


def test_streaming_needs_inference_stream(llm):
    llm.grant(GRANTED)
    key = llm.key(permissions=["inference:run"])
    client = azure(llm, key)
    assert client.chat.completions.create(model=CHAT_MODEL, messages=CHAT).choices
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model=CHAT_MODEL, messages=CHAT, stream=True)
    error = assert_sdk_error(caught.value, 403, "PERMISSION_DENIED")
    assert "inference:stream" in error["message"]


def test_embeddings(llm, key, upstream_requests):
    embedded = azure(llm, key).embeddings.create(model=EMBEDDING_MODEL, input=["a", "b"])
    assert [d.embedding for d in embedded.data] == [[0.1, 0.2, 0.3]] * 2
    assert upstream_requests[0]["body"]["input"] == ["a", "b"]
    [record] = usage_rows(endpoint="embeddings")
    assert (record.model, record.status_code) == (EMBEDDING_MODEL, 200)


def test_completions_of_a_model_whose_name_ends_like_an_endpoint(llm, key, upstream_requests):
    """``hf/org/chat`` + ``/completions`` would read as ``hf/org`` + ``/chat/completions``
    in the decoded path; the SDK's ``%2F`` keeps them apart."""
    llm.add_account("hf", "openai_compatible", f"{llm.upstream.url}/v1", [{"name": "org/chat"}])
    raw = azure(llm, key).completions.with_raw_response.create(model="hf/org/chat", prompt="hi")
    assert raw.http_request.url.raw_path.startswith(
        b"/api/llm/openai/deployments/hf%2Forg%2Fchat/completions?"
    )
    assert raw.parse().choices[0].text
    assert upstream_requests[0]["path"] == "/v1/completions"
    assert upstream_requests[0]["body"]["model"] == "org/chat"
    [record] = usage_rows(request_id=raw.headers["X-Request-ID"])
    assert (record.endpoint, record.model, record.status_code) == (
        "completions",
        "hf/org/chat",
        200,
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.chat.completions.create(model=NOT_GRANTED, messages=CHAT),
        lambda c: list(c.chat.completions.create(model=NOT_GRANTED, messages=CHAT, stream=True)),
        lambda c: c.embeddings.create(model=NOT_GRANTED, input="a"),
    ],
    ids=["chat", "chat-stream", "embeddings"],
)
def test_a_model_the_key_may_not_use(llm, key, upstream_requests, call):
    with pytest.raises(openai.PermissionDeniedError) as caught:
        call(azure(llm, key))
    error = assert_sdk_error(caught.value, 403, "PERMISSION_DENIED")
    assert NOT_GRANTED in error["message"] and error["type"] == "permission_error"
    assert upstream_requests == []
    [record] = usage_rows(status_code=403)
    assert (record.model, record.error_code) == (NOT_GRANTED, "PERMISSION_DENIED")


def test_a_key_limited_to_other_models(llm, upstream_requests):
    """The key's own model list applies to the deployment in the path."""
    llm.grant(GRANTED)
    key = llm.key(models=[EMBEDDING_MODEL])
    with pytest.raises(openai.PermissionDeniedError):
        azure(llm, key).chat.completions.create(model=CHAT_MODEL, messages=CHAT)
    assert upstream_requests == []


def test_a_model_no_account_serves(llm, key):
    with pytest.raises(openai.NotFoundError) as caught:
        azure(llm, key).chat.completions.create(model="nowhere/gpt-4o", messages=CHAT)
    assert_sdk_error(caught.value, 404, "NOT_FOUND")


def test_a_bad_key(llm, key, upstream_requests):
    with pytest.raises(openai.AuthenticationError) as caught:
        azure(llm, "ifr_wrong_key").chat.completions.create(model=CHAT_MODEL, messages=CHAT)
    error = assert_sdk_error(caught.value, 401, "AUTHENTICATION_FAILED")
    assert error["type"] == "authentication_error"
    assert upstream_requests == []
    refused = AuditRecord.objects.get(action="auth:gateway", outcome="denied")
    assert refused.data["endpoint"] == "chat"
    assert "ifr_wrong_key" not in str(refused.data)


def test_a_deployment_client_and_a_different_model_in_the_body(llm, key, upstream_requests):
    """``azure_deployment=`` puts the deployment in the base URL (unencoded, so the
    endpoint suffix splits it); the body's ``model`` must then name the same one."""
    client = azure(llm, key, azure_deployment=CHAT_MODEL)
    chat = client.chat.completions.create(model=CHAT_MODEL, messages=CHAT)
    assert chat.choices[0].message.content == ANSWER
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=NOT_GRANTED, messages=CHAT)
    error = assert_sdk_error(caught.value, 400, "VALIDATION_ERROR")
    assert "model" in error["details"]
    assert len(upstream_requests) == 1  # the refused call never reached it
    records = usage_rows(2, endpoint="chat")
    assert [(r.model, r.status_code, r.error_code) for r in records] == [
        (CHAT_MODEL, 200, ""),
        (CHAT_MODEL, 400, "VALIDATION_ERROR"),
    ]


def test_the_model_may_be_left_out_of_the_body(llm, key, upstream_requests):
    url = f"{endpoint(llm)}/openai/deployments/openai-main%2Fgpt-4o/chat/completions"
    response = httpx.post(
        url,
        params={"api-version": "any value at all"},
        json={"messages": CHAT},
        headers={"api-key": key},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert upstream_requests[0]["body"]["model"] == "gpt-4o"
    [record] = usage_rows(request_id=response.headers["X-Request-ID"])
    assert (record.endpoint, record.model) == ("chat", CHAT_MODEL)
    # A model that is not a string is no match for the path.
    response = httpx.post(url, json={"model": 7, "messages": CHAT}, headers={"api-key": key})
    assert_gateway_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("POST", "/openai/deployments/openai-main%2Fgpt-4o/images/generations", 404, "NOT_FOUND"),
        ("POST", "/openai/deployments/chat/completions", 404, "NOT_FOUND"),
        ("POST", "/openai/deployments//chat/completions", 404, "NOT_FOUND"),
        ("POST", "/openai/deployments/openai-main%2Fgpt-4o/chat/completions/", 404, "NOT_FOUND"),
        ("GET", "/openai/deployments/openai-main%2Fgpt-4o/chat/completions", 405, ""),
    ],
)
def test_other_deployment_paths(llm, key, method, path, status, code):
    response = httpx.request(
        method, f"{endpoint(llm)}{path}", json={"messages": CHAT}, headers={"api-key": key}
    )
    if status == 405:
        assert response.status_code == 405 and response.headers["Allow"] == "POST"
    else:
        assert_gateway_error(response, status, code)
