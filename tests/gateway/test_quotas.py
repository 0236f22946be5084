"""Monthly quotas in tokens or money, per org and per key, that parallel requests
cannot overrun: the worst case is reserved before the upstream call and settled to
the real usage after (all of it released when the call fails)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from audit.models import UsageRecord
from tests.gateway.conftest import assert_gateway_error, assert_sdk_error, flush_usage

CHAT = [{"role": "user", "content": "hi"}]  # the fake counts 1 prompt token and answers 6
# The reservation's prompt part: the UTF-8 bytes of the prompt fields' JSON
# (gateway/sizing.py): len('{"messages":[{"role":"user","content":"hi"}]}') == 45.
P = 45
DAYS_32 = 32 * 86400


def _chat(client: openai.OpenAI, max_tokens: int, model: str = "openai-main/gpt-4o"):
    return client.chat.completions.create(model=model, messages=CHAT, max_tokens=max_tokens)


def _quota_refused(
    client: openai.OpenAI, max_tokens: int, model: str = "openai-main/gpt-4o"
) -> dict:
    with pytest.raises(openai.RateLimitError) as caught:
        _chat(client, max_tokens, model)
    error = assert_sdk_error(caught.value, 429, "QUOTA_EXCEEDED")
    assert error["type"] == "insufficient_quota"
    retry_after = int(caught.value.response.headers["Retry-After"])
    assert 1 <= retry_after <= 31 * 86400  # the start of next month
    return error


@pytest.fixture(params=["org", "key"])
def token_quota_100(request, llm):
    """A key under a monthly quota of 100 tokens, set on the org or on the key."""
    key = llm.key()
    if request.param == "org":
        llm.org_settings(monthly_token_quota=100)
    else:
        row = llm.key_row(key)
        row.monthly_token_quota = 100
        row.save(update_fields=["monthly_token_quota"])
    return request.param, key


def test_token_quota_counts_real_usage_after_reserving_the_worst_case(
    backend, llm, token_quota_100, clock_shift
):
    scope, key = token_quota_100
    client = llm.sdk(key)
    _chat(client, 50)  # reserved P + 50, settled to 1 + 6
    error = _quota_refused(client, 100 - 7 - P + 1)  # 7 + P + 49 > 100
    assert scope in error["message"] and "quota tokens 100" in error["message"]
    _chat(client, 100 - 7 - P)  # 7 + P + 48 = 100 fits exactly
    _quota_refused(client, 42)  # 14 used + P + 42 > 100
    clock_shift(DAYS_32)  # next month
    _chat(client, 100 - P)


def test_quota_of_one_key_leaves_other_keys_alone(backend, llm):
    limited, free = llm.key(), llm.key()
    row = llm.key_row(limited)
    row.monthly_token_quota = 20
    row.save(update_fields=["monthly_token_quota"])
    _quota_refused(llm.sdk(limited), 50)
    _chat(llm.sdk(free), 50)


def test_parallel_requests_cannot_overrun_the_quota(backend, llm, token_quota_100):
    """Ten slow calls at once, each reserving 50 of 100 tokens: two get through while
    the others see the reservation and are refused; once settled, room is back."""
    _scope, key = token_quota_100
    body = {"model": "openai-main/fake-slow-3000", "messages": CHAT, "max_tokens": 50 - P}
    llm.sdk(key).models.list()  # build the principal first: the race is on the quota

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda _i: llm.post("/chat/completions", key, body), range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 2 + [429] * 8
    for response in responses:
        if response.status_code == 429:
            assert_gateway_error(response, 429, "QUOTA_EXCEEDED")
    # Settled to 2 x 7 tokens: a request reserving 86 more fits now, 87 would not.
    client = llm.sdk(key)
    _quota_refused(client, 87 - P)
    _chat(client, 86 - P)
    flush_usage()
    ok = UsageRecord.objects.filter(status_code=200, model="openai-main/fake-slow-3000")
    assert sum(r.prompt_tokens + r.completion_tokens for r in ok) == 14


def test_a_failed_upstream_call_releases_its_reservation(backend, llm):
    llm.org_settings(monthly_token_quota=100)
    client = llm.sdk(llm.key())
    with pytest.raises(openai.InternalServerError) as caught:
        _chat(client, 90 - P, model="openai-main/fake-error-500")
    assert_sdk_error(caught.value, 502, "UPSTREAM_ERROR")
    _chat(client, 100 - P)  # nothing of the failed call's 90 is still held


def test_cost_quota_uses_the_models_prices(backend, llm, clock_shift):
    # gpt-4o: 2.5 per million input tokens, 10 per million output tokens.
    llm.org_settings(monthly_cost_quota=0.001)  # 1000 micro-units
    client = llm.sdk(llm.key())
    _chat(client, 50)  # reserved P x 2.5 + 500, settled to 2.5 + 60 -> 62 micro-units
    error = _quota_refused(client, 83)  # 62 + 112 + 830 > 1000
    assert "quota cost" in error["message"]
    _chat(client, 82)  # 62 + 112 + 820 fits
    # A model without prices costs nothing, whatever it may answer.
    _chat(client, 100_000, model="openai-main/gpt-4o-mini")
    flush_usage()
    costs = sorted(UsageRecord.objects.filter(status_code=200).values_list("model", "cost"))
    # Costs are counted in whole micro-units (gateway/ratelimit.py): 62.5 -> 62.
    assert costs[0] == ("openai-main/gpt-4o", pytest.approx(62e-6))
    assert costs[-1] == ("openai-main/gpt-4o-mini", 0.0)
    clock_shift(DAYS_32)
    _chat(client, 88)  # 112 + 880


def test_cost_quota_on_a_key(backend, llm):
    key = llm.key()
    row = llm.key_row(key)
    row.monthly_cost_quota = 0.0005  # 500 micro-units
    row.save(update_fields=["monthly_cost_quota"])
    client = llm.sdk(key)
    _quota_refused(client, 39)  # worst case int(P x 2.5 + 390) = 502
    _chat(client, 38)  # worst case 492
    _quota_refused(client, 33)  # 62 used + 442 > 500


def test_quota_refusals_are_recorded(backend, llm):
    llm.org_settings(monthly_token_quota=10)
    key = llm.key()
    _quota_refused(llm.sdk(key), 50)
    flush_usage()
    record = UsageRecord.objects.get(key_prefix=llm.key_row(key).prefix)
    assert (record.status_code, record.error_code, record.prompt_tokens) == (
        429,
        "QUOTA_EXCEEDED",
        0,
    )
