"""Requests and tokens per minute, per key, per principal and per org: atomic and shared.

Windows are calendar minutes of the platform clock; tests move it (the server
thread shares this process) instead of sleeping.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from audit.models import UsageRecord
from inferia import clock
from tests.conftest import client_for, to_step_start
from tests.gateway.conftest import assert_gateway_error, assert_sdk_error, flush_usage

CHAT = [{"role": "user", "content": "hi"}]
BODY = {"model": "openai-main/gpt-4o", "messages": CHAT}


def _raw(client: openai.OpenAI, **kwargs):
    kwargs.setdefault("model", "openai-main/gpt-4o")
    return client.chat.completions.with_raw_response.create(messages=CHAT, **kwargs)


def _window_end() -> int:
    now = int(clock.time())
    return now - now % 60 + 60


@pytest.fixture(params=["key_fields", "org_settings"])
def key_rpm_3(request, llm):
    """A key limited to 3 requests a minute, on the key itself or by the org's key default."""
    key = llm.key()
    if request.param == "key_fields":
        row = llm.key_row(key)
        row.requests_per_minute = 3
        row.save(update_fields=["requests_per_minute"])
    else:
        llm.org_settings(key_requests_per_minute=3)
    return key


def test_fourth_request_in_a_minute_is_429_with_headers(backend, llm, key_rpm_3, clock_shift):
    to_step_start(60)
    client = llm.sdk(key_rpm_3)
    remaining = []
    for _ in range(3):
        raw = _raw(client)
        assert raw.http_response.status_code == 200
        assert raw.headers["X-RateLimit-Limit"] == "3"
        assert int(raw.headers["X-RateLimit-Reset"]) == _window_end()
        remaining.append(int(raw.headers["X-RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]

    with pytest.raises(openai.RateLimitError) as caught:
        _raw(client)
    error = assert_sdk_error(caught.value, 429, "RATE_LIMITED")
    assert error["type"] == "rate_limit_error"
    assert "key" in error["message"]
    headers = caught.value.response.headers
    assert 50 <= int(headers["Retry-After"]) <= 60
    assert headers["X-RateLimit-Limit"] == "3"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["X-RateLimit-Reset"]) == _window_end()
    assert headers["X-Inferia-Overhead-Ms"]

    clock_shift(60)  # the next minute: a fresh window
    raw = _raw(client)
    assert raw.http_response.status_code == 200
    assert raw.headers["X-RateLimit-Remaining"] == "2"


def test_refused_requests_do_not_count(backend, llm, key_rpm_3, clock_shift):
    to_step_start(60)
    client = llm.sdk(key_rpm_3)
    for _ in range(3):
        _raw(client)
    for _ in range(5):
        with pytest.raises(openai.RateLimitError):
            _raw(client)
    clock_shift(60)
    assert [int(_raw(client).headers["X-RateLimit-Remaining"]) for _ in range(3)] == [2, 1, 0]


def test_tokens_per_minute_reserve_max_tokens_and_settle(backend, llm, clock_shift):
    to_step_start(60)
    key = llm.key()
    row = llm.key_row(key)
    row.tokens_per_minute = 100
    row.save(update_fields=["tokens_per_minute"])
    client = llm.sdk(key)
    # "hi": the prompt part of the reservation is the UTF-8 bytes of the prompt
    # fields' JSON (gateway/sizing.py), 45 here; the worst case is 45 + max_tokens.
    first = _raw(client, max_tokens=5)
    assert first.headers["X-RateLimit-Limit-Tokens"] == "100"
    assert first.headers["X-RateLimit-Remaining-Tokens"] == "50"
    # The fake upstream used 1 + 6 tokens: settled, so 100 - 7 - 50 remain now.
    second = _raw(client, max_tokens=5)
    assert second.headers["X-RateLimit-Remaining-Tokens"] == "43"
    # 14 used; a worst case of 45 + 42 does not fit.
    with pytest.raises(openai.RateLimitError) as caught:
        _raw(client, max_tokens=42)
    error = assert_sdk_error(caught.value, 429, "RATE_LIMITED")
    assert "tokens" in error["message"]
    assert caught.value.response.headers["Retry-After"]
    assert caught.value.response.headers["X-RateLimit-Remaining-Tokens"] == "86"
    # A smaller one does.
    assert _raw(client, max_tokens=41).http_response.status_code == 200
    clock_shift(60)
    assert _raw(client, max_tokens=54).headers["X-RateLimit-Remaining-Tokens"] == "1"


def test_default_max_tokens_is_reserved_when_the_client_sets_none(backend, llm):
    llm.org_settings(key_tokens_per_minute=100, default_max_tokens=200)
    with pytest.raises(openai.RateLimitError) as caught:
        _raw(llm.sdk(llm.key()))
    assert_sdk_error(caught.value, 429, "RATE_LIMITED")
    assert _raw(llm.sdk(llm.key()), max_tokens=10).http_response.status_code == 200


def test_org_limit_is_shared_by_every_key_and_member(backend, llm, cast, clock_shift):
    to_step_start(60)
    llm.grant("authz_rules:\n  - models: ['openai-main/*']\n    users: [bob, dave]\n")
    llm.org_settings(requests_per_minute=3)
    bob = llm.sdk(llm.key())
    dave = llm.sdk(llm.key(client_for(cast.dave)))
    remaining = [_raw(c).headers["X-RateLimit-Remaining"] for c in (bob, dave, bob)]
    assert remaining == ["2", "1", "0"]
    for client in (bob, dave):
        with pytest.raises(openai.RateLimitError) as caught:
            _raw(client)
        error = assert_sdk_error(caught.value, 429, "RATE_LIMITED")
        assert "org" in error["message"]
    clock_shift(60)
    assert _raw(dave).http_response.status_code == 200


def test_principal_limit_is_shared_by_one_users_keys(backend, llm, cast):
    to_step_start(60)
    llm.org_settings(principal_requests_per_minute=2)
    first, second = llm.sdk(llm.key()), llm.sdk(llm.key())
    _raw(first)
    _raw(second)
    with pytest.raises(openai.RateLimitError) as caught:
        _raw(first)
    assert "principal" in assert_sdk_error(caught.value, 429, "RATE_LIMITED")["message"]
    # Another member is not affected.
    llm.grant("authz_rules:\n  - models: ['openai-main/*']\n    users: [bob, dave]\n")
    assert _raw(llm.sdk(llm.key(client_for(cast.dave)))).http_response.status_code == 200


def test_tightest_limit_is_reported(backend, llm):
    llm.org_settings(requests_per_minute=50, key_requests_per_minute=5)
    raw = _raw(llm.sdk(llm.key()))
    assert (raw.headers["X-RateLimit-Limit"], raw.headers["X-RateLimit-Remaining"]) == ("5", "4")


def test_parallel_requests_never_exceed_the_limit(backend, llm):
    to_step_start(60)
    key = llm.key()
    row = llm.key_row(key)
    row.requests_per_minute = 10
    row.save(update_fields=["requests_per_minute"])
    llm.sdk(key).models.list()  # build the principal once; the race is on the counter

    def call(_index: int) -> httpx.Response:
        return llm.post("/chat/completions", key, BODY)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(call, range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [429] * 10
    for response in responses:
        if response.status_code == 429:
            assert_gateway_error(response, 429, "RATE_LIMITED")
            assert response.headers["Retry-After"]
    remaining = sorted(
        int(r.headers["X-RateLimit-Remaining"]) for r in responses if r.status_code == 200
    )
    assert remaining == list(range(10))  # each success saw a distinct count
    flush_usage()
    recorded = sorted(
        UsageRecord.objects.filter(key_prefix=row.prefix).values_list("status_code", flat=True)
    )
    assert recorded == [200] * 10 + [429] * 10
