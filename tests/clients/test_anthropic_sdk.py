"""The official ``anthropic`` SDK against the gateway's Messages API, unchanged.

``Anthropic(base_url="<gateway>/api/llm", api_key=<inferia key>)``: the SDK adds
``/v1/messages`` and sends the key in ``X-API-Key``. Served for an OpenAI account
and an Anthropic account alike (gateway/messages.py translates to chat completions
and back), governed, limited and metered like chat completions.
"""

from __future__ import annotations

import anthropic
import pytest

from audit.models import AuditRecord, UsageRecord
from tests.gateway.conftest import UPSTREAM_SECRET, flush_usage, wait_for

PROMPT = [{"role": "user", "content": "Say hello"}]
ANSWER = "Hello from the fake upstream."


@pytest.fixture
def claude(llm):
    """Acme also has 'claude', an Anthropic account, and 'vllm', an OpenAI-compatible one,
    on the fake upstream; bob may use every model of the three accounts."""
    llm.add_account(
        "claude",
        "anthropic",
        llm.upstream.url,
        [
            {
                "name": "claude-sonnet-4",
                "input_price_per_million": 3,
                "output_price_per_million": 15,
            },
            {"name": "fake-stops"},
        ],
    )
    # An OpenAI-compatible server (vLLM reports the stop sequence that matched).
    llm.add_account("vllm", "openai_compatible", f"{llm.upstream.url}/v1", [{"name": "fake-stops"}])
    llm.grant(
        "authz_rules:\n  - models: ['openai-main/*', 'claude/*', 'vllm/*']\n    users: [bob]\n"
    )
    return llm


def sdk(llm, key: str) -> anthropic.Anthropic:
    """The official client as a user would build it, without automatic retries (they
    would hide 429s and spend the limits under test)."""
    return anthropic.Anthropic(
        base_url=llm.base_url.removesuffix("/v1"), api_key=key, max_retries=0, timeout=30
    )


# (model, the path the fake upstream saw, the header that carried the account's secret)
ACCOUNTS = [
    ("openai-main/gpt-4o", "/v1/chat/completions", ("authorization", f"Bearer {UPSTREAM_SECRET}")),
    ("claude/claude-sonnet-4", "/v1/messages", ("x-api-key", UPSTREAM_SECRET)),
]


@pytest.mark.parametrize(("model", "path", "secret"), ACCOUNTS)
def test_messages_create(claude, upstream_requests, model, path, secret):
    key = claude.key()
    raw = sdk(claude, key).messages.with_raw_response.create(
        model=model,
        max_tokens=64,
        system="Be brief.",
        messages=PROMPT,
        temperature=0.5,
        metadata={"user_id": "end-user-7"},
    )
    message = raw.parse()
    assert isinstance(message, anthropic.types.Message)
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == model
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == ANSWER
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert message.usage.output_tokens == 6 and message.usage.input_tokens > 0
    # The upstream got a real request in its own format, with the account's secret only.
    sent = upstream_requests[-1]
    assert sent["path"] == path
    assert sent["headers"][secret[0]] == secret[1]
    assert key not in str(sent)
    assert sent["body"]["max_tokens"] == 64 and sent["body"]["temperature"] == 0.5
    # Metered like a chat completion, under its own endpoint name.
    flush_usage()
    record = UsageRecord.objects.get(request_id=raw.headers["X-Request-ID"])
    assert (record.endpoint, record.model, record.status_code, record.streamed) == (
        "messages",
        model,
        200,
        False,
    )
    assert (record.prompt_tokens, record.completion_tokens) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )
    assert record.key_prefix == claude.key_row(key).prefix
    assert raw.headers["X-RateLimit-Remaining"]


@pytest.mark.parametrize(("model", "path", "secret"), ACCOUNTS)
def test_messages_stream_helper(claude, upstream_requests, model, path, secret):
    client = sdk(claude, claude.key())
    with client.messages.stream(model=model, max_tokens=64, messages=PROMPT) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == ANSWER and len(pieces) == 6
    assert final.content[0].text == ANSWER
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 6 and final.usage.input_tokens > 0
    assert upstream_requests[-1]["path"] == path
    assert upstream_requests[-1]["body"]["stream"] is True

    def streamed():
        flush_usage()
        return UsageRecord.objects.filter(streamed=True).first()

    # Written as the stream ends: waited for, should a client hang up at message_stop.
    record = wait_for(streamed, what="the usage record")
    assert (record.endpoint, record.model, record.status_code) == ("messages", model, 200)
    assert (record.prompt_tokens, record.completion_tokens) == (final.usage.input_tokens, 6)


@pytest.mark.parametrize(("model", "path", "secret"), ACCOUNTS)
def test_stream_true_event_types(claude, model, path, secret):
    events = list(
        sdk(claude, claude.key()).messages.create(
            model=model, max_tokens=64, messages=PROMPT, stream=True
        )
    )
    kinds = [event.type for event in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 6,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0].message.model == model
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == ANSWER
    delta = events[-2]
    assert delta.delta.stop_reason == "end_turn" and delta.usage.output_tokens == 6


@pytest.mark.parametrize("model", ["vllm/fake-stops", "claude/fake-stops"])
def test_stop_reasons_through_the_sdk(claude, model):
    """The fake-stops model obeys max_tokens and stop sequences, on both upstream formats."""
    client = sdk(claude, claude.key())
    cut = client.messages.create(model=model, max_tokens=2, messages=PROMPT)
    assert (cut.content[0].text, cut.stop_reason) == ("Hello from", "max_tokens")
    assert cut.usage.output_tokens == 2
    stopped = client.messages.create(
        model=model, max_tokens=64, messages=PROMPT, stop_sequences=["nothing", " fake"]
    )
    assert stopped.content[0].text == "Hello from the"
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", " fake")
    with client.messages.stream(
        model=model, max_tokens=64, messages=PROMPT, stop_sequences=[" fake"]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Hello from the"
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", " fake")


def test_a_model_the_key_may_not_use(claude, upstream_requests):
    claude.grant("authz_rules:\n  - models: ['openai-main/gpt-4o']\n    users: [bob]\n")
    client = sdk(claude, claude.key())
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        client.messages.create(model="claude/claude-sonnet-4", max_tokens=8, messages=PROMPT)
    assert denied.value.status_code == 403
    assert denied.value.body == {
        "type": "error",
        "error": {
            "type": "permission_error",
            "code": "PERMISSION_DENIED",
            "message": "You may not use the model claude/claude-sonnet-4",
            "details": None,
        },
    }
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="claude/no-such-model", max_tokens=8, messages=PROMPT)
    assert missing.value.body["error"]["type"] == "not_found_error"
    assert missing.value.body["error"]["code"] == "NOT_FOUND"
    # A key without inference:stream may not stream (the non-streamed call works).
    no_stream = sdk(claude, claude.key(permissions=["inference:run"]))
    assert no_stream.messages.create(model="openai-main/gpt-4o", max_tokens=8, messages=PROMPT)
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        with no_stream.messages.stream(
            model="openai-main/gpt-4o", max_tokens=8, messages=PROMPT
        ) as stream:
            list(stream.text_stream)
    assert "inference:stream" in refused.value.body["error"]["message"]
    assert len(upstream_requests) == 1  # refused calls never reached the upstream
    flush_usage()
    refusals = UsageRecord.objects.filter(endpoint="messages", status_code__in=(403, 404))
    assert refusals.count() == 3


def test_a_bad_key(claude):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        sdk(claude, "ifr_not_a_real_key").messages.create(
            model="openai-main/gpt-4o", max_tokens=8, messages=PROMPT
        )
    assert caught.value.status_code == 401
    body = caught.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["code"] == "AUTHENTICATION_FAILED"
    assert "ifr_not_a_real_key" not in str(body)
    assert AuditRecord.objects.filter(action="auth:gateway", outcome="denied").count() == 1


def test_over_quota(claude):
    key = claude.key()
    row = claude.key_row(key)
    row.monthly_token_quota = 200
    row.save(update_fields=["monthly_token_quota"])
    client = sdk(claude, key)
    client.messages.create(model="openai-main/gpt-4o", max_tokens=10, messages=PROMPT)
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="openai-main/gpt-4o", max_tokens=500, messages=PROMPT)
    body = caught.value.body
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["code"] == "QUOTA_EXCEEDED"
    assert "quota" in body["error"]["message"].lower()
    assert int(caught.value.response.headers["Retry-After"]) >= 1
    flush_usage()
    assert list(
        UsageRecord.objects.filter(endpoint="messages")
        .order_by("created_at")
        .values_list("status_code", "error_code")
    ) == [(200, ""), (429, "QUOTA_EXCEEDED")]


def test_bad_request_is_a_bad_request_error(claude):
    client = sdk(claude, claude.key())
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="openai-main/gpt-4o",
            max_tokens=8,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
                        }
                    ],
                }
            ],
        )
    error = caught.value.body["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "VALIDATION_ERROR")
    assert error["details"] == {"messages[0].content[0]": [error["message"]]}
    assert "'image'" in error["message"]


def test_the_key_as_auth_token_and_the_async_client(claude):
    """``auth_token=`` sends the key as ``Authorization: Bearer``; the async client
    streams the same events."""
    import asyncio

    key = claude.key()
    base_url = claude.base_url.removesuffix("/v1")
    bearer = anthropic.Anthropic(base_url=base_url, auth_token=key, max_retries=0)
    raw = bearer.messages.with_raw_response.create(
        model="claude/claude-sonnet-4", max_tokens=16, messages=PROMPT
    )
    assert raw.http_request.headers["authorization"] == f"Bearer {key}"
    assert "x-api-key" not in raw.http_request.headers
    assert raw.parse().content[0].text == ANSWER

    async def stream() -> str:
        client = anthropic.AsyncAnthropic(base_url=base_url, api_key=key, max_retries=0)
        async with client.messages.stream(
            model="openai-main/gpt-4o", max_tokens=16, messages=PROMPT
        ) as events:
            return "".join([text async for text in events.text_stream])

    assert asyncio.run(stream()) == ANSWER
