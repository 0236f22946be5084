"""The active health check (the beat task): a cheap call per due target through the
upstream client and its SSRF rules; a failure opens the target's breaker and the
deployment turns ``degraded``, a success closes it and it is ``ready`` again; the
state is what the API shows (``health.snapshot``)."""

from __future__ import annotations

from deployments import health
from deployments.models import Deployment
from deployments.tasks import deployment_health_check
from gateway.fake_upstream import RECORDED
from inferia.celery import app
from orgs.scoping import org_scope
from tests.deployments.routing_fixtures import ServerThread, audit_of, fake_app, host_of, target
from tests.gateway.conftest import UPSTREAM_SECRET

TARGET = "X-Inferia-Target"


def _reload(fleet, deployment) -> Deployment:
    with org_scope(fleet.acme):
        return Deployment.objects.get(pk=deployment.pk)


def _checks(server) -> list[dict]:
    host = host_of(server.url) if hasattr(server, "url") else f"127.0.0.1:{server}"
    return [r for r in list(RECORDED) if r["method"] == "GET" and r["headers"]["host"] == host]


def test_the_beat_schedule_runs_the_check_every_15_seconds():
    entry = app.conf.beat_schedule["deployment-health-check"]
    assert entry == {"task": "deployments.tasks.deployment_health_check", "schedule": 15.0}


def test_a_failed_check_opens_the_target_and_degrades_the_deployment(backend, fleet, clock_shift):
    deployment = fleet.deploy(
        "chat",
        {
            "targets": [
                target("down", "dead-up", "gpt-4o"),
                target("up", "openai-main", "gpt-4o", priority=1),
            ],
            "health_check": {"interval_seconds": 30},
            "breaker": {"cooldown_seconds": 60},
        },
    )
    before = {t["name"]: t for t in health.snapshot(_reload(fleet, deployment))}
    assert before["down"]["state"] == before["up"]["state"] == "unknown"
    assert deployment_health_check() == 1  # one org has deployments
    row = _reload(fleet, deployment)
    assert row.status == "degraded" and "down" in row.status_reason
    shown = {t["name"]: t for t in health.snapshot(row)}
    assert shown["down"]["state"] == "open" and shown["down"]["open_until"]
    assert shown["down"]["fqn"] == "dead-up/gpt-4o"
    assert shown["down"]["last_check"]["ok"] is False
    assert shown["down"]["last_check"]["error"] == "could not connect"
    assert shown["up"]["state"] == "closed"
    assert shown["up"]["last_check"]["ok"] is True
    assert shown["up"]["last_check"]["latency_ms"] >= 0
    # The cheap call: GET /models with the account's secret.
    (sent,) = _checks(fleet.healthy)
    assert sent["path"] == "/v1/models"
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    # Callers skip the open target without waiting for it.
    response = fleet.chat(fleet.key(), "deployment/chat")
    assert response.status_code == 200 and response.headers[TARGET] == "up"
    assert audit_of(response).data["attempts"] == [{"target": "down", "outcome": "skipped:open"}]
    # Within the interval nothing is checked again.
    deployment_health_check()
    assert len(_checks(fleet.healthy)) == 1


def test_a_passed_check_closes_the_target_and_the_deployment_is_ready_again(
    backend, fleet, clock_shift
):
    deployment = fleet.deploy(
        "chat",
        {
            "targets": [target("down", "dead-up", "gpt-4o")],
            "health_check": {"interval_seconds": 30},
            "breaker": {"cooldown_seconds": 600},
        },
    )
    deployment_health_check()
    assert _reload(fleet, deployment).status == "degraded"
    revived = ServerThread(fake_app, fleet.dead_port).start()
    try:
        clock_shift(31)
        deployment_health_check()
        assert len(_checks(fleet.dead_port)) == 1
        row = _reload(fleet, deployment)
        assert (row.status, row.status_reason) == ("ready", "")
        (shown,) = health.snapshot(row)
        assert shown["state"] == "closed" and shown["last_check"]["ok"] is True
        # Closed long before its cooldown would have ended: callers get it again.
        response = fleet.chat(fleet.key(), "deployment/chat")
        assert response.status_code == 200 and response.headers[TARGET] == "down"
    finally:
        revived.stop()


def test_the_check_obeys_the_orgs_ssrf_rules(fleet):
    deployment = fleet.deploy("chat", {"targets": [target("bad", "bad-up", "gpt-4o")]})
    fleet.llm.org_settings(allowed_private_hosts=[host_of(fleet.healthy.url)])
    deployment_health_check()
    (shown,) = health.snapshot(_reload(fleet, deployment))
    assert shown["state"] == "open"
    assert shown["last_check"]["error"] == "refused: the address is not allowed"
    assert _checks(fleet.bad) == []


def test_stopped_deployments_and_disabled_checks_are_left_alone(fleet):
    stopped = fleet.deploy(
        "stopped", {"targets": [target("a", "dead-up", "gpt-4o")]}, status="stopped"
    )
    quiet = fleet.deploy(
        "quiet",
        {"targets": [target("a", "dead-up", "gpt-4o")], "health_check": {"enabled": False}},
    )
    deployment_health_check()
    for deployment in (stopped, quiet):
        (shown,) = health.snapshot(_reload(fleet, deployment))
        assert shown["state"] == "unknown" and shown["last_check"] is None
    assert _reload(fleet, quiet).status == "ready"
