"""Calls to ``deployment/<name>`` through the gateway, over real HTTP to three fake
upstreams: each strategy's order, fallback on the listed failures, per-target
timeouts, retries, and what never falls over (a 400, a stream that started)."""

from __future__ import annotations

import threading
from collections import Counter

import httpx

from tests.deployments.routing_fixtures import audit_of, elapsed, target, usage_of, wait_for
from tests.gateway.conftest import assert_gateway_error

TARGET = "X-Inferia-Target"


def test_priority_tries_the_lowest_first_and_the_answer_names_the_deployment(fleet):
    fleet.deploy(
        "chat",
        {
            "strategy": "priority",
            "targets": [
                target("second", "slow-up", "gpt-4o", priority=5),
                target("first", "openai-main", "gpt-4o", priority=1),
            ],
        },
    )
    key = fleet.key()
    response = fleet.chat(key, "deployment/chat")
    assert response.status_code == 200, response.text
    assert response.headers[TARGET] == "first"
    assert response.json()["model"] == "deployment/chat"
    assert fleet.calls_to(fleet.healthy) == 1
    assert fleet.calls_to(fleet.slow) == 0
    record = audit_of(response)
    assert record.model == "deployment/chat"
    assert record.data["deployment"] == "chat"
    assert record.data["target"] == "first"
    assert record.data["target_fqn"] == "openai-main/gpt-4o"
    usage = usage_of(response)
    assert usage.provider_account == "openai-main"
    assert usage.model == "deployment/chat"


def test_priority_falls_over_on_a_5xx_and_records_the_failed_attempt(fleet):
    fleet.deploy(
        "chat",
        {
            "targets": [
                target("primary", "bad-up", "fake-error-500"),
                target("backup", "openai-main", "gpt-4o", priority=1),
            ]
        },
    )
    response = fleet.chat(fleet.key(), "deployment/chat")
    assert response.status_code == 200, response.text
    assert response.headers[TARGET] == "backup"
    assert fleet.calls_to(fleet.bad, "fake-error-500") == 1
    assert fleet.calls_to(fleet.healthy) == 1
    data = audit_of(response).data
    assert data["target"] == "backup"
    assert data["attempts"] == [{"target": "primary", "outcome": "5xx"}]


def test_a_429_falls_over_only_when_fallback_on_lists_it(fleet):
    targets = [
        target("primary", "bad-up", "fake-error-429"),
        target("backup", "openai-main", "gpt-4o", priority=1),
    ]
    fleet.deploy("listed", {"targets": targets, "fallback_on": ["429", "5xx"]})
    fleet.deploy("unlisted", {"targets": targets, "fallback_on": ["5xx"]})
    key = fleet.key()
    listed = fleet.chat(key, "deployment/listed")
    assert listed.status_code == 200 and listed.headers[TARGET] == "backup"
    unlisted = fleet.chat(key, "deployment/unlisted")
    assert_gateway_error(unlisted, 429, "RATE_LIMITED")
    assert unlisted.headers[TARGET] == "primary"
    assert unlisted.headers["Retry-After"]
    assert fleet.calls_to(fleet.healthy) == 1  # only the listed one fell over


def test_a_400_goes_back_to_the_caller_without_trying_another_target(fleet):
    fleet.deploy(
        "chat",
        {
            "targets": [
                target("primary", "bad-up", "fake-error-400"),
                target("backup", "openai-main", "gpt-4o", priority=1),
            ]
        },
    )
    response = fleet.chat(fleet.key(), "deployment/chat")
    assert_gateway_error(response, 400, "VALIDATION_ERROR")
    assert response.headers[TARGET] == "primary"
    assert fleet.calls_to(fleet.healthy) == 0
    assert fleet.calls_to(fleet.bad) == 1


def test_a_timeout_falls_over_within_the_targets_timeout(fleet):
    fleet.deploy(
        "chat",
        {
            "targets": [
                target("slow", "slow-up", "fake-slow-3000", timeout_seconds=0.4),
                target("fast", "openai-main", "gpt-4o", priority=1),
            ],
            "breaker": {"failures": 100},
        },
    )
    seconds, response = elapsed(lambda: fleet.chat(fleet.key(), "deployment/chat"))
    assert response.status_code == 200, response.text
    assert response.headers[TARGET] == "fast"
    assert 0.4 <= seconds < 2.5  # the slow target answers after 3 s: it was cut at 0.4
    assert fleet.calls_to(fleet.slow, "fake-slow-3000") == 1
    assert audit_of(response).data["attempts"] == [{"target": "slow", "outcome": "timeout"}]


def test_a_connect_error_falls_over(fleet):
    fleet.deploy(
        "chat",
        {
            "targets": [
                target("gone", "dead-up", "gpt-4o"),
                target("here", "openai-main", "gpt-4o", priority=1),
            ]
        },
    )
    response = fleet.chat(fleet.key(), "deployment/chat")
    assert response.status_code == 200 and response.headers[TARGET] == "here"
    assert audit_of(response).data["attempts"] == [{"target": "gone", "outcome": "connect"}]


def test_retries_bound_the_attempts_and_the_last_failure_is_the_answer(fleet):
    fleet.deploy(
        "chat",
        {
            "retries": 1,
            "targets": [
                target("one", "bad-up", "fake-error-500"),
                target("two", "dead-up", "gpt-4o", priority=1),
                target("three", "openai-main", "gpt-4o", priority=2),
            ],
            "breaker": {"failures": 100},
        },
    )
    response = fleet.chat(fleet.key(), "deployment/chat")
    # Two attempts (one retry), both failed; the third target was never tried.
    assert_gateway_error(response, 502, "UPSTREAM_ERROR")
    assert response.headers[TARGET] == "two"
    assert fleet.calls_to(fleet.healthy) == 0
    assert [a["target"] for a in audit_of(response).data["attempts"]] == ["one", "two"]


def test_no_retry_once_a_stream_has_started(fleet):
    fleet.deploy(
        "chat",
        {
            "targets": [
                target("breaks", "bad-up", "fake-stream-reset"),
                target("backup", "openai-main", "gpt-4o", priority=1),
            ]
        },
    )
    with httpx.stream(
        "POST",
        f"{fleet.llm.base_url}/chat/completions",
        json={
            "model": "deployment/chat",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        },
        headers={"Authorization": f"Bearer {fleet.key()}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers[TARGET] == "breaks"
        text = "".join(response.iter_text())
    assert '"UPSTREAM_ERROR"' in text  # the error event: the stream broke mid-way
    assert "[DONE]" not in text
    assert fleet.calls_to(fleet.healthy) == 0  # never a second target's answer


def test_weighted_spreads_calls_by_weight_and_zero_weight_only_falls_back(fleet):
    fleet.deploy(
        "spread",
        {
            "strategy": "weighted",
            "targets": [
                target("heavy", "openai-main", "gpt-4o", weight=3),
                target("light", "slow-up", "gpt-4o", weight=1),
                target("spare", "bad-up", "gpt-4o", weight=0),
            ],
        },
    )
    key = fleet.key()
    seen: Counter[str] = Counter()
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        for _ in range(200):
            answer = client.post(
                f"{fleet.llm.base_url}/chat/completions",
                json={
                    "model": "deployment/spread",
                    "messages": [{"role": "user", "content": "hi"}],
                },
            )
            assert answer.status_code == 200, answer.text
            seen[answer.headers[TARGET]] += 1
    # 150 / 50 expected; 25 is four standard deviations.
    assert abs(seen["heavy"] - 150) <= 25, seen
    assert abs(seen["light"] - 50) <= 25, seen
    assert seen["spare"] == 0
    fleet.deploy(
        "spare-only",
        {
            "strategy": "weighted",
            "targets": [
                target("main", "bad-up", "fake-error-500", weight=1),
                target("spare", "openai-main", "gpt-4o", weight=0),
            ],
        },
    )
    fallback = fleet.chat(key, "deployment/spare-only")
    assert fallback.status_code == 200 and fallback.headers[TARGET] == "spare"


def test_least_busy_prefers_the_idle_target_while_one_is_busy(fleet):
    fleet.deploy(
        "busy",
        {
            "strategy": "least_busy",
            "targets": [
                target("a", "slow-up", "fake-slow-1500"),
                target("b", "openai-main", "gpt-4o"),
            ],
        },
    )
    key = fleet.key()
    first: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: first.append(fleet.chat(key, "deployment/busy")))
    worker.start()
    try:
        wait_for(lambda: fleet.calls_to(fleet.slow, "fake-slow-1500") == 1, what="the slow call")
        second = fleet.chat(key, "deployment/busy")
        assert second.status_code == 200 and second.headers[TARGET] == "b"
    finally:
        worker.join(timeout=30)
    assert first[0].status_code == 200 and first[0].headers[TARGET] == "a"
    # Both idle again: the tie goes to the configuration's order.
    assert fleet.chat(key, "deployment/busy").headers[TARGET] == "a"


def test_lowest_latency_tries_each_target_then_keeps_to_the_fast_one(fleet):
    fleet.deploy(
        "quick",
        {
            "strategy": "lowest_latency",
            "targets": [
                target("slow", "slow-up", "fake-slow-300"),
                target("fast", "openai-main", "gpt-4o"),
            ],
        },
    )
    key = fleet.key()
    answered = [fleet.chat(key, "deployment/quick").headers[TARGET] for _ in range(6)]
    assert answered[:2] == ["slow", "fast"]  # untried targets first, in order
    assert answered[2:] == ["fast"] * 4
    assert fleet.calls_to(fleet.slow) == 1


def test_get_models_lists_the_deployments_the_caller_may_use(fleet):
    fleet.deploy("chat", {"targets": [target("only", "openai-main", "gpt-4o")]})
    key = fleet.key()
    listed = httpx.get(
        f"{fleet.llm.base_url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=30
    ).json()
    ids = {m["id"]: m["owned_by"] for m in listed["data"]}
    assert ids["deployment/chat"] == "deployment"
    one = httpx.get(
        f"{fleet.llm.base_url}/models/deployment/chat",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert one.status_code == 200 and one.json()["id"] == "deployment/chat"
