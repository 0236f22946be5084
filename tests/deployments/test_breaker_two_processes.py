"""Two web processes share a deployment's breakers through the store: once the
failures seen by process A open a target's breaker, process B never calls it.
Each process has its own in-process copy of the breakers (at most 1 s old), so B
here reads the state for the first time after A opened it."""

from __future__ import annotations

import pytest

from tests.deployments.routing_fixtures import CHAT, target

TARGET = "X-Inferia-Target"


@pytest.fixture
def pair(backend, fleet):
    """Processes A and B on this test's database and store (``backend``)."""
    from tests.gateway.conftest import redis_url_or_skip
    from tests.gateway.processes import start_processes

    processes = start_processes(2, redis_url_or_skip() if backend == "redis" else "")
    try:
        yield processes
    finally:
        for process in processes:
            process.stop()


@pytest.mark.redis
def test_a_breaker_opened_by_one_process_keeps_the_other_off_the_target(backend, fleet, pair):
    a, b = pair
    fleet.deploy(
        "chat",
        {
            "targets": [
                target("primary", "bad-up", "fake-error-500"),
                target("backup", "openai-main", "gpt-4o", priority=1),
            ],
            "breaker": {"failures": 2, "window_seconds": 600, "cooldown_seconds": 600},
        },
    )
    key = fleet.key()
    warm = b.chat(key, {"model": "openai-main/gpt-4o", "messages": CHAT})
    assert warm.status_code == 200, warm.text  # B knows the key (not the breaker yet)
    for _ in range(2):
        answer = a.chat(key, {"model": "deployment/chat", "messages": CHAT})
        assert answer.status_code == 200 and answer.headers[TARGET] == "backup"
    assert fleet.calls_to(fleet.bad) == 2
    for _ in range(3):
        answer = b.chat(key, {"model": "deployment/chat", "messages": CHAT})
        assert answer.status_code == 200 and answer.headers[TARGET] == "backup"
    assert fleet.calls_to(fleet.bad) == 2  # B never called the open target
