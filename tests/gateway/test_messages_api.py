"""``POST /api/llm/v1/messages``: the Messages API translated to chat completions and back.

Over real HTTP (the gateway and the fake upstream): what the upstream receives for
a Messages request, the answer's and the stream's shape, ``stop_reason``, the
refusals of input the gateway cannot honour, and the error shape (Anthropic's and
the contract's envelope at once). The official SDK: ``tests/clients/test_anthropic_sdk.py``.
"""

from __future__ import annotations

import json

import httpx
import pytest

from audit.models import AuditRecord, UsageRecord
from gateway import messages
from tests.gateway.conftest import flush_usage, wait_for

MODEL = "openai-main/gpt-4o"
BODY = {"model": MODEL, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}


def _post(llm, body, key: str | None = None, **headers) -> httpx.Response:
    sent = {"X-API-Key": key or llm.key(), "anthropic-version": "2023-06-01", **headers}
    return httpx.post(f"{llm.base_url}/messages", json=body, headers=sent, timeout=30)


def assert_messages_error(response: httpx.Response, status: int, code: str, kind: str) -> dict:
    """Anthropic's error shape carrying the contract's envelope."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    error = body["error"]
    assert set(error) == {"type", "code", "message", "details"}, body
    assert (error["type"], error["code"]) == (kind, code), body
    assert isinstance(error["message"], str) and error["message"]
    assert response.headers.get("X-Request-ID")
    return error


@pytest.fixture
def stops(llm):
    """'vllm', an OpenAI-compatible account whose fake-stops model obeys max_tokens and
    stop sequences (and names the one that matched, as vLLM does)."""
    llm.add_account("vllm", "openai_compatible", f"{llm.upstream.url}/v1", [{"name": "fake-stops"}])
    llm.grant("authz_rules:\n  - models: ['openai-main/*', 'vllm/*']\n    users: [bob]\n")
    return "vllm/fake-stops"


# --- the request the upstream gets ---------------------------------------------------------


def test_system_blocks_multi_turn_and_sampling_reach_the_upstream(llm, upstream_requests):
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "system": [
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": "Answer in English.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Part one."},
                    {"type": "text", "text": "Two."},
                ],
            },
        ],
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["END", "STOP"],
        "metadata": {"user_id": "u-42"},
    }
    response = _post(llm, body)
    assert response.status_code == 200, response.text
    sent = upstream_requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"] == {
        "model": "gpt-4o",
        "max_tokens": 100,
        "messages": [
            {"role": "system", "content": "You are terse.\nAnswer in English."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Part one."},
                    {"type": "text", "text": "Two."},
                ],
            },
        ],
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["END", "STOP"],
        "user": "u-42",
    }


def test_an_anthropic_account_gets_a_messages_call_back(llm, upstream_requests):
    llm.add_account("claude", "anthropic", llm.upstream.url, [{"name": "claude-sonnet-4"}])
    llm.grant("authz_rules:\n  - models: ['claude/*']\n    users: [bob]\n")
    body = {
        "model": "claude/claude-sonnet-4",
        "max_tokens": 50,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
        "top_k": 5,
        "stop_sequences": ["\n\nHuman:"],
    }
    response = _post(llm, body)
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "Hello from the fake upstream."}]
    sent = upstream_requests[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["body"] == {
        "model": "claude-sonnet-4",
        "max_tokens": 50,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
        "top_k": 5,
        "stop_sequences": ["\n\nHuman:"],
    }


# --- the answer ----------------------------------------------------------------------------


def test_the_answer_is_a_message(llm):
    response = _post(llm, BODY)
    assert response.status_code == 200
    message = response.json()
    assert message.pop("id").startswith("msg_")
    assert message == {
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Hello from the fake upstream."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 6},
    }
    flush_usage()
    record = UsageRecord.objects.get(request_id=response.headers["X-Request-ID"])
    assert (record.endpoint, record.prompt_tokens, record.completion_tokens) == ("messages", 1, 6)


@pytest.mark.parametrize(
    ("extra", "text", "reason", "sequence"),
    [
        ({}, "Hello from the fake upstream.", "end_turn", None),
        ({"max_tokens": 3}, "Hello from the", "max_tokens", None),
        ({"stop_sequences": [" upstream", " from"]}, "Hello", "stop_sequence", " from"),
        ({"stop_sequences": ["never there"]}, "Hello from the fake upstream.", "end_turn", None),
    ],
)
def test_stop_reason(llm, stops, extra, text, reason, sequence):
    body = {**BODY, "model": stops, **extra}
    answer = _post(llm, body).json()
    assert answer["content"][0]["text"] == text
    assert (answer["stop_reason"], answer["stop_sequence"]) == (reason, sequence)
    events = _events(_post(llm, {**body, "stream": True}))
    streamed = "".join(
        data["delta"]["text"] for name, data in events if name == "content_block_delta"
    )
    assert streamed == text
    delta = [data for name, data in events if name == "message_delta"][0]
    assert delta["delta"] == {"stop_reason": reason, "stop_sequence": sequence}


def test_stop_reason_mapping_of_every_finish_reason():
    request = {"stop_sequences": ["X"]}
    for finish, matched, expected in [
        ("stop", None, ("end_turn", None)),
        ("stop", "X", ("stop_sequence", "X")),
        ("stop", "not asked", ("end_turn", None)),
        ("stop", 50256, ("end_turn", None)),  # vLLM names a stop token by its id
        ("length", None, ("max_tokens", None)),
        ("tool_calls", None, ("tool_use", None)),
        ("content_filter", None, ("refusal", None)),
        (None, None, ("end_turn", None)),
    ]:
        answer = {"choices": [{"message": {"content": "a"}, "finish_reason": finish}]}
        if matched is not None:
            answer["choices"][0]["stop_reason"] = matched
        message = messages.from_chat(request, answer)
        assert (message["stop_reason"], message["stop_sequence"]) == expected, finish


# --- the stream ----------------------------------------------------------------------------


def _events(response: httpx.Response) -> list[tuple[str, dict]]:
    """(event name, data) of a Messages stream; each event's data names its own type."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    out = []
    for block in response.text.strip().split("\n\n"):
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        name, data = lines[0][7:], json.loads(lines[1][6:])
        assert data["type"] == name
        out.append((name, data))
    return out


def _streamed_record() -> UsageRecord:
    """The streamed call's usage record (written as the stream ends: waited for, in case
    a client hangs up at ``message_stop`` before the gateway is done)."""

    def find():
        flush_usage()
        return UsageRecord.objects.filter(streamed=True).first()

    return wait_for(find, what="the usage record")


def test_the_stream_has_the_messages_event_types(llm):
    events = _events(_post(llm, {**BODY, "stream": True}))
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 6,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["model"] == MODEL
    assert (start["role"], start["content"], start["stop_reason"]) == ("assistant", [], None)
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert all(delta["type"] == "text_delta" for delta in deltas)
    assert "".join(delta["text"] for delta in deltas) == "Hello from the fake upstream."
    assert events[-2][1]["usage"] == {"input_tokens": 1, "output_tokens": 6}
    record = _streamed_record()
    assert (record.endpoint, record.completion_tokens, record.status_code) == ("messages", 6, 200)


def test_a_stream_needs_inference_stream(llm, upstream_requests):
    key = llm.key(permissions=["inference:run"])
    assert _post(llm, BODY, key=key).status_code == 200
    error = assert_messages_error(
        _post(llm, {**BODY, "stream": True}, key=key), 403, "PERMISSION_DENIED", "permission_error"
    )
    assert "inference:stream" in error["message"]
    assert len(upstream_requests) == 1


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "32"}, "max_tokens"),
        ({"max_tokens": 10**9}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
                    },
                ]
            },
            "messages[1].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "look"},
                            {"type": "document", "source": {"type": "text", "data": "x"}},
                        ],
                    }
                ]
            },
            "messages[0].content[1]",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
        ),
        ({"system": [{"type": "image"}]}, "system[0]"),
        ({"system": 7}, "system"),
        ({"tools": [{"name": "f", "input_schema": {"type": "object"}}]}, "tools"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"top_k": 2.5}, "top_k"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"stop_sequences": [""]}, "stop_sequences"),
        ({"stream": "yes"}, "stream"),
        ({"metadata": {"user_id": "u", "plan": "pro"}}, "metadata.plan"),
        ({"model": None}, "model"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(llm, upstream_requests, change, field):
    body = {**BODY, **change}
    body = {name: value for name, value in body.items() if value is not None}
    error = assert_messages_error(
        _post(llm, body), 400, "VALIDATION_ERROR", "invalid_request_error"
    )
    assert field in error["details"], error
    assert upstream_requests == []


def test_the_prompt_limit_counts_the_system_prompt(llm, upstream_requests):
    llm.org_settings(max_prompt_chars=100)
    assert _post(llm, {**BODY, "system": "s" * 90}).status_code == 200
    error = assert_messages_error(
        _post(llm, {**BODY, "system": "s" * 100}), 400, "VALIDATION_ERROR", "invalid_request_error"
    )
    assert "Prompt too long" in error["message"]
    assert len(upstream_requests) == 1


def test_errors_have_anthropics_shape_and_the_envelope(llm):
    # No key: the message names the three headers.
    response = httpx.post(f"{llm.base_url}/messages", json=BODY, timeout=30)
    error = assert_messages_error(response, 401, "AUTHENTICATION_FAILED", "authentication_error")
    assert "X-API-Key: <key>" in error["message"] and "api-key: <key>" in error["message"]
    # Wrong method.
    response = httpx.get(f"{llm.base_url}/messages", headers={"X-API-Key": llm.key()}, timeout=30)
    assert_messages_error(response, 405, "METHOD_NOT_ALLOWED", "invalid_request_error")
    assert response.headers["Allow"] == "POST"
    # Not JSON.
    response = httpx.post(
        f"{llm.base_url}/messages",
        content=b"model=x",
        headers={"X-API-Key": llm.key(), "Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert_messages_error(response, 415, "UNSUPPORTED_MEDIA_TYPE", "invalid_request_error")
    # Upstream failures.
    response = _post(llm, {**BODY, "model": "openai-main/fake-error-500"})
    error = assert_messages_error(response, 502, "UPSTREAM_ERROR", "api_error")
    assert "sk-fake-upstream" not in error["message"]
    response = _post(llm, {**BODY, "model": "openai-main/fake-error-429"})
    assert_messages_error(response, 429, "RATE_LIMITED", "rate_limit_error")
    # The chat completions endpoint keeps the OpenAI shape.
    response = httpx.post(f"{llm.base_url}/chat/completions", json=BODY, timeout=30)
    assert set(response.json()) == {"error"}
    assert response.json()["error"]["type"] == "authentication_error"


def test_error_types_cover_every_error_code():
    from inferia.errors import ErrorCode

    assert set(messages.ERROR_TYPES) == set(ErrorCode)


def test_upstream_dropping_mid_stream_ends_with_an_error_event(llm):
    response = _post(llm, {**BODY, "model": "openai-main/fake-reset", "stream": True})
    assert response.status_code == 200  # already sent when the upstream broke
    name, data = _events(response)[-1]
    assert name == "error"
    assert data["error"] == {
        "type": "api_error",
        "code": "UPSTREAM_ERROR",
        "message": "Upstream stream broke",
        "details": None,
    }
    flush_usage()
    record = UsageRecord.objects.get(request_id=response.headers["X-Request-ID"])
    assert (record.endpoint, record.status_code, record.error_code) == (
        "messages",
        502,
        "UPSTREAM_ERROR",
    )


def test_the_sdk_raises_on_the_error_event(llm):
    import anthropic

    client = anthropic.Anthropic(
        base_url=llm.base_url.removesuffix("/v1"), api_key=llm.key(), max_retries=0
    )
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client.messages.stream(
            model="openai-main/fake-reset", max_tokens=8, messages=BODY["messages"]
        ) as stream:
            list(stream.text_stream)
    assert caught.value.body["error"]["code"] == "UPSTREAM_ERROR"


def test_a_client_hanging_up_is_charged_the_reservation(llm, upstream_requests):
    key = llm.key()
    body = {**BODY, "model": "openai-main/fake-stream-slow-200", "max_tokens": 50, "stream": True}
    with httpx.Client(timeout=30) as client:
        with client.stream(
            "POST", f"{llm.base_url}/messages", json=body, headers={"X-API-Key": key}
        ) as response:
            assert response.status_code == 200
            request_id = response.headers["X-Request-ID"]
            for line in response.iter_lines():
                if line == "event: content_block_delta":
                    break
    wait_for(
        lambda: upstream_requests and upstream_requests[-1].get("stream_end"),
        what="the upstream to stop",
    )
    assert upstream_requests[-1]["stream_end"] == "client_disconnected"

    def record():
        flush_usage()
        return UsageRecord.objects.filter(request_id=request_id).first()

    found = wait_for(record, what="the usage record")
    assert (found.endpoint, found.status_code, found.error_code) == (
        "messages",
        499,
        "CLIENT_CLOSED",
    )
    # The reservation of the chat request it became: the prompt fields' JSON + max_tokens.
    chat_prompt = len(json.dumps({"messages": BODY["messages"]}, separators=(",", ":")))
    assert (found.prompt_tokens, found.completion_tokens) == (chat_prompt, 50)


def test_messages_count_in_the_usage_and_audit_views_like_chat(llm):
    from django.utils import timezone

    from audit import rollups

    key = llm.key()
    chat = llm.post(
        "/chat/completions", key, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    )
    answered = _post(llm, BODY, key=key)
    assert (chat.status_code, answered.status_code) == (200, 200)
    flush_usage()
    audit = AuditRecord.objects.get(request_id=answered.headers["X-Request-ID"])
    assert (audit.action, audit.outcome) == ("inference:run", "success")
    # The endpoint is metering: the usage record the audit record links holds it.
    assert UsageRecord.objects.get(pk=audit.usage_id).endpoint == "messages"
    rollups.usage_rollup(period="day", moment=timezone.now())
    response = llm.admin.get(
        "/api/v1/orgs/acme/usage", {"group_by": "model", "model": MODEL, "period": "day"}
    )
    assert response.status_code == 200, response.content
    [total] = response.json()["totals"]
    assert (total["requests"], total["denied"], total["total_tokens"]) == (2, 0, 2 * (1 + 6))
    logged = llm.admin.get("/api/v1/orgs/acme/audit-logs", {"model": MODEL})
    assert [row["action"] for row in logged.json()["results"]].count("inference:run") == 2
