"""The one uvicorn command line that serves Inferia (``manage.py serve``, bench/, docs).

Explicit rather than uvicorn's ``auto`` choices, so a missing optional package
is an error at start, not a silent fall-back to the pure-Python loop or parser:

- ``--loop uvloop --http httptools``: the C event loop and HTTP parser (about a
  third less CPU per gateway request than asyncio with h11, README.md, Benchmark).
- ``--backlog 4096``: the listen queue; with the default (2048) a burst of new
  connections beyond it waits for SYN retransmits (1 s, then 3 s): a latency tail
  no server-side measurement shows.
- ``--timeout-keep-alive 75``: longer than the usual client pools' idle time
  (and nginx's default ``keepalive_timeout``), so a pooled connection is not closed
  by the server while the client is about to reuse it.
- ``--no-access-log``: the gateway logs each call itself (one line with its
  request id, org and latency); uvicorn's access line would be a second copy.
- ``--no-proxy-headers``: who a client is behind a proxy has one rule,
  ``inferia.request_meta.client_ip_from`` (``X-Forwarded-For`` believed only from
  ``INFERIA_TRUSTED_PROXIES``; ``X-Forwarded-Proto`` through Django's
  ``SECURE_PROXY_SSL_HEADER``). uvicorn's own (on by default) believed any process
  on 127.0.0.1 before that rule ran, and parsed the peer address on every request.
"""

from __future__ import annotations

UVICORN_OPTIONS = (
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--backlog",
    "4096",
    "--timeout-keep-alive",
    "75",
    "--no-access-log",
    "--no-proxy-headers",
    "--lifespan",
    "on",
)


def uvicorn_command(python: str, host: str, port: int, *extra: str) -> list[str]:
    """``python -m uvicorn inferia.asgi:application`` with the production options."""
    return [
        python,
        "-m",
        "uvicorn",
        "inferia.asgi:application",
        "--host",
        host,
        "--port",
        str(port),
        *UVICORN_OPTIONS,
        *extra,
    ]
