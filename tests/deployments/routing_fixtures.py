"""Deployments on real HTTP: the gateway and three fake upstreams (one healthy, one
slow, one failing) plus a port nobody listens on, each a provider account of Acme.

The gateway's fixtures (``llm``, the servers, the per-test resets) live in
``tests/gateway/conftest.py``; ``tests/deployments/conftest.py`` makes them and these
available to the deployment tests. The fake
upstreams of one test process share one request log (``RECORDED``): a request is
told apart by the ``host`` it was sent to.

Deployments are made with the ORM (the management API is another module's) and
announced with an epoch bump, as the services do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import pytest

from deployments import config, health, routing
from deployments.models import Deployment
from gateway.fake_upstream import RECORDED
from gateway.fake_upstream import app as fake_app
from inferia import store
from orgs.scoping import org_scope
from tests import ports
from tests.conftest import client_for
from tests.gateway.conftest import ServerThread, flush_usage, wait_for

CHAT = [{"role": "user", "content": "hi"}]
# Models each upstream's account enables (the fake upstream's behaviour is by name).
SLOW_MODELS = ["gpt-4o", "fake-slow-300", "fake-slow-1500", "fake-slow-3000"]
BAD_MODELS = ["gpt-4o", "fake-error-500", "fake-error-429", "fake-error-400", "fake-stream-reset"]


@pytest.fixture(scope="session")
def slow_upstream():
    server = ServerThread(fake_app, ports.free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bad_upstream():
    server = ServerThread(fake_app, ports.free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dead_port() -> int:
    """A port nothing listens on (connections are refused)."""
    return ports.free_port()


@pytest.fixture(autouse=True)
def _fresh_routing_state():
    health.clear()
    routing.reset_statistics()
    yield
    health.clear()
    routing.reset_statistics()


def host_of(url: str) -> str:
    return url.removeprefix("http://").split("/", 1)[0]


@dataclass
class Fleet:
    """Acme's accounts: ``openai-main`` (healthy), ``slow-up``, ``bad-up``, ``dead-up``."""

    llm: type
    acme: object
    healthy: ServerThread
    slow: ServerThread
    bad: ServerThread
    dead_port: int

    def deploy(self, name: str, document: dict, *, status: str = "ready", **fields) -> Deployment:
        """A deployment of Acme, as the services would save it (then the epoch bump)."""
        with org_scope(self.acme):
            deployment = Deployment.objects.create(
                org=self.acme,
                name=name,
                config=config.to_document(config.parse(document)),
                status=status,
                **fields,
            )
        store.bump_epoch(self.acme.pk)
        return deployment

    def change(self, deployment: Deployment, **fields) -> None:
        with org_scope(self.acme):
            Deployment.objects.filter(pk=deployment.pk).update(**fields)
        store.bump_epoch(self.acme.pk)

    def key(self, user=None) -> str:
        return self.llm.key(client_for(user) if user is not None else None)

    def chat(self, key: str, model: str, **body) -> httpx.Response:
        return self.llm.post("/chat/completions", key, {"model": model, "messages": CHAT, **body})

    @staticmethod
    def calls_to(server_or_port, model: str | None = None) -> int:
        """Requests a fake upstream received (by its port), of ``model`` if given."""
        port = server_or_port if isinstance(server_or_port, int) else server_or_port.url
        host = f"127.0.0.1:{port}" if isinstance(port, int) else host_of(port)
        return sum(
            1
            for r in list(RECORDED)
            if r["headers"].get("host") == host
            and (model is None or r["body"].get("model") == model)
        )


@pytest.fixture
def fleet(llm, cast, fake_upstream, slow_upstream, bad_upstream, dead_port) -> Fleet:
    """Acme with a healthy, a slow, a failing and a dead upstream (each its own
    account); bob may use every model and every deployment."""
    hosts = [host_of(s.url) for s in (fake_upstream, slow_upstream, bad_upstream)]
    llm.org_settings(allowed_private_hosts=[*hosts, f"127.0.0.1:{dead_port}"])
    llm.add_account(
        "slow-up", "openai", f"{slow_upstream.url}/v1", [{"name": m} for m in SLOW_MODELS]
    )
    llm.add_account("bad-up", "openai", f"{bad_upstream.url}/v1", [{"name": m} for m in BAD_MODELS])
    llm.add_account("dead-up", "openai", f"http://127.0.0.1:{dead_port}/v1", [{"name": "gpt-4o"}])
    llm.grant(
        "authz_rules:\n  - models: ['openai-main/*', 'slow-up/*', 'bad-up/*', 'dead-up/*',"
        " 'deployment/*']\n    users: [bob]\n"
    )
    cast.acme.refresh_from_db()
    return Fleet(llm, cast.acme, fake_upstream, slow_upstream, bad_upstream, dead_port)


def target(name: str, account: str, model: str, **fields) -> dict:
    return {"name": name, "account": account, "model": model, **fields}


def audit_of(response: httpx.Response):
    """The audit record of a gateway call (after the usage worker ran)."""
    from audit.models import AuditRecord

    request_id = response.headers["X-Request-ID"]

    def found():
        flush_usage()
        return AuditRecord.objects.filter(
            request_id=request_id, action__startswith="inference"
        ).first()

    return wait_for(found, what=f"the audit record of {request_id}")


def usage_of(response: httpx.Response):
    from audit.models import UsageRecord

    request_id = response.headers["X-Request-ID"]

    def found():
        flush_usage()
        return UsageRecord.objects.filter(request_id=request_id).first()

    return wait_for(found, what=f"the usage record of {request_id}")


def elapsed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result
