"""The breaker on the gateway's path: a failing target stops being called once its
breaker opens (counted at the fake upstream), a half-open probe after the cooldown,
closed again when the target answers; a dead or slow target costs callers nothing
while open; every target down is 503 with Retry-After."""

from __future__ import annotations

from tests.dashboard.conftest import page_client
from tests.deployments.routing_fixtures import ServerThread, audit_of, elapsed, fake_app, target
from tests.gateway.conftest import assert_gateway_error

TARGET = "X-Inferia-Target"
BREAKER = {"failures": 2, "window_seconds": 60, "cooldown_seconds": 30}


def test_an_open_breaker_keeps_calls_off_the_failing_target_until_a_probe(
    backend, fleet, clock_shift, cast
):
    fleet.deploy(
        "chat",
        {
            "targets": [
                target("primary", "bad-up", "fake-error-500"),
                target("backup", "openai-main", "gpt-4o", priority=1),
            ],
            "breaker": BREAKER,
        },
    )
    key = fleet.key()
    for _ in range(2):
        assert fleet.chat(key, "deployment/chat").headers[TARGET] == "backup"
    assert fleet.calls_to(fleet.bad) == 2  # the breaker is open now
    for _ in range(3):
        response = fleet.chat(key, "deployment/chat")
        assert response.status_code == 200 and response.headers[TARGET] == "backup"
    assert fleet.calls_to(fleet.bad) == 2
    assert audit_of(response).data["attempts"] == [{"target": "primary", "outcome": "skipped:open"}]
    # The API and the dashboard show the open breaker (the store every process shares).
    health = fleet.llm.admin.get("/api/v1/orgs/acme/deployments/chat/health")
    assert health.status_code == 200, health.content
    primary = {t["name"]: t for t in health.json()["targets"]}["primary"]
    assert (primary["state"], primary["failures"]) == ("open", 2) and primary["open_until"]
    page = page_client(cast.alice).get("/orgs/acme/deployments/chat").content.decode()
    assert 'data-health="primary">open' in page
    clock_shift(31)  # the cooldown is over: one probe
    probed = fleet.chat(key, "deployment/chat")
    assert probed.headers[TARGET] == "backup"
    assert fleet.calls_to(fleet.bad) == 3
    # The probe failed: open again for a full cooldown.
    fleet.chat(key, "deployment/chat")
    assert fleet.calls_to(fleet.bad) == 3


def test_a_target_that_comes_back_is_closed_by_its_probe(backend, fleet, clock_shift):
    fleet.deploy(
        "chat",
        {
            "targets": [
                target("primary", "dead-up", "gpt-4o"),
                target("backup", "slow-up", "gpt-4o", priority=1),
            ],
            "breaker": BREAKER,
        },
    )
    key = fleet.key()
    for _ in range(3):
        assert fleet.chat(key, "deployment/chat").headers[TARGET] == "backup"
    revived = ServerThread(fake_app, fleet.dead_port).start()  # the upstream is back
    try:
        assert fleet.chat(key, "deployment/chat").headers[TARGET] == "backup"  # still open
        assert fleet.calls_to(fleet.dead_port) == 0
        clock_shift(31)
        probe = fleet.chat(key, "deployment/chat")
        assert probe.status_code == 200 and probe.headers[TARGET] == "primary"
        assert fleet.calls_to(fleet.dead_port) == 1
        # Closed: the primary takes the traffic again.
        assert [fleet.chat(key, "deployment/chat").headers[TARGET] for _ in range(2)] == [
            "primary",
            "primary",
        ]
    finally:
        revived.stop()


def test_a_slow_target_costs_its_timeout_once_then_nothing_while_open(fleet):
    fleet.deploy(
        "chat",
        {
            "targets": [
                target("slow", "slow-up", "fake-slow-3000", timeout_seconds=0.5),
                target("fast", "openai-main", "gpt-4o", priority=1),
            ],
            "breaker": {"failures": 1, "cooldown_seconds": 60},
        },
    )
    key = fleet.key()
    first, answer = elapsed(lambda: fleet.chat(key, "deployment/chat"))
    assert answer.headers[TARGET] == "fast" and first >= 0.5
    for _ in range(3):
        seconds, answer = elapsed(lambda: fleet.chat(key, "deployment/chat"))
        assert answer.status_code == 200 and answer.headers[TARGET] == "fast"
        assert seconds < 0.5
    assert fleet.calls_to(fleet.slow) == 1


def test_a_refused_connection_is_tried_once_per_breaker_window(fleet):
    fleet.deploy(
        "chat",
        {
            "targets": [
                target("gone", "dead-up", "gpt-4o"),
                target("here", "openai-main", "gpt-4o", priority=1),
            ],
            "breaker": {"failures": 1, "cooldown_seconds": 60},
        },
    )
    key = fleet.key()
    outcomes = []
    for _ in range(4):
        response = fleet.chat(key, "deployment/chat")
        assert response.status_code == 200 and response.headers[TARGET] == "here"
        outcomes.append(audit_of(response).data["attempts"][0]["outcome"])
    assert outcomes == ["connect", "skipped:open", "skipped:open", "skipped:open"]


def test_every_target_down_is_503_with_retry_after(backend, fleet):
    fleet.deploy(
        "chat",
        {
            "targets": [
                target("gone", "dead-up", "gpt-4o"),
                target("broken", "bad-up", "fake-error-500", priority=1),
            ],
            "breaker": {"failures": 1, "cooldown_seconds": 45},
        },
    )
    key = fleet.key()
    tried = fleet.chat(key, "deployment/chat")
    error = assert_gateway_error(tried, 503, "SERVICE_UNAVAILABLE")
    assert "deployment/chat" in error["message"]
    assert TARGET not in tried.headers
    assert 1 <= int(tried.headers["Retry-After"]) <= 45
    assert fleet.calls_to(fleet.bad) == 1
    skipped = fleet.chat(key, "deployment/chat")  # both open: nothing is called
    assert_gateway_error(skipped, 503, "SERVICE_UNAVAILABLE")
    assert 40 <= int(skipped.headers["Retry-After"]) <= 45
    assert fleet.calls_to(fleet.bad) == 1
    record = audit_of(skipped)
    assert record.status_code == 503 and record.data["target"] == ""
    assert {a["outcome"] for a in record.data["attempts"]} == {"skipped:open"}
