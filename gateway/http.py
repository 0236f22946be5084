"""The gateway's upstream HTTP client: one small interface over one pooled session per loop.

``post(url, headers, body)`` returns an :class:`UpstreamResponse` whose body is
read whole (``read``) or line by line (``lines``, for server-sent events).
Faults come out as :class:`UpstreamUnreachable` (refused, reset, broken
answer) or :class:`UpstreamTimeout` (connect or read timeout), nothing else.

Transport: aiohttp, chosen by the benchmark (README.md, Benchmark): on one core it
carried several times the requests of httpx's default transport. The session
follows no redirects (the provider secret never travels to another host),
keeps no cookies (one session serves every org, so an upstream's Set-Cookie
must never ride along on another org's call) and ignores proxy variables of
the environment (nothing outside the provider account steers the call).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator

import aiohttp
from django.conf import settings


class UpstreamUnreachable(Exception):
    pass


class UpstreamTimeout(Exception):
    pass


def _fault(exc: BaseException) -> Exception:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeout("timed out")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnreachable("could not connect")
    if isinstance(
        exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientOSError
    ):
        return UpstreamUnreachable("connection dropped")
    return UpstreamUnreachable("bad answer")


class UpstreamResponse:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _fault(exc) from exc
        finally:
            self._response.release()

    async def lines(self) -> AsyncIterator[str]:
        """The body as text lines (without line ends), as they arrive."""
        pending = b""
        try:
            async for chunk in self._response.content.iter_any():
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.rstrip(b"\r").decode("utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _fault(exc) from exc
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", errors="replace")

    def close(self) -> None:
        """Drop the connection (an unfinished answer must not return to the pool)."""
        self._response.close()


_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    existing = _SESSIONS.get(loop)
    if existing is None or existing.closed:
        existing = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0, ttl_dns_cache=60),
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=settings.INFERIA_GATEWAY_CONNECT_TIMEOUT,
                sock_read=settings.INFERIA_GATEWAY_READ_TIMEOUT,
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=True,
        )
        _SESSIONS[loop] = existing
    return existing


async def post(url: str, headers: dict[str, str], body: bytes) -> UpstreamResponse:
    try:
        response = await session().post(url, data=body, headers=headers, allow_redirects=False)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise _fault(exc) from exc
    return UpstreamResponse(response)


async def close_all() -> None:
    for existing in list(_SESSIONS.values()):
        await existing.close()
    _SESSIONS.clear()
