"""Client SDK tests reuse the gateway's real-HTTP fixtures (the gateway and the fake
upstream served by uvicorn on 127.0.0.1; see ``tests/gateway/conftest.py``)."""

from tests.gateway.conftest import (  # noqa: F401 (fixtures)
    _fresh_gateway_state,
    _usage_stream_per_worker,
    fake_upstream,
    gateway_server,
    llm,
    upstream_requests,
)
