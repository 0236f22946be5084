"""nginx as the benchmark's compiled mock upstream: the OpenAI chat shape from static config.

The Python fake upstream (``gateway.fake_upstream``) shares core 1 with the load
generator and caps what a benchmark can show (about 940 requests/s in wrk's
company). nginx answers the same two bodies from its config at a small fraction
of the CPU, so the gateway, not the upstream, is what a saturation run measures.

The bodies are not written twice: they are what ``gateway.fake_upstream`` itself
answers the benchmark's request (plain, and streamed with ``include_usage``),
captured once by driving its ASGI app in-process. nginx cannot read a request
body in static config, so the streamed answer lives under its own prefix
(``/stream/v1/chat/completions``); ``bench/setup_bench.py`` gives it a provider
account of its own (the fake upstream routes on the path's end and answers both).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STREAM_PREFIX = "/stream"


def _captured(body: dict[str, Any]) -> tuple[bytes, bytes]:
    """(content type, body) of the fake upstream's answer to ``body``."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from gateway import fake_upstream

    fake_upstream.RECORD = False
    raw = json.dumps(body).encode()
    sent: list[dict[str, Any]] = []
    received = iter([{"type": "http.request", "body": raw, "more_body": False}])

    async def receive() -> dict[str, Any]:
        for message in received:
            return message
        await asyncio.Event().wait()  # the client stays: the stream runs to its end
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"content-type", b"application/json")],
    }
    asyncio.run(fake_upstream.app(scope, receive, send))
    headers = dict(sent[0]["headers"])
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    return headers[b"content-type"], payload


def answers(request_body: dict[str, Any]) -> tuple[bytes, bytes]:
    """The plain JSON answer and the streamed (SSE) answer to the benchmark's request."""
    _type, plain = _captured({**request_body, "stream": False})
    _type, streamed = _captured(
        {**request_body, "stream": True, "stream_options": {"include_usage": True}}
    )
    return plain, streamed


def _quoted(data: bytes) -> str:
    """An nginx quoted string (newlines stay literal: nginx takes multi-line strings)."""
    return "'" + data.decode().replace("\\", "\\\\").replace("'", "\\'") + "'"


def config(port: int, work: Path, request_body: dict[str, Any]) -> str:
    plain, streamed = answers(request_body)
    temp = work / "nginx-temp"
    temp.mkdir(parents=True, exist_ok=True)
    temps = "\n".join(
        f"    {name}_temp_path {temp / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {work / "nginx.pid"};
error_log {work / "nginx-error.log"} warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
{temps}
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 {_quoted(plain)};
        }}
        location = {STREAM_PREFIX}/v1/chat/completions {{
            default_type text/event-stream;
            add_header Cache-Control no-cache;
            return 200 {_quoted(streamed)};
        }}
        location / {{
            return 200 'nginx mock upstream\\n';
        }}
    }}
}}
"""


def binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
