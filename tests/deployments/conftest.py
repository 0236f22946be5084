"""Fixtures of the deployment tests: the gateway's (``tests/gateway/conftest.py``), the
routing tests' fleet of fake upstreams (``tests/deployments/routing_fixtures.py``) and
the management tests' org and recording launcher (``tests/deployments/mgmt_fixtures.py``)."""

from __future__ import annotations

from tests.deployments.mgmt_fixtures import test_launcher, world  # noqa: F401
from tests.deployments.routing_fixtures import (  # noqa: F401
    _fresh_routing_state,
    bad_upstream,
    dead_port,
    fleet,
    slow_upstream,
)
from tests.gateway.conftest import (  # noqa: F401
    _fresh_gateway_state,
    _usage_stream_per_worker,
    backend,
    fake_upstream,
    gateway_server,
    llm,
    on_redis,
)
