"""CORS on the gateway's plain ASGI app: the API's policy (``inferia.cors.cors_headers``).

``with_cors`` wraps the gateway application:

- ``OPTIONS`` on a gateway route is answered here, 204 with ``Allow``: with the
  preflight headers when the origin is allowed, without any ``Access-Control-*``
  header otherwise (the browser then refuses the cross-origin call). No
  credential is read and nothing is recorded: the answer is the same for everyone.
- Every other response (JSON, streamed events, errors) gets ``Vary: Origin`` and,
  for an allowed origin, the same headers Django's API sends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from inferia.cors import cors_headers
from inferia.request_meta import request_id_from

# An ASGI application ``(scope, receive, send)``; the wrapper keeps its signature.
ASGIApp = TypeVar("ASGIApp", bound=Callable[..., Awaitable[None]])


def _header(scope: dict, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == wanted:
            return value.decode("latin-1")
    return None


def _encoded(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode("latin-1")) for name, value in headers]


def with_cors(app: ASGIApp, *, allow_for: Callable[[str], str | None]) -> ASGIApp:
    """``app`` behind the CORS policy; ``allow_for(path)`` names the method a gateway
    path takes (``None``: no such route, the app answers 404)."""

    async def application(scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        if scope["method"] == "OPTIONS":
            method = allow_for(scope["path"])
            if method is not None:
                request_id = request_id_from(_header(scope, b"x-request-id"))
                headers = [
                    ("Allow", f"{method}, OPTIONS"),
                    ("Vary", "Origin"),
                    ("X-Request-ID", request_id),
                    ("Content-Length", "0"),
                    *cors_headers(origin, preflight=True),
                ]
                await send(
                    {"type": "http.response.start", "status": 204, "headers": _encoded(headers)}
                )
                await send({"type": "http.response.body", "body": b""})
                return
        extra = _encoded([("Vary", "Origin"), *cors_headers(origin, preflight=False)])

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await app(scope, receive, send_with_cors)

    return cast(ASGIApp, application)
