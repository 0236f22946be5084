"""The gateway's upstream HTTP client: HTTP/1.1 on asyncio protocols, pooled per event loop.

``post(url, headers, body)`` returns an :class:`UpstreamResponse` whose body is
read whole (``read``) or line by line (``lines``, for server-sent events).
Faults come out as :class:`UpstreamUnreachable` (refused, reset, broken
answer, an answer or a line over ``INFERIA_GATEWAY_MAX_UPSTREAM_BYTES``) or
:class:`UpstreamTimeout` (connect timeout, or no byte from the upstream for
``INFERIA_GATEWAY_READ_TIMEOUT`` seconds), nothing else.

Transport: a purpose-built client, as the Redis client is (``inferia/store/client.py``):
an ``asyncio.Protocol`` per connection, the response parsed by ``httptools`` (llhttp,
the parser uvicorn uses for the requests), one ``write`` per request. It replaced
aiohttp, whose request and response objects, header multidicts and timers were about a
quarter of the gateway's CPU per request (``bench/PROFILE.md``; the README's Benchmark
compares the two side by side). It does only what the gateway needs, on purpose:

- POST with a body of known length (and GET, for deployment health checks); no
  redirects (the provider secret never travels to another host), no cookies (one pool
  serves every org, so an upstream's Set-Cookie can never ride along on another org's
  call), no proxy variables from the environment (nothing outside the provider account
  steers the call), no ``Expect``, no pipelining.
- HTTPS with the system's trust store and hostname checking (``ssl.create_default_context``).
- Keep-alive: a connection returns to its pool only after a complete answer that did
  not ask to close; an idle connection older than ``IDLE_SECONDS`` is closed rather than
  reused (upstreams close theirs after 60 s or more), and one the upstream closed is
  never handed out.
- Header values with CR, LF or NUL are refused before anything is sent (a provider
  secret cannot inject a header). ``Accept-Encoding`` is not sent; a gzip or deflate
  answer is still decoded, under the same size cap as the decoded bytes.

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
import collections
import functools
import ipaddress
import socket
import ssl
import weakref
import zlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httptools
from django.conf import settings

from inferia.errors import ValidationError
from keys import ssrf


class UpstreamUnreachable(Exception):
    pass


class UpstreamTimeout(Exception):
    pass


class UpstreamRefused(UpstreamUnreachable):
    """The SSRF guard refused the address the connection would use."""


# Addresses each (host, port) was resolved to for a connection that may sit in the pool.
_CONNECTED: dict[tuple[str, int], frozenset[str]] = {}
IDLE_SECONDS = 15.0  # a pooled connection idle longer is closed, not reused
MAX_IDLE_PER_HOST = 256
MAX_CONNECTIONS = 1000  # per event loop; more requests at once wait for a connection
_PAUSE_AT = 1 << 20  # buffered answer bytes at which reading pauses (a slow consumer)
# Set by the client itself, whatever an adapter passes.
_OWN_HEADERS = frozenset(("host", "content-length", "transfer-encoding", "connection"))


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


@functools.lru_cache(maxsize=1024)
def _parsed(url: str) -> tuple[str, str, int, bytes, bytes, frozenset[str] | None]:
    """Scheme, host, port, request target, ``Host`` header and the host as an address
    when it is an IP literal (``None``: a name). Parsed once per URL: a provider's URLs
    are few."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamRefused("not an http(s) URL")
    host, port = ssrf.host_and_port(url)
    try:
        ipaddress.ip_address(host)
        literal: frozenset[str] | None = frozenset((host,))
    except ValueError:
        literal = None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    shown = f"[{host}]" if ":" in host else host
    if parts.port is not None and parts.port != (443 if scheme == "https" else 80):
        shown = f"{shown}:{port}"
    try:
        host_header = shown.encode("ascii")
    except UnicodeEncodeError:
        host_header = shown.encode("idna")
    return scheme, host, port, target.encode("ascii"), host_header, literal


def _check_request(url: str, allowed: tuple[str, ...]):
    """The rule for this request's host: an IP literal directly, a name on the
    addresses a pooled connection to it may have (new connections: ``_connect``).
    Returns the parsed URL."""
    parsed = _parsed(url)
    _scheme, host, port, _target, _shown, literal = parsed
    addresses = literal if literal is not None else _CONNECTED.get((host, port), frozenset())
    try:
        ssrf.check_addresses(host, port, addresses, allowed)
    except ValidationError as exc:
        raise UpstreamRefused("address not allowed") from exc
    return parsed


class UpstreamResponse:
    """One answer, fed by its connection as bytes arrive."""

    def __init__(self, connection: _Connection | None = None) -> None:
        self._connection = connection
        self.status = 0
        self.headers: dict[str, str] = {}
        # Complete lines already received and not yet yielded by ``lines()``: while
        # there are some, the next event is ready without waiting for the network.
        self.buffered_lines = 0
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._done = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future | None = None
        self._decoder: Any = None  # zlib decompressobj of a gzip or deflate answer
        # Called once, the first time the reader has to wait for the network (a streamed
        # relay starts watching for its client's hang-up only then).
        self.on_wait: Any = None

    # --- fed by the connection (or by a test) ---

    def feed(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data, settings.INFERIA_GATEWAY_MAX_UPSTREAM_BYTES)
            except zlib.error:
                self.fail(UpstreamUnreachable("connection dropped"))
                return
            if self._decoder.unconsumed_tail:
                self.fail(UpstreamUnreachable("answer too large"))
                return
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered > _PAUSE_AT and self._connection is not None:
                self._connection.pause()
            self._wake()

    def finish(self) -> None:
        self._done = True
        self._wake()

    def fail(self, error: Exception) -> None:
        """The answer is broken (or refused): its connection will not be reused."""
        if self._error is None:
            self._error = error
            self._wake()

    @property
    def ready(self) -> bool:
        """Reading on does not wait for the network: a piece is buffered, or the answer
        is complete (or broken)."""
        return bool(self._chunks) or self._done or self._error is not None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next(self) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return None
            if self.on_wait is not None:
                on_wait, self.on_wait = self.on_wait, None
                on_wait()
                continue  # it may have ended the answer
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._connection is not None and self._buffered < _PAUSE_AT // 2:
            self._connection.resume()
        return chunk

    # --- read by the gateway ---

    async def read(self) -> bytes:
        """The whole body; over the size limit, the connection is dropped unread."""
        limit = settings.INFERIA_GATEWAY_MAX_UPSTREAM_BYTES
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            self.fail(UpstreamUnreachable("answer too large"))
            self.close()
            raise UpstreamUnreachable("answer too large")
        if self._done and len(self._chunks) == 1 and self._buffered <= limit:
            # The usual case: the whole answer came in one piece.
            body = self._chunks.popleft()
            self._buffered = 0
            self.close()
            return body
        body = bytearray()
        try:
            while (chunk := await self._next()) is not None:
                body += chunk
                if len(body) > limit:
                    self.fail(UpstreamUnreachable("answer too large"))
                    raise UpstreamUnreachable("answer too large")
        finally:
            self.close()
        return bytes(body)

    async def lines(self) -> AsyncIterator[str]:
        """The body as text lines (without line ends), as they arrive."""
        pending = b""
        while (chunk := await self._next()) is not None:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            if len(pending) > settings.INFERIA_GATEWAY_MAX_UPSTREAM_BYTES:
                self.fail(UpstreamUnreachable("line too long"))
                raise UpstreamUnreachable("line too long")
            self.buffered_lines = len(complete)
            for line in complete:
                self.buffered_lines -= 1
                yield line.rstrip(b"\r").decode("utf-8", errors="replace")
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", errors="replace")

    def close(self) -> None:
        """Done with the answer: its connection goes back to the pool when the answer
        was complete, else it is dropped (an unfinished answer must not be reused)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.finished(self)


class _Connection(asyncio.Protocol):
    """One upstream connection: writes a request, parses its answer into a response."""

    def __init__(self, pool: _Pool, key: tuple[str, str, int]) -> None:
        self.pool, self.key = pool, key
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        self.headers_ready: asyncio.Future | None = None
        self.complete = False  # the current answer was parsed to its end
        self.keep_alive = False  # ... and allows the connection to be reused
        self.closed = False
        self.paused = False
        self.last_io = 0.0
        self.idle_since = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ---

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_io = self.loop.time()
        if self.response is None or self.complete:  # nothing asked: it must not talk
            self._drop()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._abort(UpstreamUnreachable("bad answer"))

    def eof_received(self) -> bool:
        # An answer without a length ends with the connection; any other is cut short.
        if self.response is not None and not self.complete and self.headers_ready is not None:
            if self.headers_ready.done() and not self._has_length():
                self.on_message_complete()
                self.keep_alive = False  # it ended with the connection
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self.response is not None and not self.complete:
            self._abort(UpstreamUnreachable("connection dropped"))
        self.pool.forget(self)

    # --- httptools callbacks ---

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is None:
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self.response.headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None or self.headers_ready is None:
            return
        response.status = self.parser.get_status_code()
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            response._decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib
        elif encoding not in ("identity", ""):
            self._abort(UpstreamUnreachable("unsupported content encoding"))
            return
        if not self.headers_ready.done():
            self.headers_ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response.feed(body)

    def on_message_complete(self) -> None:
        self.complete = True
        # Read now: once this callback returns the parser is reset for the next answer.
        self.keep_alive = self.parser.should_keep_alive()
        self._cancel_timer()
        if self.response is not None:
            self.response.finish()

    # --- the gateway's side ---

    def send(self, head: bytes, body: bytes, response: UpstreamResponse) -> asyncio.Future:
        transport = self.transport
        if transport is None:
            raise UpstreamUnreachable("connection dropped")
        self.response, self.complete = response, False
        self.headers_ready = self.loop.create_future()
        self.last_io = self.loop.time()
        if len(body) < 65536:
            transport.write(head + body)
        else:
            transport.writelines((head, body))
        self._arm_timer()
        return self.headers_ready

    def finished(self, response: UpstreamResponse) -> None:
        """The response's reader is done with it: reuse or drop the connection."""
        if response is not self.response:
            return
        self.response = None
        if (
            self.complete
            and not self.closed
            and self.keep_alive
            and not response._chunks
            and response._error is None
        ):
            self.resume()
            self.pool.release(self)
        else:
            self._drop()

    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def usable(self, now: float) -> bool:
        return (
            not self.closed
            and self.transport is not None
            and not self.transport.is_closing()
            and now - self.idle_since < IDLE_SECONDS
        )

    # --- internals ---

    def _has_length(self) -> bool:
        headers = self.response.headers if self.response is not None else {}
        return "content-length" in headers or "chunked" in headers.get("transfer-encoding", "")

    def _arm_timer(self) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_at(
            self.last_io + settings.INFERIA_GATEWAY_READ_TIMEOUT, self._check_timeout
        )

    def _check_timeout(self) -> None:
        self._timer = None
        if self.response is None or self.complete:
            return
        if self.paused:  # our reader is behind, not the upstream: wait for it
            self.last_io = self.loop.time()
        deadline = self.last_io + settings.INFERIA_GATEWAY_READ_TIMEOUT
        if self.loop.time() >= deadline:
            self._abort(UpstreamTimeout("timed out"))
        else:
            self._timer = self.loop.call_at(deadline, self._check_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _abort(self, error: Exception) -> None:
        if self.headers_ready is not None and not self.headers_ready.done():
            self.headers_ready.set_exception(error)
        if self.response is not None:
            self.response.fail(error)
        self._drop()

    def _drop(self) -> None:
        self._cancel_timer()
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self.pool.forget(self)


class _Pool:
    """The idle connections of one event loop, by (scheme, host, port)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self.open: set[_Connection] = set()
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)

    def take(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self.idle.get(key)
        now = self.loop.time()
        while idle:
            connection = idle.pop()
            if connection.usable(now):
                return connection
            connection._drop()
        return None

    def release(self, connection: _Connection) -> None:
        idle = self.idle.setdefault(connection.key, [])
        if len(idle) >= MAX_IDLE_PER_HOST:
            connection._drop()
            return
        connection.idle_since = self.loop.time()
        idle.append(connection)

    def forget(self, connection: _Connection) -> None:
        if connection in self.open:
            self.open.discard(connection)
            self.slots.release()
        idle = self.idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    async def connect(
        self, scheme: str, host: str, port: int, literal, allowed: tuple[str, ...]
    ) -> _Connection:
        """A new connection, to an address the SSRF rule allows (resolved here, pinned)."""
        if literal is not None:
            addresses = [host]
        else:
            try:
                infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise UpstreamUnreachable("could not connect") from exc
            addresses = list(dict.fromkeys(info[4][0] for info in infos))
        try:
            ssrf.check_addresses(host, port, frozenset(addresses), allowed)
        except ValidationError as exc:
            raise UpstreamRefused("address not allowed") from exc
        key_host = host.lower().rstrip(".")
        _CONNECTED[(key_host, port)] = _CONNECTED.get((key_host, port), frozenset()) | frozenset(
            addresses
        )
        await self.slots.acquire()
        try:
            return await self._open(scheme, host, port, addresses)
        except BaseException:
            self.slots.release()
            raise

    async def _open(self, scheme: str, host: str, port: int, addresses: list[str]) -> _Connection:
        key = (scheme, host, port)
        tls = _tls() if scheme == "https" else None
        last: Exception = UpstreamUnreachable("could not connect")
        for address in addresses:
            try:
                async with asyncio.timeout(settings.INFERIA_GATEWAY_CONNECT_TIMEOUT):
                    _transport, connection = await self.loop.create_connection(
                        lambda: _Connection(self, key),
                        address,
                        port,
                        ssl=tls,
                        server_hostname=host if tls else None,
                    )
            except TimeoutError:
                last = UpstreamTimeout("timed out")
            except (OSError, ssl.SSLError):
                last = UpstreamUnreachable("could not connect")
            else:
                self.open.add(connection)
                return connection
        raise last


_POOLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _pool() -> _Pool:
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = _Pool(loop)
    return pool


def _head(
    target: bytes, host: bytes, headers: dict[str, str], length: int, method: bytes = b"POST"
) -> bytes:
    lines = [method, b" ", target, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
    for name, value in headers.items():
        if (
            "\r" in value
            or "\n" in value
            or "\0" in value
            or not name.isascii()
            or not name.replace("-", "").isalnum()
        ):
            raise UpstreamUnreachable("invalid request header")
        if name.lower() in _OWN_HEADERS:
            continue
        try:
            lines += (name.encode(), b": ", value.encode("latin-1"), b"\r\n")
        except UnicodeEncodeError as exc:
            raise UpstreamUnreachable("invalid request header") from exc
    lines += (b"Content-Length: ", str(length).encode(), b"\r\n\r\n")
    return b"".join(lines)


async def post(
    url: str, headers: dict[str, str], body: bytes, *, allowed_private_hosts=()
) -> UpstreamResponse:
    """POST to the upstream; ``allowed_private_hosts`` is the org's list (SSRF guard).
    Returns once the answer's status and headers are in."""
    return await _request(b"POST", url, headers, body, allowed_private_hosts)


async def get(url: str, headers: dict[str, str], *, allowed_private_hosts=()) -> UpstreamResponse:
    """GET from the upstream (a health check's ``/models``), under the same rules as
    :func:`post`: the SSRF guard, no redirects, no cookies."""
    return await _request(b"GET", url, headers, b"", allowed_private_hosts)


async def _request(
    method: bytes, url: str, headers: dict[str, str], body: bytes, allowed_private_hosts
) -> UpstreamResponse:
    allowed = tuple(allowed_private_hosts or ())
    scheme, host, port, target, shown, literal = _check_request(url, allowed)
    head = _head(target, shown, headers, len(body), method)
    pool = _pool()
    connection = pool.take((scheme, host, port))
    if connection is None:
        connection = await pool.connect(scheme, host, port, literal, allowed)
    response = UpstreamResponse(connection)
    try:
        await connection.send(head, body, response)
    except BaseException:
        response.close()  # a cancelled or failed call drops its connection
        raise
    return response


async def close_all() -> None:
    for pool in list(_POOLS.values()):
        for connection in list(pool.open):
            connection._drop()
    _POOLS.clear()


async def close_current() -> None:
    """Close this loop's connections (a short-lived loop, e.g. the dashboard's
    connection test, must not leave open connections behind)."""
    pool = _POOLS.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        for connection in list(pool.open):
            connection._drop()
