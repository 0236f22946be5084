# The gateway's live servers and the `llm` fixture, for usage and audit tests.
from tests.gateway.conftest import (  # noqa: F401
    _fresh_gateway_state,
    fake_upstream,
    gateway_server,
    llm,
    upstream_requests,
)
from tests.keys.conftest import service_account  # noqa: F401,E402
