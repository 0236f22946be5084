"""Real HTTP for gateway tests: the ASGI app and the fake upstream, each served by
uvicorn on 127.0.0.1 in a thread of the test process (so they share the test DB)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import uvicorn

from gateway import principals
from gateway.fake_upstream import RECORDED
from gateway.fake_upstream import app as fake_app
from tests.conftest import client_for
from tests.keys.conftest import mint


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    def __init__(self, app, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def fake_upstream():
    server = ServerThread(fake_app, _free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway_server():
    from inferia.asgi import application

    server = ServerThread(application, _free_port()).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_gateway_state():
    principals.clear()
    RECORDED.clear()
    yield
    principals.clear()


@pytest.fixture
def upstream_requests(fake_upstream):
    """What the fake upstream received (method, path, headers, body)."""
    return RECORDED


UPSTREAM_SECRET = "sk-fake-upstream-" + "Q" * 32


def flush_usage() -> None:
    """Move usage records from the Redis stream into the database, as the worker does."""
    from gateway import usage

    usage.ingest(consumer="tests")


@pytest.fixture
def llm(transactional_db, cast, fake_upstream, gateway_server):
    """Acme with 'openai-main' (gpt-4o, gpt-4o-mini, fake-* models) on the fake upstream,
    gpt-4o granted to bob; returns a helper namespace."""
    port = fake_upstream.url.rsplit(":", 1)[1]
    cast.acme.settings = {"allowed_private_hosts": [f"127.0.0.1:{port}"]}
    cast.acme.save(update_fields=["settings"])
    alice = client_for(cast.alice)
    models = [
        {"name": "gpt-4o", "input_price_per_million": 2.5, "output_price_per_million": 10.0},
        {"name": "gpt-4o-mini"},
        {"name": "text-embedding-3-small"},
        *({"name": name} for name in (
            "fake-error-500", "fake-error-400", "fake-error-401", "fake-error-429", "fake-slow-3000",
            "fake-reset", "fake-redirect", "fake-stream-slow-200",
        )),
    ]
    response = alice.post(
        "/api/v1/orgs/acme/provider-accounts",
        {"name": "openai-main", "provider_type": "openai", "base_url": f"{fake_upstream.url}/v1",
         "models": models, "secret": UPSTREAM_SECRET},
        format="json",
    )
    assert response.status_code == 201, response.content

    class Namespace:
        base_url = f"{gateway_server.url}/api/llm/v1"
        upstream = fake_upstream
        admin = alice

        @staticmethod
        def grant(yaml_text: str) -> None:
            result = alice.put("/api/v1/orgs/acme/access-rules.yaml", yaml_text, content_type="application/yaml")
            assert result.status_code == 200, result.content

        @staticmethod
        def key(user_client=None, **body) -> str:
            body.setdefault("permissions", ["inference:run", "inference:stream", "model:read"])
            return mint(user_client or client_for(cast.bob), **body)["key"]

        @staticmethod
        def post(path: str, key: str, json_body, **headers) -> httpx.Response:
            return httpx.post(f"{gateway_server.url}/api/llm/v1{path}", json=json_body,
                              headers={"Authorization": f"Bearer {key}", **headers}, timeout=30)

    Namespace.grant("authz_rules:\n  - models: ['openai-main/*']\n    users: [bob]\n")
    return Namespace
