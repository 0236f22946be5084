"""The client cannot steer the gateway's numbers: size fields are positive integers
under a cap, and the reservation bounds every text field sent upstream (documented
in gateway/sizing.py and the README), so dense prompts in parallel never overrun a
token quota."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from audit.models import UsageRecord
from gateway import ratelimit
from tests.gateway.conftest import assert_gateway_error, flush_usage, redis_url_or_skip

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 0),
        ("max_tokens", -100_000),
        ("max_tokens", 1.5),
        ("max_tokens", 100.0),
        ("max_tokens", "100"),
        ("max_tokens", True),
        ("max_tokens", 10**9),
        ("max_tokens", [5]),
        ("max_completion_tokens", 0),
        ("max_completion_tokens", -1),
        ("max_completion_tokens", "7"),
        ("n", 0),
        ("n", -3),
        ("n", 17),
        ("n", 2.0),
        ("n", "2"),
        ("n", False),
    ],
)
def test_bad_size_fields_are_refused_before_upstream(llm, upstream_requests, field, value):
    body = {"model": "openai-main/gpt-4o", "messages": HI, field: value}
    error = assert_gateway_error(
        llm.post("/chat/completions", llm.key(), body), 400, "VALIDATION_ERROR"
    )
    assert set(error["details"]) == {field}, error
    assert upstream_requests == []


def test_best_of_of_completions_is_capped_too(llm, upstream_requests):
    body = {"model": "openai-main/gpt-4o-mini", "prompt": "Once", "best_of": 100}
    error = assert_gateway_error(llm.post("/completions", llm.key(), body), 400, "VALIDATION_ERROR")
    assert set(error["details"]) == {"best_of"}
    assert upstream_requests == []


def test_size_fields_at_their_caps_pass(llm, settings, upstream_requests):
    key = llm.key()
    for sizes in (
        {"max_tokens": settings.INFERIA_GATEWAY_MAX_TOKENS_CAP},
        {"max_completion_tokens": 5, "n": settings.INFERIA_GATEWAY_MAX_CHOICES},
    ):
        body = {"model": "openai-main/gpt-4o", "messages": HI, **sizes}
        assert llm.post("/chat/completions", key, body).status_code == 200
    assert len(upstream_requests) == 2


def test_the_prompt_limit_counts_tool_definitions_and_tool_calls(llm, upstream_requests):
    llm.org_settings(max_prompt_chars=50)
    key = llm.key()
    tool = {"type": "function", "function": {"name": "f", "description": "d" * 60}}
    refused = llm.post(
        "/chat/completions", key, {"model": "openai-main/gpt-4o", "messages": HI, "tools": [tool]}
    )
    assert "messages" in assert_gateway_error(refused, 400, "VALIDATION_ERROR")["details"]
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "a" * 60}}
    messages = [*HI, {"role": "assistant", "content": None, "tool_calls": [call]}]
    refused = llm.post(
        "/chat/completions", key, {"model": "openai-main/gpt-4o", "messages": messages}
    )
    assert_gateway_error(refused, 400, "VALIDATION_ERROR")
    assert upstream_requests == []


@pytest.mark.django_db
@pytest.mark.parametrize("store", ["db", "redis"])
def test_the_limit_store_refuses_a_negative_reservation(store, settings):
    import asyncio

    limit = ratelimit.Limit("key", ratelimit.QUOTA_TOKENS, "k-negative", 100)
    settings.REDIS_URL = redis_url_or_skip() if store == "redis" else ""
    for tokens, cost in ((-50, 0), (1, -1)):
        with pytest.raises(ValueError, match="negative reservation"):
            asyncio.run(
                ratelimit.check(
                    org_id=None,
                    expected_epoch=-1,
                    limits=[limit],
                    reserve_tokens=tokens,
                    reserve_cost=cost,
                )
            )


DENSE = 9000  # bytes of dense text per request: about 3 fit in the quota below
QUOTA = 30_000


def _tool(description: str) -> dict:
    return {"type": "function", "function": {"name": "lookup", "description": description}}


def _call(arguments: str) -> dict:
    return {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": arguments}}


# (path, body): each puts ~9000 tokens (by the fake's worst-case count) in another field.
DENSE_BODIES = {
    "message content": (
        "/chat/completions",
        {"messages": [{"role": "user", "content": "x" * DENSE}], "max_tokens": 10},
    ),
    "multi-byte text": (
        "/chat/completions",
        {"messages": [{"role": "user", "content": "é" * (DENSE // 2)}], "max_tokens": 10},
    ),
    "content parts": (
        "/chat/completions",
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "x" * (DENSE // 2)}] * 2}
            ],
            "max_tokens": 10,
        },
    ),
    "tool definitions": (
        "/chat/completions",
        {"messages": HI, "tools": [_tool("x" * DENSE)], "max_tokens": 10},
    ),
    "tool calls": (
        "/chat/completions",
        {
            "messages": [
                *HI,
                {"role": "assistant", "content": None, "tool_calls": [_call("x" * DENSE)]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            ],
            "max_tokens": 10,
        },
    ),
    "n choices": ("/chat/completions", {"messages": HI, "max_tokens": DENSE // 3, "n": 3}),
    "list prompt": ("/completions", {"prompt": ["x" * (DENSE // 2)] * 2, "max_tokens": 10}),
    "embedding inputs": ("/embeddings", {"input": ["x" * (DENSE // 2)] * 2}),
}


@pytest.mark.parametrize("case", sorted(DENSE_BODIES))
def test_dense_requests_in_parallel_never_overrun_a_token_quota(backend, llm, case):
    """The fake upstream reports the worst a byte-level BPE tokenizer could count;
    the reservation is an upper bound of it, so the quota holds exactly."""
    path, body = DENSE_BODIES[case]
    body = {"model": "openai-main/fake-dense", **body}
    llm.org_settings(monthly_token_quota=QUOTA)
    key = llm.key()
    llm.sdk(key).models.list()  # build the principal first: the race is on the quota
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _i: llm.post(path, key, body), range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 429 in statuses, statuses
    assert set(statuses) == {200, 429}, [r.text[:200] for r in responses]
    flush_usage()
    used = sum(
        r.prompt_tokens + r.completion_tokens for r in UsageRecord.objects.filter(status_code=200)
    )
    assert 0 < used <= QUOTA, (used, statuses)
