"""The gateway's Redis client on the event loop: one pipelined connection per loop.

The hot path makes two Redis round trips per request (the limit script, then the
usage append with the settlement). redis-py's asyncio client spent more CPU per
command than the whole rest of a request (see README.md, Benchmark), and a thread hop
per command was worse, so the gateway speaks RESP itself over one asyncio
connection per event loop: commands are written as they come and replies,
which Redis sends in order, resolve a FIFO of futures. Replies are parsed by
``hiredis`` (redis-py's own C parser). Any connection fault fails every pending
command with :class:`RedisUnavailable`, and the next command reconnects.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import weakref
from collections import deque
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import hiredis


class RedisUnavailable(Exception):
    """Redis could not answer (refused, reset, timed out) or answered an error."""


def _encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int | float):
            data = str(arg).encode()
        else:
            raise TypeError(f"cannot send {type(arg).__name__} to Redis")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.pending: deque[asyncio.Future] = deque()
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError:
                self.fail(RedisUnavailable("protocol error"))
                return
            if reply is False:
                return
            if not self.pending:  # a reply nobody waits for: the stream is out of step
                self.fail(RedisUnavailable("unexpected reply"))
                return
            future = self.pending.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc) -> None:
        self.fail(RedisUnavailable("connection lost"))

    def fail(self, error: Exception) -> None:
        self.closed = True
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


class Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(
            source.encode(), usedforsecurity=False
        ).hexdigest()  # Redis names scripts by SHA-1


class AsyncRedis:
    """Commands and pipelines on one connection of the running loop."""

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        self.url = urlparse(url)
        self.timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        url = self.url
        if url.scheme == "unix":
            _transport, protocol = await loop.create_unix_connection(_Protocol, url.path)
        else:
            context = ssl.create_default_context() if url.scheme == "rediss" else None
            _transport, protocol = await loop.create_connection(
                _Protocol, url.hostname or "127.0.0.1", url.port or 6379, ssl=context
            )
        setup = []
        if url.password:
            user = unquote(url.username) if url.username else None
            setup.append(
                ("AUTH", user, unquote(url.password)) if user else ("AUTH", unquote(url.password))
            )
        db = (
            url.path.lstrip("/")
            if url.scheme != "unix"
            else (parse_qs(url.query).get("db") or ["0"])[0]
        )
        if db and db != "0":
            setup.append(("SELECT", db))
        if setup:
            for reply in await self._send(protocol, setup):
                if isinstance(reply, hiredis.ReplyError):
                    protocol.fail(RedisUnavailable("setup refused"))
                    raise RedisUnavailable(f"Redis refused the connection setup: {reply}")
        return protocol

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _open(self) -> _Protocol:
        try:
            protocol = await asyncio.wait_for(self._connect(), self.timeout)
        except (OSError, TimeoutError) as exc:
            raise RedisUnavailable(f"cannot connect to Redis ({type(exc).__name__})") from None
        self._protocol = protocol
        return protocol

    async def _send(self, protocol: _Protocol, commands: list[tuple]) -> list[Any]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        transport = protocol.transport
        if transport is None:  # connection_made() runs before _connect() returns
            raise RedisUnavailable("not connected")
        protocol.pending.extend(futures)
        transport.write(b"".join(_encode(command) for command in commands))
        # One timer for the batch: a late reply would leave the stream out of step,
        # so a timeout drops the connection (and fails every pending command).
        timer = loop.call_later(self.timeout, protocol.fail, RedisUnavailable("Redis timed out"))
        try:
            return [await future for future in futures]
        finally:
            timer.cancel()

    async def pipeline(self, commands: list[tuple]) -> list[Any]:
        """Send the commands in one write; their replies, errors as ``hiredis.ReplyError``."""
        protocol = await self._connection()
        return await self._send(protocol, commands)

    async def execute(self, *command: Any) -> Any:
        (reply,) = await self.pipeline([command])
        if isinstance(reply, hiredis.ReplyError):
            raise RedisUnavailable(f"Redis error: {str(reply)[:100]}")
        return reply

    async def run_script(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        command = (len(keys), *keys, *args)
        (reply,) = await self.pipeline([("EVALSHA", script.sha, *command)])
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            (reply,) = await self.pipeline([("EVAL", script.source, *command)])
        if isinstance(reply, hiredis.ReplyError):
            raise RedisUnavailable(f"Redis error: {str(reply)[:100]}")
        return reply

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.fail(RedisUnavailable("closed"))
            self._protocol = None


_CLIENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def client() -> AsyncRedis:
    """The running loop's client for ``settings.REDIS_URL``."""
    from django.conf import settings

    loop = asyncio.get_running_loop()
    existing = _CLIENTS.get(loop)
    if existing is None or existing.url.geturl() != settings.REDIS_URL:
        if existing is not None:
            existing.close()
        existing = AsyncRedis(settings.REDIS_URL, timeout=settings.INFERIA_GATEWAY_REDIS_TIMEOUT)
        _CLIENTS[loop] = existing
    return existing
