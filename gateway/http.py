"""The gateway's upstream HTTP client: one small interface over one pooled session per loop.

``post(url, headers, body)`` returns an :class:`UpstreamResponse` whose body is
read whole (``read``) or line by line (``lines``, for server-sent events).
Faults come out as :class:`UpstreamUnreachable` (refused, reset, broken
answer, an answer or a line over ``INFERIA_GATEWAY_MAX_UPSTREAM_BYTES``) or
:class:`UpstreamTimeout` (connect or read timeout), nothing else.

Transport: aiohttp, chosen by the benchmark (README.md, Benchmark): on one core it
carried several times the requests of httpx's default transport. The session
follows no redirects (the provider secret never travels to another host),
keeps no cookies (one session serves every org, so an upstream's Set-Cookie
must never ride along on another org's call) and ignores proxy variables of
the environment (nothing outside the provider account steers the call).

The SSRF guard (``keys/ssrf.py``'s one rule) runs here too, with the org's
``allowed_private_hosts`` of the request: each new connection resolves the
host itself (no shared DNS cache), checks every address and connects only to
those (pinned: DNS rebinding after validation is refused); each request also
checks the addresses its host was last connected to, so a reused pooled
connection is refused as soon as the org's list or the operator's cap no longer
allows it. An IP-literal host costs one cached classification per request.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import ipaddress
import weakref
from collections.abc import AsyncIterator

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver
from django.conf import settings

from inferia.errors import ValidationError
from keys import ssrf


class UpstreamUnreachable(Exception):
    pass


class UpstreamTimeout(Exception):
    pass


class UpstreamRefused(UpstreamUnreachable):
    """The SSRF guard refused the address the connection would use."""


# The org's allowed_private_hosts for the request being connected (None: no request).
_ALLOWED: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "upstream_allowed_private_hosts", default=None
)
# Addresses each (host, port) was resolved to for a connection that may sit in the pool.
_CONNECTED: dict[tuple[str, int], frozenset[str]] = {}


class GuardedResolver(AbstractResolver):
    """Resolves, then applies the SSRF rule to every address (refusing the connection)."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family=0):
        allowed = _ALLOWED.get()
        if allowed is None:
            raise UpstreamRefused("no SSRF policy for this connection")
        infos = await self._inner.resolve(host, port, family)
        addresses = frozenset(info["host"] for info in infos)
        try:
            ssrf.check_addresses(host, port, addresses, allowed)
        except ValidationError as exc:
            raise UpstreamRefused("address not allowed") from exc
        key = (host.lower().rstrip("."), port)
        _CONNECTED[key] = _CONNECTED.get(key, frozenset()) | addresses
        return infos

    async def close(self) -> None:
        await self._inner.close()


def _fault(exc: BaseException) -> Exception:
    if isinstance(exc, UpstreamRefused):
        return exc
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
        # Complete lines already received and not yet yielded by ``lines()``: while
        # there are some, the next event is ready without waiting for the network.
        self.buffered_lines = 0

    async def read(self) -> bytes:
        """The whole body; over the size limit, the connection is dropped unread."""
        limit = settings.INFERIA_GATEWAY_MAX_UPSTREAM_BYTES
        body = bytearray()
        try:
            if (self._response.content_length or 0) > limit:
                self._response.close()
                raise UpstreamUnreachable("answer too large")
            async for chunk in self._response.content.iter_any():
                body += chunk
                if len(body) > limit:
                    self._response.close()
                    raise UpstreamUnreachable("answer too large")
            return bytes(body)
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
                if len(pending) > settings.INFERIA_GATEWAY_MAX_UPSTREAM_BYTES:
                    raise UpstreamUnreachable("line too long")
                self.buffered_lines = len(complete)
                for line in complete:
                    self.buffered_lines -= 1
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
            # No shared DNS cache: every new connection resolves and is checked itself.
            connector=aiohttp.TCPConnector(
                limit=1000, limit_per_host=0, use_dns_cache=False, resolver=GuardedResolver()
            ),
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


@functools.lru_cache(maxsize=1024)
def _parsed(url: str) -> tuple[yarl.URL, str, int, frozenset[str] | None]:
    """The URL for aiohttp, its host and port, and the host as an address when it is an
    IP literal (``None``: a name). Parsed once per URL: a provider's URLs are few."""
    host, port = ssrf.host_and_port(url)
    try:
        ipaddress.ip_address(host)
        literal: frozenset[str] | None = frozenset((host,))
    except ValueError:
        literal = None
    return yarl.URL(url), host, port, literal


def _check_request(url: str, allowed: tuple[str, ...]) -> yarl.URL:
    """The rule for this request's host: an IP literal directly, a name on the
    addresses a pooled connection to it may have (new connections: the resolver).
    Returns the parsed URL to request."""
    parsed, host, port, literal = _parsed(url)
    addresses = literal if literal is not None else _CONNECTED.get((host, port), frozenset())
    try:
        ssrf.check_addresses(host, port, addresses, allowed)
    except ValidationError as exc:
        raise UpstreamRefused("address not allowed") from exc
    return parsed


async def post(
    url: str, headers: dict[str, str], body: bytes, *, allowed_private_hosts=()
) -> UpstreamResponse:
    """POST to the upstream; ``allowed_private_hosts`` is the org's list (SSRF guard)."""
    allowed = tuple(allowed_private_hosts or ())
    parsed = _check_request(url, allowed)
    token = _ALLOWED.set(allowed)
    try:
        response = await session().post(parsed, data=body, headers=headers, allow_redirects=False)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise _fault(exc) from exc
    finally:
        _ALLOWED.reset(token)
    return UpstreamResponse(response)


async def close_all() -> None:
    for existing in list(_SESSIONS.values()):
        await existing.close()
    _SESSIONS.clear()


async def close_current() -> None:
    """Close this loop's session (a short-lived loop, e.g. the dashboard's connection
    test, must not leave an open session behind)."""
    existing = _SESSIONS.pop(asyncio.get_running_loop(), None)
    if existing is not None:
        await existing.close()
