"""Fixtures of the deployment management tests (API, services, YAML, dashboard).

Acme has a provider account ``openai-main`` (gpt-4o, gpt-4o-mini) and ``cheap-llm``
(llama-3); Globex has ``globex-ai`` (gpt-4o). Alice (Acme's owner) may use every model
of Acme; dave (admin) only ``openai-main/gpt-4o-mini``. A tiny launcher kind ``test``
records its calls (registered per test, not a mock of the database).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from deployments import launchers
from inferia.errors import ValidationError
from tests.keys.conftest import allow_private_upstream, create_provider_account

URL = "/api/v1/orgs/acme/deployments"

CHAT = {
    "name": "chat",
    "description": "Chat for everyone",
    "strategy": "priority",
    "targets": [
        {"name": "primary", "account": "openai-main", "model": "gpt-4o"},
        {"name": "cheap", "account": "openai-main", "model": "gpt-4o-mini", "priority": 1},
    ],
}


def grant(client, models: list[str], users: list[str], org: str = "acme") -> None:
    response = client.post(
        f"/api/v1/orgs/{org}/access-rules", {"models": models, "users": users}, format="json"
    )
    assert response.status_code == 201, response.content


@dataclass
class World:
    cast: Any


@pytest.fixture
def world(cast, alice_client, charlie_client) -> World:
    allow_private_upstream(cast.acme)
    allow_private_upstream(cast.globex)
    create_provider_account(alice_client, "openai-main", ["gpt-4o", "gpt-4o-mini"])
    create_provider_account(alice_client, "cheap-llm", ["llama-3"])
    create_provider_account(charlie_client, "globex-ai", ["gpt-4o"], org="globex")
    grant(alice_client, ["openai-main/*", "cheap-llm/*"], ["alice"])
    grant(alice_client, ["openai-main/gpt-4o-mini"], ["dave"])
    grant(charlie_client, ["globex-ai/*"], ["charlie"], org="globex")
    return World(cast)


def create(client, body: dict | None = None, org: str = "acme", **changes):
    return client.post(
        f"/api/v1/orgs/{org}/deployments", {**(body or CHAT), **changes}, format="json"
    )


@dataclass
class RecordingLauncher:
    """A launcher kind for tests: validates ``model``, records start/stop, fails on demand."""

    kind: str = "test"
    calls: list[tuple[str, str, dict]] = field(default_factory=list)
    fail_start: str = ""
    fail_stop: str = ""

    def validate(self, spec: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(spec) - {"kind", "model"})
        if unknown:
            raise ValidationError(
                "Invalid launcher spec",
                details={f"launcher.{k}": ["Unknown field."] for k in unknown},
            )
        if not isinstance(spec.get("model"), str) or not spec["model"]:
            raise ValidationError(
                "Invalid launcher spec", details={"launcher.model": ["Required."]}
            )
        return {"kind": self.kind, "model": spec["model"]}

    def start(self, deployment_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("start", deployment_id, dict(spec)))
        if self.fail_start:
            raise RuntimeError(self.fail_start)
        return {"base_url": "http://127.0.0.1:9000/v1", "handle": f"proc-{deployment_id[:8]}"}

    def stop(self, deployment_id: str, state: dict[str, Any]) -> None:
        self.calls.append(("stop", deployment_id, dict(state)))
        if self.fail_stop:
            raise RuntimeError(self.fail_stop)

    def status(self, state: dict[str, Any]) -> str:
        return "running"


@pytest.fixture
def test_launcher(monkeypatch, settings) -> RecordingLauncher:
    launcher = RecordingLauncher()
    # Registered and enabled for this test only (both are restored afterwards).
    monkeypatch.setitem(launchers._REGISTRY, launcher.kind, launcher)
    settings.INFERIA_LAUNCHERS = [*settings.INFERIA_LAUNCHERS, launcher.kind]
    return launcher


LAUNCHED = {
    "name": "local-llama",
    "strategy": "priority",
    "targets": [{"name": "self-hosted", "launched": True, "model": "llama-3"}],
    "launcher": {"kind": "test", "model": "llama-3"},
}
