"""Traces: an in-process OTLP receiver, and the gateway's live servers and ``llm``."""

from __future__ import annotations

import pytest

from inferia import tracing
from tests.deployments.routing_fixtures import _fresh_routing_state  # noqa: F401
from tests.gateway.conftest import (  # noqa: F401
    _fresh_gateway_state,
    _usage_stream_per_worker,
    fake_upstream,
    gateway_server,
    llm,
    on_redis,
    upstream_requests,
)
from tests.observability.otlp_receiver import Receiver, ReceiverServer


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
