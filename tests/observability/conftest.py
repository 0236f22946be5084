"""Fixtures of the observability tests: the gateway's (``tests/gateway/conftest.py``:
Acme's ``openai-main`` account on the fake upstream, the ASGI app served over real HTTP
in a thread of this process, whose in-process registry ``/metrics`` exposes), scraping
helpers that read the page with Prometheus's own text parser, and an in-process OTLP
receiver for the traces."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from inferia import tracing
from tests.deployments.routing_fixtures import _fresh_routing_state  # noqa: F401
from tests.gateway.conftest import (  # noqa: F401
    _fresh_gateway_state,
    _usage_stream_per_worker,
    backend,
    fake_upstream,
    gateway_server,
    llm,
    on_redis,
    redis_outage,
    upstream_requests,
    wait_for,
)
from tests.observability.otlp_receiver import Receiver, ReceiverServer

SCRAPE_TOKEN = "scrape-token-" + "S" * 32


@dataclass(frozen=True)
class Page:
    """A parsed exposition: every sample as (name, labels, value)."""

    text: str
    samples: list[tuple[str, dict[str, str], float]]
    families: dict[str, str]  # family name -> type

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named ``name`` whose labels include ``labels``."""
        return sum(
            value
            for sample, sample_labels, value in self.samples
            if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )

    def series(self, name: str) -> list[dict[str, str]]:
        return [labels for sample, labels, _ in self.samples if sample == name]

    def label_values(self) -> set[str]:
        return {v for _, labels, _ in self.samples for v in labels.values()}


def parse(text: str) -> Page:
    samples, families = [], {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        samples += [(s.name, dict(s.labels), s.value) for s in family.samples]
    return Page(text=text, samples=samples, families=families)


@pytest.fixture
def metrics_token(settings) -> str:
    settings.INFERIA_METRICS_TOKEN = SCRAPE_TOKEN
    return SCRAPE_TOKEN


@pytest.fixture
def scrape(gateway_server, metrics_token):  # noqa: F811 - the imported fixture
    """GET /metrics of the served app over HTTP; with the operator's token by default.

    Each scrape first waits until the server has no request in flight: a gateway call
    is recorded at its very end, just after the client got the last byte."""

    def settled() -> None:
        tasks = gateway_server.server.server_state.tasks
        wait_for(lambda: not tasks, what="the gateway's requests to end")

    def get(credential: str | None = metrics_token, **params: str) -> httpx.Response:
        settled()
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        return httpx.get(
            f"{gateway_server.url}/metrics", headers=headers, params=params, timeout=30
        )

    def page(credential: str | None = metrics_token, **params: str) -> Page:
        response = get(credential, **params)
        assert response.status_code == 200, response.text[:500]
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return parse(response.text)

    get.page = page  # type: ignore[attr-defined]
    get.settled = settled  # type: ignore[attr-defined]
    return get


@pytest.fixture(scope="session")
def otlp_server():
    server = ReceiverServer()
    server.start()
    yield server.receiver
    server.stop()


@pytest.fixture
def otlp(otlp_server) -> Receiver:
    """The receiver, emptied for this test."""
    otlp_server.clear()
    return otlp_server


@pytest.fixture
def traced(otlp):
    """This process traces to the receiver (the gateway's server thread included) for
    the test, through ``inferia.tracing``'s test hook; off again afterwards."""
    tracing.configure(endpoint=otlp.endpoint, service_name="inferia-test", schedule_delay_millis=50)
    yield otlp
    tracing.reset()
