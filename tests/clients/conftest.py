"""Third-party clients (the OpenAI SDK, LangChain, LiteLLM) against the real gateway
over real HTTP, with the fake upstream: the gateway tests' servers and fixtures, and
a guard that fails a test when anything tries to reach a host other than this one.

LiteLLM would fetch its model price map at import and LangChain could trace to
LangSmith: both are turned off here, before either is imported, and the guard
proves it (``IMPORT_ATTEMPTS``, and each test's own attempts)."""

from __future__ import annotations

import contextlib
import os
import socket

import pytest

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_OFFLINE_MODE"] = "true"
os.environ["LITELLM_TELEMETRY"] = "False"
os.environ["LANGSMITH_TRACING"] = "false"
os.environ["LANGCHAIN_TRACING_V2"] = "false"
os.environ["HF_HUB_OFFLINE"] = "1"

LOCAL = {"127.0.0.1", "localhost", "::1"}
ATTEMPTS: list[str] = []


@contextlib.contextmanager
def local_only(attempts: list[str]):
    """Refuse (and note) name lookups and connections to anything but this host."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOCAL:
            attempts.append(f"lookup {name}")
            raise socket.gaierror(socket.EAI_NONAME, f"tests/clients: no network ({name})")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        if isinstance(address, tuple) and str(address[0]) not in LOCAL:
            attempts.append(f"connect {address[0]}")
            raise ConnectionRefusedError(f"tests/clients: no network ({address[0]})")
        return real_connect(sock, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]
    try:
        yield attempts
    finally:
        socket.getaddrinfo = real_getaddrinfo  # type: ignore[assignment]
        socket.socket.connect = real_connect  # type: ignore[method-assign]


IMPORT_ATTEMPTS: list[str] = []
with local_only(IMPORT_ATTEMPTS):
    import langchain_openai  # noqa: F401, E402
    import litellm  # noqa: E402

    litellm.telemetry = False
    litellm.num_retries = 0

from tests.gateway.conftest import (  # noqa: E402, F401
    _fresh_gateway_state,
    _usage_stream_per_worker,
    fake_upstream,
    gateway_server,
    llm,
    upstream_requests,
)


@pytest.fixture(autouse=True)
def no_network():
    """Each client test talks to 127.0.0.1 only; an attempt elsewhere fails it."""
    attempts: list[str] = []
    with local_only(attempts):
        yield attempts
    assert attempts == [], f"a client tried to reach the network: {attempts}"
