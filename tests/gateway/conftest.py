"""Real HTTP for gateway tests: the ASGI app and the fake upstream, each served by
uvicorn on 127.0.0.1 in a thread of the test process (so they share the test DB)."""

from __future__ import annotations

import os
import threading
import time

import httpx
import openai
import pytest
import uvicorn

from gateway import principals
from gateway.fake_upstream import RECORDED
from gateway.fake_upstream import app as fake_app
from keys.models import ApiKey
from tests import ports
from tests.conftest import client_for, redis_reachable, require_or_skip
from tests.keys.conftest import mint
from tests.keys.secret_manager_fixtures import (  # noqa: F401 - fixtures for test_secret_managers
    aws,
    azure,
    azure_server,
    gcp,
    gcp_server,
    moto_server,
    vault,
    vault_server,
)


def _free_port() -> int:
    """Any free port (or one of INFERIA_TEST_PORTS, tests/ports.py)."""
    return ports.free_port()


class ServerThread:
    def __init__(self, app, port: int, lifespan: str = "off") -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan=lifespan,
        )
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

    server = ServerThread(application, _free_port(), lifespan="on").start()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def _usage_stream_per_worker(worker_id):
    """xdist workers share one Redis database but not one test database: each gets
    its own usage stream, so one worker's flush never ingests another's records."""
    from inferia.store import keys

    original, dead = keys.USAGE_STREAM, keys.DEAD_LETTERS
    keys.USAGE_STREAM = f"{original}:{worker_id}"
    keys.DEAD_LETTERS = f"{dead}:{worker_id}"
    yield
    keys.USAGE_STREAM, keys.DEAD_LETTERS = original, dead


def _drop_usage_stream() -> None:
    """Entries a previous test left unflushed would land in this test's database."""
    from inferia import store
    from inferia.store import keys, redis_store

    if store.redis_enabled():
        redis_store.delete(keys.USAGE_STREAM)


@pytest.fixture(autouse=True)
def _fresh_gateway_state():
    principals.clear()
    RECORDED.clear()
    _drop_usage_stream()
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
        *(
            {"name": name}
            for name in (
                "fake-error-500",
                "fake-error-400",
                "fake-error-401",
                "fake-error-429",
                "fake-slow-3000",
                "fake-reset",
                "fake-redirect",
                "fake-stream-slow-200",
                "fake-set-cookie",
                "fake-dense",
                "fake-stream-reset",
                "fake-tool-call",
                "fake-embed",
                "fake-embed-32",
            )
        ),
    ]
    response = alice.post(
        "/api/v1/orgs/acme/provider-accounts",
        {
            "name": "openai-main",
            "provider_type": "openai",
            "base_url": f"{fake_upstream.url}/v1",
            "models": models,
            "secret": UPSTREAM_SECRET,
        },
        format="json",
    )
    assert response.status_code == 201, response.content

    class Namespace:
        base_url = f"{gateway_server.url}/api/llm/v1"
        upstream = fake_upstream
        admin = alice

        @staticmethod
        def grant(yaml_text: str) -> None:
            result = alice.put(
                "/api/v1/orgs/acme/access-rules.yaml", yaml_text, content_type="application/yaml"
            )
            assert result.status_code == 200, result.content

        @staticmethod
        def key(user_client=None, **body) -> str:
            return Namespace.key_info(user_client, **body)["key"]

        @staticmethod
        def key_info(user_client=None, **body) -> dict:
            """The API's answer to creating the key (``id``, ``prefix``, ``key``...)."""
            body.setdefault("permissions", ["inference:run", "inference:stream", "model:read"])
            return mint(user_client or client_for(cast.bob), **body)

        @staticmethod
        def key_row(plaintext: str) -> ApiKey:
            return ApiKey.all_orgs.get(public_id=plaintext.split("_")[1])

        @staticmethod
        def sdk(key: str, **options) -> openai.OpenAI:
            """The official client, without its automatic retries (they would hide
            429s and 5xx and spend the limits under test)."""
            options.setdefault("max_retries", 0)
            options.setdefault("timeout", 30)
            return openai.OpenAI(base_url=Namespace.base_url, api_key=key, **options)

        @staticmethod
        def org_settings(**values) -> None:
            """PATCH Acme's settings through the API (merged into the existing ones)."""
            result = alice.patch("/api/v1/orgs/acme", {"settings": values}, format="json")
            assert result.status_code == 200, result.content

        @staticmethod
        def add_account(
            name: str,
            provider_type: str,
            base_url: str,
            models: list,
            secret: str | None = UPSTREAM_SECRET,
            **fields,
        ) -> dict:
            body = {
                "name": name,
                "provider_type": provider_type,
                "base_url": base_url,
                "models": models,
                **fields,
            }
            if secret is not None:
                body["secret"] = secret
            result = alice.post("/api/v1/orgs/acme/provider-accounts", body, format="json")
            assert result.status_code == 201, result.content
            return result.json()

        @staticmethod
        def post(path: str, key: str, json_body, **headers) -> httpx.Response:
            return httpx.post(
                f"{gateway_server.url}/api/llm/v1{path}",
                json=json_body,
                headers={"Authorization": f"Bearer {key}", **headers},
                timeout=30,
            )

    Namespace.grant("authz_rules:\n  - models: ['openai-main/*']\n    users: [bob]\n")
    return Namespace


def assert_gateway_error(response: httpx.Response, status: int, code: str) -> dict:
    """The gateway's error envelope: the contract's keys plus ``type`` for the SDK."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details", "type"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert response.headers.get("X-Request-ID")
    return body["error"]


def assert_sdk_error(error: openai.APIStatusError, status: int, code: str) -> dict:
    """What the OpenAI SDK raised: status and the envelope it parsed into ``body``."""
    assert error.status_code == status, (error.status_code, error.body)
    assert isinstance(error.body, dict), error.body
    assert set(error.body) == {"code", "message", "details", "type"}, error.body
    assert error.body["code"] == code, error.body
    assert error.message and error.body["message"]
    return error.body


def usage_rows(expected: int = 1, **filters) -> list:
    """Flush and read the usage records matching ``filters``, waiting until there are
    ``expected`` of them: the OpenAI SDK (2.x on) stops reading a stream at ``[DONE]``
    and hangs up, while the gateway writes the stream's record and then ends the
    response, so the record may land just after the client has returned."""
    from audit.models import UsageRecord

    def rows() -> list | None:
        flush_usage()
        found = list(UsageRecord.objects.filter(**filters).order_by("created_at"))
        return found if len(found) >= expected else None

    return wait_for(rows, what=f"{expected} usage record(s) {filters}")


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    """Poll until ``predicate()`` is truthy (for work that finishes after a response)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def redis_url_or_skip() -> str:
    """The Redis of this run (``REDIS_URL``), or skip (fail in CI) when there is none."""
    url = os.environ.get("REDIS_URL", "")
    if not url:
        require_or_skip("needs Redis: set REDIS_URL")
    if not redis_reachable(url):
        require_or_skip(f"Redis at {url} is unreachable")
    return url


@pytest.fixture(params=["db", "redis"])
def backend(request, settings) -> str:
    """Run a test on both shared stores: the database (embedded) and Redis.

    The gateway reads ``settings.REDIS_URL`` per request, and the server thread
    shares this process, so the override reaches it. Request this fixture
    before ``llm`` so the org is set up on the same store."""
    settings.REDIS_URL = redis_url_or_skip() if request.param == "redis" else ""
    _drop_usage_stream()
    return request.param


@pytest.fixture
def on_redis(settings) -> str:
    """This test runs on Redis (skipped without it). Request it before ``llm``."""
    settings.REDIS_URL = redis_url_or_skip()
    _drop_usage_stream()
    return settings.REDIS_URL


@pytest.fixture
def two_processes(backend, llm):
    """Two web processes (``uvicorn inferia.asgi:application``) on two free ports, on
    this test's database and store (``backend``): what two machines behind a load
    balancer share. Request ``backend`` and ``llm`` first."""
    from tests.gateway.processes import start_processes

    redis_url = redis_url_or_skip() if backend == "redis" else ""
    processes = start_processes(2, redis_url)
    try:
        yield processes
    finally:
        for process in processes:
            process.stop()


@pytest.fixture
def redis_outage(settings):
    """Call it to make Redis unreachable for the gateway (a closed port), mid-test.

    The store's client (of every event loop, sync callers' too) follows
    ``settings.REDIS_URL``, and the settings fixture puts the real one back."""

    def start() -> None:
        settings.REDIS_URL = f"redis://127.0.0.1:{_free_port()}/0"

    yield start
