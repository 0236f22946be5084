"""``POST /api/llm/v1/responses``: the OpenAI Responses API, translated to chat
completions and back, governed, limited, metered and audited like chat."""

from __future__ import annotations

import json

import httpx
import pytest

from audit.models import AuditRecord, UsageRecord
from gateway import responses
from tests.gateway.conftest import UPSTREAM_SECRET, assert_gateway_error, flush_usage

ANSWER = "Hello from the fake upstream."


def _records(request_id: str) -> tuple[UsageRecord, AuditRecord]:
    flush_usage()
    usage = list(UsageRecord.objects.filter(request_id=request_id))
    audit = list(AuditRecord.objects.filter(request_id=request_id))
    assert len(usage) == 1 and len(audit) == 1, (usage, audit)
    return usage[0], audit[0]


def _events(response: httpx.Response) -> list[tuple[str, dict]]:
    """The server-sent events of a Responses stream as (event name, data)."""
    events = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_a_plain_response_is_translated_to_chat_and_back(llm, upstream_requests, cast):
    key = llm.key()
    response = llm.post(
        "/responses",
        key,
        {
            "model": "openai-main/gpt-4o",
            "input": "Say hello",
            "instructions": "Be brief",
            "max_output_tokens": 50,
            "temperature": 0.5,
            "top_p": 0.9,
            "metadata": {"ticket": "T-1"},
            "user": "end-user-7",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"].startswith("resp_") and body["object"] == "response"
    assert (body["status"], body["model"], body["error"]) == (
        "completed",
        "openai-main/gpt-4o",
        None,
    )
    assert (body["instructions"], body["max_output_tokens"], body["metadata"]) == (
        "Be brief",
        50,
        {"ticket": "T-1"},
    )
    [item] = body["output"]
    assert item["type"] == "message" and item["role"] == "assistant"
    assert item["id"].startswith("msg_") and item["status"] == "completed"
    assert item["content"] == [
        {"type": "output_text", "text": ANSWER, "annotations": [], "logprobs": []}
    ]
    # The fake counts the words of the prompt: "Be brief" + "Say hello" -> 3.
    assert {k: body["usage"][k] for k in ("input_tokens", "output_tokens", "total_tokens")} == {
        "input_tokens": 3,
        "output_tokens": 6,
        "total_tokens": 9,
    }
    for header in ("X-RateLimit-Limit", "X-RateLimit-Remaining-Tokens", "X-Inferia-Overhead-Ms"):
        assert response.headers.get(header), header

    sent = upstream_requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert sent["body"] == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": "Say hello"},
        ],
        "max_tokens": 50,
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "end-user-7",
    }

    usage, audit = _records(response.headers["X-Request-ID"])
    assert (usage.endpoint, usage.model, usage.status_code, usage.streamed) == (
        "responses",
        "openai-main/gpt-4o",
        200,
        False,
    )
    assert (usage.prompt_tokens, usage.completion_tokens) == (3, 6)
    assert usage.cost == pytest.approx((3 * 2.5 + 6 * 10.0) / 1e6, abs=1e-6)
    assert usage.user_id == cast.bob.pk and usage.key_prefix == llm.key_row(key).prefix
    assert (audit.action, audit.outcome, audit.status_code) == ("inference:run", "success", 200)
    assert (audit.target_type, audit.target_id) == ("model", "openai-main/gpt-4o")
    assert audit.data["usage_id"] == str(usage.id)  # the tokens are the usage record's


def test_input_as_a_list_of_messages_and_content_parts(llm, upstream_requests):
    response = llm.post(
        "/responses",
        llm.key(),
        {
            "model": "openai-main/gpt-4o",
            "input": [
                {"role": "developer", "content": "Answer in English"},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Hi"}],
                },
                {"role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is "},
                        {"type": "input_text", "text": "this?"},
                        {"type": "input_image", "image_url": "https://example.test/a.png"},
                    ],
                },
            ],
            "text": {"format": {"type": "json_object"}},
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["output"][0]["content"][0]["text"] == ANSWER
    assert upstream_requests[-1]["body"]["messages"] == [
        {"role": "system", "content": "Answer in English"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is "},
                {"type": "text", "text": "this?"},
                {"type": "image_url", "image_url": {"url": "https://example.test/a.png"}},
            ],
        },
    ]
    assert upstream_requests[-1]["body"]["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "input"),
        ({"input": None}, "input"),
        ({"input": 42}, "input"),
        ({"input": []}, "input"),
        ({"input": [{"role": "user", "content": 7}]}, "input"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input",
        ),
        ({"input": [{"type": "function_call_output", "output": "1"}]}, "input"),
        ({"input": "hi", "instructions": ["x"]}, "instructions"),
        ({"input": "hi", "temperature": "hot"}, "temperature"),
        ({"input": "hi", "temperature": 3}, "temperature"),
        ({"input": "hi", "top_p": True}, "top_p"),
        ({"input": "hi", "stream": "yes"}, "stream"),
        ({"input": "hi", "metadata": {"k": 1}}, "metadata"),
        ({"input": "hi", "user": 5}, "user"),
        ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "hi", "max_output_tokens": "100"}, "max_output_tokens"),
        ({"input": "hi", "text": {"format": {"type": "grammar"}}}, "text"),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools"),
        ({"input": "hi", "tools": [{"type": "function", "parameters": {}}]}, "tools"),
        ({"input": "hi", "tools": {"type": "function"}}, "tools"),
        ({"input": "hi", "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input"),
        ({"input": "hi", "tool_choice": "required"}, "tool_choice"),
        ({"input": "hi", "previous_response_id": "resp_123"}, "previous_response_id"),
        ({"input": "hi", "reasoning": {"effort": "high"}}, "reasoning"),
        ({"input": "hi", "background": True}, "background"),
        ({"input": "hi", "max_tokens": 10}, "max_tokens"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(llm, upstream_requests, body, field):
    response = llm.post("/responses", llm.key(), {"model": "openai-main/gpt-4o", **body})
    error = assert_gateway_error(response, 400, "VALIDATION_ERROR")
    assert error["type"] == "invalid_request_error"
    assert list(error["details"]) == [field], error
    assert upstream_requests == []


def test_missing_model_and_malformed_json(llm, upstream_requests):
    error = assert_gateway_error(
        llm.post("/responses", llm.key(), {"input": "hi"}), 400, "VALIDATION_ERROR"
    )
    assert list(error["details"]) == ["model"]
    raw = httpx.post(
        f"{llm.base_url}/responses",
        content=b"{not json",
        headers={"Authorization": f"Bearer {llm.key()}", "Content-Type": "application/json"},
    )
    assert_gateway_error(raw, 400, "VALIDATION_ERROR")
    assert upstream_requests == []


def test_the_prompt_limit_counts_input_and_instructions(llm, upstream_requests):
    llm.org_settings(max_prompt_chars=20)
    key = llm.key()
    ok = llm.post(
        "/responses",
        key,
        {"model": "openai-main/gpt-4o", "input": "x" * 10, "instructions": "y" * 10},
    )
    assert ok.status_code == 200, ok.text
    over = llm.post(
        "/responses",
        key,
        {"model": "openai-main/gpt-4o", "input": "x" * 11, "instructions": "y" * 10},
    )
    error = assert_gateway_error(over, 400, "VALIDATION_ERROR")
    assert list(error["details"]) == ["input"] and "Prompt too long" in error["message"]
    assert len(upstream_requests) == 1


def test_stream_emits_the_responses_event_sequence(llm):
    key = llm.key()
    with httpx.stream(
        "POST",
        f"{llm.base_url}/responses",
        json={"model": "openai-main/gpt-4o", "input": "hi", "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        response.read()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response)
    kinds = [kind for kind, _ in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 6,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert all(data["type"] == kind for kind, data in events)
    created = events[0][1]["response"]
    assert created["status"] == "in_progress" and created["id"].startswith("resp_")
    assert "".join(data["delta"] for kind, data in events if kind.endswith(".delta")) == ANSWER
    item_ids = {data["item_id"] for kind, data in events if "item_id" in data}
    assert len(item_ids) == 1
    assert events[-4][1]["text"] == ANSWER
    done = events[-1][1]["response"]
    assert done["id"] == created["id"] and done["status"] == "completed"
    assert done["output"][0]["content"][0]["text"] == ANSWER
    assert done["output"][0]["id"] in item_ids
    assert (done["usage"]["input_tokens"], done["usage"]["output_tokens"]) == (1, 6)

    usage, audit = _records(response.headers["X-Request-ID"])
    assert (usage.endpoint, usage.streamed, usage.status_code) == ("responses", True, 200)
    assert (usage.prompt_tokens, usage.completion_tokens) == (1, 6)
    assert (audit.action, audit.outcome) == ("inference:stream", "success")


def test_streaming_needs_inference_stream(llm, upstream_requests):
    key = llm.key(permissions=["inference:run"])
    response = llm.post(
        "/responses", key, {"model": "openai-main/gpt-4o", "input": "hi", "stream": True}
    )
    error = assert_gateway_error(response, 403, "PERMISSION_DENIED")
    assert "inference:stream" in error["message"]
    assert (
        llm.post("/responses", key, {"model": "openai-main/gpt-4o", "input": "hi"}).status_code
        == 200
    )
    assert len(upstream_requests) == 1


def test_model_access_rules_apply(llm, upstream_requests):
    llm.grant("authz_rules:\n  - models: ['openai-main/gpt-4o']\n    users: [bob]\n")
    key = llm.key()
    refused = llm.post("/responses", key, {"model": "openai-main/gpt-4o-mini", "input": "hi"})
    assert_gateway_error(refused, 403, "PERMISSION_DENIED")
    unknown = llm.post("/responses", key, {"model": "nowhere/gpt-9", "input": "hi"})
    assert_gateway_error(unknown, 404, "NOT_FOUND")
    no_run = llm.key(permissions=["model:read"])
    assert_gateway_error(
        llm.post("/responses", no_run, {"model": "openai-main/gpt-4o", "input": "hi"}),
        403,
        "PERMISSION_DENIED",
    )
    assert upstream_requests == []
    usage, audit = _records(refused.headers["X-Request-ID"])
    assert (usage.endpoint, usage.status_code, usage.error_code) == (
        "responses",
        403,
        "PERMISSION_DENIED",
    )
    assert (audit.outcome, audit.target_id) == ("denied", "openai-main/gpt-4o-mini")


def test_unauthenticated_is_401(llm, upstream_requests):
    response = httpx.post(
        f"{llm.base_url}/responses", json={"model": "openai-main/gpt-4o", "input": "hi"}
    )
    assert_gateway_error(response, 401, "AUTHENTICATION_FAILED")
    assert upstream_requests == []


def test_a_reservation_over_the_quota_is_refused_before_the_upstream(llm, upstream_requests):
    llm.org_settings(monthly_token_quota=100)
    key = llm.key()
    body = {"model": "openai-main/gpt-4o", "input": "hi"}
    # Reserved: len('{"messages":[{"role":"user","content":"hi"}]}') == 45 prompt
    # bytes plus max_output_tokens; the fake then reports 1 + 6.
    assert llm.post("/responses", key, {**body, "max_output_tokens": 50}).status_code == 200
    refused = llm.post("/responses", key, {**body, "max_output_tokens": 100 - 7 - 45 + 1})
    error = assert_gateway_error(refused, 429, "QUOTA_EXCEEDED")
    assert error["type"] == "insufficient_quota" and refused.headers["Retry-After"]
    assert len(upstream_requests) == 1
    fits = llm.post("/responses", key, {**body, "max_output_tokens": 100 - 7 - 45})
    assert fits.status_code == 200, fits.text


def test_the_request_rate_limit_applies(llm, upstream_requests):
    key = llm.key()
    row = llm.key_row(key)
    row.requests_per_minute = 2
    row.save(update_fields=["requests_per_minute"])
    body = {"model": "openai-main/gpt-4o", "input": "hi"}
    assert [llm.post("/responses", key, body).status_code for _ in range(2)] == [200, 200]
    limited = llm.post("/responses", key, body)
    assert_gateway_error(limited, 429, "RATE_LIMITED")
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert len(upstream_requests) == 2


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("openai-main/fake-error-500", 502, "UPSTREAM_ERROR"),
        ("openai-main/fake-error-400", 400, "VALIDATION_ERROR"),
        ("openai-main/fake-error-429", 429, "RATE_LIMITED"),
    ],
)
def test_upstream_errors_use_the_envelope_without_the_secret(llm, model, status, code):
    llm.grant("authz_rules:\n  - models: ['*']\n    users: [bob]\n")
    response = llm.post("/responses", llm.key(), {"model": model, "input": "hi"})
    assert_gateway_error(response, status, code)
    assert UPSTREAM_SECRET not in response.text
    usage, _ = _records(response.headers["X-Request-ID"])
    assert (usage.endpoint, usage.status_code, usage.error_code) == ("responses", status, code)


@pytest.fixture
def claude(llm):
    llm.grant("authz_rules:\n  - models: ['*']\n    users: [bob]\n")
    llm.add_account("claude", "anthropic", llm.upstream.url, [{"name": "claude-3-5-sonnet"}])
    return llm.key()


def test_anthropic_accounts_answer_through_the_translation(llm, claude, upstream_requests):
    body = {"model": "claude/claude-3-5-sonnet", "input": "Say hello", "instructions": "Be brief"}
    plain = llm.post("/responses", claude, body)
    assert plain.status_code == 200, plain.text
    assert plain.json()["output"][0]["content"][0]["text"] == ANSWER
    assert plain.json()["usage"]["output_tokens"] == 6
    sent = upstream_requests[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["body"]["system"] == "Be brief"
    assert sent["body"]["messages"] == [{"role": "user", "content": "Say hello"}]

    with httpx.stream(
        "POST",
        f"{llm.base_url}/responses",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {claude}"},
        timeout=30,
    ) as streamed:
        streamed.read()
    events = _events(streamed)
    assert events[-1][0] == "response.completed"
    assert events[-1][1]["response"]["output"][0]["content"][0]["text"] == ANSWER
    assert events[-1][1]["response"]["usage"]["output_tokens"] == 6
    usage, _ = _records(streamed.headers["X-Request-ID"])
    assert (usage.endpoint, usage.provider_account, usage.completion_tokens) == (
        "responses",
        "claude",
        6,
    )


def test_a_truncated_answer_is_incomplete():
    answer = {
        "model": "a/m",
        "choices": [{"index": 0, "message": {"content": "Hel"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1},
    }
    out = responses.from_chat({"model": "a/m", "input": "hi", "max_output_tokens": 1}, answer)
    assert out["status"] == "incomplete"
    assert out["incomplete_details"] == {"reason": "max_output_tokens"}
    assert out["output"][0]["status"] == "incomplete"
    assert out["usage"]["total_tokens"] == 3


def test_unknown_paths_stay_404(llm):
    response = llm.post("/responses/resp_123", llm.key(), {})
    assert_gateway_error(response, 404, "NOT_FOUND")


def test_responses_count_in_the_usage_view_like_chat(llm):
    from django.utils import timezone

    from audit import rollups

    key = llm.key()
    chat = llm.post(
        "/chat/completions",
        key,
        {"model": "openai-main/gpt-4o", "messages": [{"role": "user", "content": "Say hello"}]},
    )
    answered = llm.post("/responses", key, {"model": "openai-main/gpt-4o", "input": "Say hello"})
    assert (chat.status_code, answered.status_code) == (200, 200)
    flush_usage()
    rollups.usage_rollup(period="day", moment=timezone.now())
    response = llm.admin.get(
        "/api/v1/orgs/acme/usage",
        {"group_by": "model", "model": "openai-main/gpt-4o", "period": "day"},
    )
    assert response.status_code == 200, response.content
    [total] = response.json()["totals"]
    assert (total["requests"], total["denied"], total["total_tokens"]) == (2, 0, 2 * (2 + 6))
    logged = llm.admin.get("/api/v1/orgs/acme/audit-logs", {"model": "openai-main/gpt-4o"})
    assert logged.status_code == 200, logged.content
    actions = [row["action"] for row in logged.json()["results"]]
    assert actions.count("inference:run") == 2


def test_a_stream_that_breaks_ends_with_an_error_event(llm):
    llm.grant("authz_rules:\n  - models: ['*']\n    users: [bob]\n")
    with httpx.stream(
        "POST",
        f"{llm.base_url}/responses",
        json={"model": "openai-main/fake-stream-reset", "input": "hi", "stream": True},
        headers={"Authorization": f"Bearer {llm.key()}"},
        timeout=30,
    ) as response:
        response.read()
    events = _events(response)
    kinds = [kind for kind, _ in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert "response.completed" not in kinds
    kind, error = events[-1]
    assert kind == "error" and error["type"] == "error"
    assert (error["code"], error["message"]) == ("UPSTREAM_ERROR", "Upstream stream broke")
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    usage, audit = _records(response.headers["X-Request-ID"])
    assert (usage.endpoint, usage.status_code, usage.error_code) == (
        "responses",
        502,
        "UPSTREAM_ERROR",
    )
    # Charged its reservation, as a broken chat stream is:
    # len('{"messages":[{"role":"user","content":"hi"}]}') == 45.
    assert usage.prompt_tokens == 45 and audit.data["usage_estimated"] is True


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_function_tools_are_translated_both_ways(llm, upstream_requests):
    llm.grant("authz_rules:\n  - models: ['*']\n    users: [bob]\n")
    key = llm.key()
    body = {
        "model": "openai-main/fake-tool-call",
        "input": "Weather in Paris?",
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False,
    }
    response = llm.post("/responses", key, body)
    assert response.status_code == 200, response.text
    [call] = response.json()["output"]
    assert call["type"] == "function_call" and call["id"].startswith("fc_")
    assert (call["call_id"], call["name"], call["arguments"], call["status"]) == (
        "call_fake",
        "get_weather",
        '{"city": "Paris"}',
        "completed",
    )
    assert response.json()["tools"] == [WEATHER]
    sent = upstream_requests[-1]["body"]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER["parameters"],
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False

    # The client runs the tool and sends the call and its output back.
    follow_up = llm.post(
        "/responses",
        key,
        {
            "model": "openai-main/fake-tool-call",
            "tools": [WEATHER],
            "input": [
                {"role": "user", "content": "Weather in Paris?"},
                {k: call[k] for k in ("type", "call_id", "name", "arguments")},
                {"type": "function_call_output", "call_id": "call_fake", "output": "Sunny"},
            ],
        },
    )
    assert follow_up.status_code == 200, follow_up.text
    assert follow_up.json()["output"][0]["content"][0]["text"] == ANSWER
    assert upstream_requests[-1]["body"]["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_fake",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_fake", "content": "Sunny"},
    ]


def test_a_streamed_function_call(llm):
    llm.grant("authz_rules:\n  - models: ['*']\n    users: [bob]\n")
    with httpx.stream(
        "POST",
        f"{llm.base_url}/responses",
        json={
            "model": "openai-main/fake-tool-call",
            "input": "Weather in Paris?",
            "tools": [WEATHER],
            "stream": True,
        },
        headers={"Authorization": f"Bearer {llm.key()}"},
        timeout=30,
    ) as response:
        response.read()
    events = _events(response)
    assert [kind for kind, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = events[2][1]["item"]
    assert (added["type"], added["name"], added["call_id"]) == (
        "function_call",
        "get_weather",
        "call_fake",
    )
    assert events[5][1]["arguments"] == '{"city": "Paris"}'
    [item] = events[-1][1]["response"]["output"]
    assert (item["id"], item["arguments"], item["status"]) == (
        added["id"],
        '{"city": "Paris"}',
        "completed",
    )
    usage, _ = _records(response.headers["X-Request-ID"])
    assert (usage.endpoint, usage.streamed, usage.completion_tokens) == ("responses", True, 9)
