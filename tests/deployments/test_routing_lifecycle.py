"""A deployment's routes as the principal snapshot holds them: a warm call touches no
database, a deleted deployment drains its streams and then answers 404, a stopped
one 503, targets whose account or model is gone are dropped, a launched endpoint is
reachable for its own calls only, and nothing crosses organizations."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import httpx
import pytest

from deployments import launchers
from deployments.models import Deployment
from gateway.fake_upstream import RECORDED
from inferia import store
from orgs.scoping import org_scope
from tests.deployments.routing_fixtures import (
    CHAT,
    ServerThread,
    audit_of,
    fake_app,
    flush_usage,
    target,
)
from tests.gateway.conftest import assert_gateway_error
from tests.gateway.test_hot_path import no_database
from tests.ports import free_port, port_range, worker_slice

TARGET = "X-Inferia-Target"


@pytest.mark.redis
def test_a_warm_deployment_call_touches_no_database(on_redis, fleet):
    fleet.deploy("chat", {"targets": [target("main", "openai-main", "gpt-4o")]})
    fleet.deploy(
        "failover",
        {
            "targets": [
                target("broken", "bad-up", "fake-error-500"),
                target("spare", "slow-up", "gpt-4o", priority=1),
            ],
            "breaker": {"failures": 100},
        },
    )
    client = fleet.llm.sdk(fleet.key())
    for model in ("deployment/chat", "deployment/failover"):  # warms every cache
        client.chat.completions.create(model=model, messages=CHAT)
    with no_database() as touched:
        answers = [
            client.chat.completions.with_raw_response.create(model=model, messages=CHAT)
            for model in ("deployment/chat", "deployment/failover", "deployment/chat")
        ]
        chunks = list(
            client.chat.completions.create(model="deployment/chat", messages=CHAT, stream=True)
        )
    assert touched == []
    assert [a.http_response.headers[TARGET] for a in answers] == ["main", "spare", "main"]
    assert chunks and chunks[0].model == "deployment/chat"
    flush_usage()  # nothing was lost: the records waited in the Redis stream


def test_deleting_a_deployment_lets_its_streams_finish_and_then_answers_404(fleet):
    deployment = fleet.deploy(
        "streamer", {"targets": [target("slow", "openai-main", "fake-stream-slow-200")]}
    )
    key = fleet.key()
    with httpx.stream(
        "POST",
        f"{fleet.llm.base_url}/chat/completions",
        json={"model": "deployment/streamer", "messages": CHAT, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        with org_scope(fleet.acme):
            Deployment.objects.filter(pk=deployment.pk).delete()
        store.bump_epoch(fleet.acme.pk)
        rest = list(lines)
    assert '"deployment/streamer"' in first
    assert "data: [DONE]" in rest
    gone = fleet.chat(key, "deployment/streamer")
    assert_gateway_error(gone, 404, "NOT_FOUND")


def test_a_stopped_or_unready_deployment_is_503(fleet):
    fleet.deploy("paused", {"targets": [target("a", "openai-main", "gpt-4o")]}, status="stopped")
    fleet.deploy("booting", {"targets": [target("a", "openai-main", "gpt-4o")]}, status="creating")
    key = fleet.key()
    assert_gateway_error(fleet.chat(key, "deployment/paused"), 503, "SERVICE_UNAVAILABLE")
    booting = fleet.chat(key, "deployment/booting")
    assert_gateway_error(booting, 503, "SERVICE_UNAVAILABLE")
    assert booting.headers["Retry-After"]
    assert fleet.calls_to(fleet.healthy) == 0


def test_targets_whose_account_or_model_is_gone_are_dropped(fleet):
    fleet.deploy(
        "chat",
        {
            "targets": [
                target("first", "slow-up", "gpt-4o"),
                target("second", "openai-main", "gpt-4o", priority=1),
            ]
        },
    )
    fleet.deploy("nothing", {"targets": [target("ghost", "openai-main", "not-enabled")]})
    key = fleet.key()
    assert fleet.chat(key, "deployment/chat").headers[TARGET] == "first"
    account_id = fleet.llm.admin.get("/api/v1/orgs/acme/provider-accounts").json()["results"]
    slow_id = next(a["id"] for a in account_id if a["name"] == "slow-up")
    deleted = fleet.llm.admin.delete(f"/api/v1/orgs/acme/provider-accounts/{slow_id}")
    assert deleted.status_code == 204, deleted.content
    response = fleet.chat(key, "deployment/chat")
    assert response.status_code == 200 and response.headers[TARGET] == "second"
    empty = fleet.chat(key, "deployment/nothing")
    assert_gateway_error(empty, 503, "SERVICE_UNAVAILABLE")
    assert empty.headers["Retry-After"] == "1"


def test_a_deployment_is_granted_like_a_model(fleet):
    fleet.deploy("chat", {"targets": [target("a", "openai-main", "gpt-4o")]})
    fleet.llm.grant("authz_rules:\n  - models: ['openai-main/*']\n    users: [bob]\n")
    key = fleet.key()
    assert_gateway_error(fleet.chat(key, "deployment/chat"), 403, "PERMISSION_DENIED")
    fleet.llm.grant("authz_rules:\n  - models: ['deployment/chat']\n    users: [bob]\n")
    assert fleet.chat(key, "deployment/chat").status_code == 200


def test_another_orgs_deployment_is_404(fleet, cast):
    from deployments import config

    with org_scope(cast.globex):
        Deployment.objects.create(
            org=cast.globex,
            name="theirs",
            config=config.to_document(
                config.parse({"targets": [target("a", "openai-main", "gpt-4o")]})
            ),
            status="ready",
        )
    store.bump_epoch(cast.globex.pk)
    response = fleet.chat(fleet.key(), "deployment/theirs")  # bob may use deployment/*
    assert_gateway_error(response, 404, "NOT_FOUND")


def test_a_launched_endpoint_is_allowed_for_its_own_calls_only(fleet):
    launched = ServerThread(fake_app, free_port()).start()  # not in allowed_private_hosts
    try:
        fleet.deploy(
            "selfhosted",
            {"targets": [{"name": "vllm", "launched": True, "model": "my-llama"}]},
            launcher={"kind": "local"},
            launcher_state={"base_url": f"{launched.url}/v1"},
        )
        key = fleet.key()
        response = fleet.chat(key, "deployment/selfhosted")
        assert response.status_code == 200, response.text
        assert response.headers[TARGET] == "vllm"
        sent = [r for r in RECORDED if r["headers"].get("host") == launched.url[7:]]
        assert len(sent) == 1
        assert sent[0]["body"]["model"] == "my-llama"
        assert "authorization" not in sent[0]["headers"]  # no provider secret goes there
        assert audit_of(response).data["target_fqn"] == ""
        # The operator's rules still hold: a metadata address is never called.
        fleet.deploy(
            "metadata",
            {"targets": [{"name": "evil", "launched": True, "model": "x"}]},
            launcher={"kind": "local"},
            launcher_state={"base_url": "http://169.254.169.254/v1"},
        )
        refused = fleet.chat(key, "deployment/metadata")
        assert_gateway_error(refused, 503, "SERVICE_UNAVAILABLE")
        assert audit_of(refused).data["attempts"] == [{"target": "evil", "outcome": "connect"}]
    finally:
        launched.stop()


def test_a_deployment_routes_to_the_process_its_local_launcher_started(fleet, settings, tmp_path):
    settings.INFERIA_LAUNCHER_DIR = tmp_path / "launchers"
    ports = port_range(None)
    if ports is not None:  # a shared machine: stay in this run's ports
        mine = worker_slice(ports)
        settings.INFERIA_LAUNCHER_LOCAL_PORTS = f"{mine.start}-{mine.stop - 1}"
    launcher = launchers.get("local")
    deployment = fleet.deploy(
        "local-llm",
        {"targets": [{"name": "proc", "launched": True, "model": "demo-model"}]},
        status="creating",
        launcher={"kind": "local", "model": "demo-model"},
    )
    state = launcher.start(str(deployment.pk), {"kind": "local", "model": "demo-model"})
    try:
        fleet.change(deployment, launcher_state=state, status="ready")
        key = fleet.key()
        response = fleet.chat(key, "deployment/local-llm")
        assert response.status_code == 200, response.text
        assert response.headers[TARGET] == "proc"
        assert response.json()["choices"][0]["message"]["content"] == (
            "Hello from the fake upstream."
        )
    finally:
        launcher.stop(str(deployment.pk), state)
    # The process is gone: its only target cannot answer.
    stopped = fleet.chat(key, "deployment/local-llm")
    assert_gateway_error(stopped, 503, "SERVICE_UNAVAILABLE")


def test_the_api_launches_a_deployment_the_gateway_serves_and_its_delete_stops_the_process(
    fleet, settings, tmp_path
):
    """End to end, as a user would: POST a deployment with a local launcher spec (a real
    process starts), call it through the gateway, DELETE it (the process is stopped and
    the name is gone from the gateway at once)."""
    settings.INFERIA_LAUNCHER_DIR = tmp_path / "launchers"
    ports = port_range(None)
    if ports is not None:
        mine = worker_slice(ports)
        settings.INFERIA_LAUNCHER_LOCAL_PORTS = f"{mine.start}-{mine.stop - 1}"
    admin = fleet.llm.admin
    created = admin.post(
        "/api/v1/orgs/acme/deployments",
        {
            "name": "self-hosted",
            "targets": [{"name": "proc", "launched": True, "model": "demo-model"}],
            "launcher": {"kind": "local", "model": "demo-model"},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "ready"
    pid, port = body["launcher_state"]["pid"], body["launcher_state"]["port"]
    os.kill(pid, 0)  # running
    try:
        key = fleet.key()
        response = fleet.chat(key, "deployment/self-hosted")
        assert response.status_code == 200, response.text
        assert response.headers[TARGET] == "proc"
        assert response.json()["model"] == "deployment/self-hosted"
    finally:
        deleted = admin.delete("/api/v1/orgs/acme/deployments/self-hosted")
    assert deleted.status_code == 204, deleted.content
    with pytest.raises(ProcessLookupError):
        for _ in range(50):  # reaped by the launcher's stop; allow the kernel a moment
            os.kill(pid, 0)
            time.sleep(0.1)
    with socket.socket() as probe, pytest.raises(OSError):
        probe.settimeout(1)
        probe.connect(("127.0.0.1", port))
    assert_gateway_error(fleet.chat(key, "deployment/self-hosted"), 404, "NOT_FOUND")


def test_deleting_a_launched_deployment_lets_its_streams_in_flight_finish(
    fleet, settings, tmp_path
):
    """A stream in flight when its launched deployment is deleted still ends whole: the
    gateway keeps its route, and the launcher's stop is a graceful one (SIGTERM: the
    process finishes its requests in flight within the grace period, then exits)."""
    settings.INFERIA_LAUNCHER_DIR = tmp_path / "launchers"
    ports = port_range(None)
    if ports is not None:
        mine = worker_slice(ports)
        settings.INFERIA_LAUNCHER_LOCAL_PORTS = f"{mine.start}-{mine.stop - 1}"
    admin = fleet.llm.admin
    model = "fake-stream-slow-200"  # six words 200 ms apart
    created = admin.post(
        "/api/v1/orgs/acme/deployments",
        {
            "name": "drained",
            "targets": [{"name": "proc", "launched": True, "model": model}],
            "launcher": {"kind": "local", "model": model},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    pid = created.json()["launcher_state"]["pid"]
    key = fleet.key()
    lines: list[str] = []
    started = threading.Event()

    def stream() -> None:
        with httpx.stream(
            "POST",
            f"{fleet.llm.base_url}/chat/completions",
            json={"model": "deployment/drained", "messages": CHAT, "stream": True},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as response:
            for line in response.iter_lines():
                if line:
                    lines.append(line)
                    started.set()

    reader = threading.Thread(target=stream)
    reader.start()
    try:
        assert started.wait(10), "the stream never started"
        deleted = admin.delete("/api/v1/orgs/acme/deployments/drained")
    finally:
        reader.join(20)
    assert deleted.status_code == 204, deleted.content
    assert lines[-1] == "data: [DONE]", lines
    words = [
        json.loads(line.removeprefix("data: "))["choices"][0]["delta"].get("content", "")
        for line in lines[:-1]
        if json.loads(line.removeprefix("data: ")).get("choices")
    ]
    assert "".join(words) == "Hello from the fake upstream."
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
    assert_gateway_error(fleet.chat(key, "deployment/drained"), 404, "NOT_FOUND")
