"""Inferia's one Redis client: RESP over asyncio, one pipelined connection per node.

The gateway makes two Redis round trips per request (the limit script, then the
usage append with the settlements). redis-py's asyncio client spends three to
four times the CPU per round trip (``bench/redis_clients.py``, README "Redis
client"), so Inferia speaks RESP itself: commands are written as they come and
replies, which Redis sends in order, resolve a FIFO of futures, parsed by
``hiredis`` (redis-py's own C parser). Any connection fault fails every pending
command with :class:`RedisUnavailable`, and the next command reconnects.

URL forms (``REDIS_URL``):

- ``redis://[[user]:password@]host[:port][/db]``; ``rediss://`` for TLS, with
  ``?ssl_ca_certs=``, ``ssl_certfile=``, ``ssl_keyfile=``, ``ssl_cert_reqs=none``;
- ``unix://[[user]:password@]/path/to/socket[?db=N]``;
- ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``
  (``rediss+sentinel://`` for TLS; ``?sentinel_password=`` when the sentinels
  ask for one): the master is asked of the sentinels, checked with ``ROLE``, and
  asked again after a connection failure or a ``READONLY`` reply (a failover);
- ``redis+cluster://[[user]:password@]host:port[,host:port...]``
  (``rediss+cluster://``): slots from ``CLUSTER SLOTS``, keys routed by CRC16 of
  their hash tag, ``MOVED`` (map refreshed) and ``ASK`` followed, a pipeline
  split per node and its replies put back in order.

Each event loop has its own client (:func:`inferia.store.redis_store.client`); sync code uses the
process's background loop (:mod:`inferia.store.sync`).
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import logging
import random
import ssl
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import hiredis

logger = logging.getLogger(__name__)


class RedisUnavailable(Exception):
    """Redis could not answer (refused, reset, timed out) or answered an error."""


class Script:
    def __init__(self, source: str) -> None:
        self.source = source
        # Redis names scripts by SHA-1.
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


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


# --- configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What every connection of a client shares: credentials, TLS, db, timeout."""

    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    verify: bool = True
    timeout: float = 1.0

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_certs)
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclass(frozen=True)
class Config:
    kind: str  # "direct", "unix", "sentinel" or "cluster"
    options: Options
    hosts: tuple[tuple[str, int], ...] = ()
    path: str = ""  # unix socket
    service: str = ""  # sentinel master name
    sentinel_options: Options = field(default_factory=Options)


def _hosts(text: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):  # [ipv6]:port
            host, _, rest = part[1:].partition("]")
            port = int(rest.lstrip(":") or default_port)
        else:
            host, _, port_text = part.rpartition(":") if ":" in part else (part, "", "")
            port = int(port_text or default_port)
        hosts.append((host or "127.0.0.1", port))
    if not hosts:
        raise ValueError("no Redis host in the URL")
    return tuple(hosts)


def parse_url(url: str, *, timeout: float = 1.0) -> Config:
    """The URL forms of the module docstring; a ValueError names what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("REDIS_URL has no scheme (redis://, rediss://, unix://, ...)")
    scheme = scheme.lower()
    rest, _, query_text = rest.partition("?")
    query = {k: v[-1] for k, v in parse_qs(query_text).items()}
    userinfo, at, location = rest.rpartition("@")
    if not at:
        userinfo, location = "", rest
    username = password = None
    if userinfo:
        user_text, colon, password_text = userinfo.partition(":")
        username = unquote(user_text) or None
        password = unquote(password_text) if colon else None
        if not colon:  # redis://secret@host: the password alone
            username, password = None, unquote(user_text)
    tls = scheme.startswith("rediss")
    cert_reqs = query.get("ssl_cert_reqs", "required").lower()

    def options(db: int, user: str | None, secret: str | None) -> Options:
        return Options(
            username=user,
            password=secret,
            db=db,
            tls=tls,
            ca_certs=query.get("ssl_ca_certs"),
            certfile=query.get("ssl_certfile"),
            keyfile=query.get("ssl_keyfile"),
            verify=cert_reqs not in ("none", "optional"),
            timeout=float(query.get("timeout", timeout)),
        )

    if scheme == "unix":
        path = location
        return Config("unix", options(int(query.get("db", 0)), username, password), path=path)
    hosts_text, _, path = location.partition("/")
    segments = [s for s in path.split("/") if s]
    if scheme in ("redis", "rediss"):
        db = int(segments[0]) if segments else int(query.get("db", 0))
        return Config("direct", options(db, username, password), hosts=_hosts(hosts_text, 6379)[:1])
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        if not segments:
            raise ValueError(
                "a Sentinel URL names its service: redis+sentinel://h:p/<service>/<db>"
            )
        db = int(segments[1]) if len(segments) > 1 else 0
        sentinel_secret = query.get("sentinel_password")
        return Config(
            "sentinel",
            options(db, username, password),
            hosts=_hosts(hosts_text, 26379),
            service=segments[0],
            sentinel_options=options(0, query.get("sentinel_username"), sentinel_secret),
        )
    if scheme in ("redis+cluster", "rediss+cluster"):
        if segments and segments[0] != "0":
            raise ValueError("a Redis Cluster has only database 0")
        return Config("cluster", options(0, username, password), hosts=_hosts(hosts_text, 6379))
    raise ValueError(f"unsupported Redis URL scheme {scheme!r}")


# --- one connection -----------------------------------------------------------------


class Connection:
    """Commands and pipelines on one connection to one Redis server (reconnecting)."""

    def __init__(
        self, options: Options, host: str = "", port: int = 0, path: str = "", setup: bool = True
    ) -> None:
        self.options = options
        self.host, self.port, self.path = host, port, path
        self.setup = setup
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future | None = None

    @property
    def address(self) -> str:
        return self.path or f"{self.host}:{self.port}"

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self.options
        if self.path:
            _transport, protocol = await loop.create_unix_connection(_Protocol, self.path)
        else:
            context = options.ssl_context()
            _transport, protocol = await loop.create_connection(
                _Protocol,
                self.host,
                self.port,
                ssl=context,
                server_hostname=self.host if context else None,
            )
        commands: list[tuple] = []
        if options.password is not None:
            commands.append(
                ("AUTH", options.username, options.password)
                if options.username
                else ("AUTH", options.password)
            )
        if self.setup and options.db:
            commands.append(("SELECT", options.db))
        if commands:
            for reply in await self._send(protocol, commands):
                if isinstance(reply, hiredis.ReplyError):
                    protocol.fail(RedisUnavailable("setup refused"))
                    # The reply names the failure (WRONGPASS, ...), never the secret.
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
            protocol = await asyncio.wait_for(self._connect(), self.options.timeout)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise RedisUnavailable(
                f"cannot connect to Redis at {self.address} ({type(exc).__name__})"
            ) from None
        self._protocol = protocol
        return protocol

    async def _send(self, protocol: _Protocol, commands: list[tuple]) -> list[Any]:
        return await self._replies(*self._write(protocol, commands))

    def _write(
        self, protocol: _Protocol, commands: list[tuple]
    ) -> tuple[list[asyncio.Future], asyncio.TimerHandle]:
        """Write the commands now (one ``write``); the futures of their replies."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        transport = protocol.transport
        if transport is None:  # connection_made() runs before _connect() returns
            raise RedisUnavailable("not connected")
        protocol.pending.extend(futures)
        transport.write(b"".join(_encode(command) for command in commands))
        # One timer for the batch: a late reply would leave the stream out of step,
        # so a timeout drops the connection (and fails every pending command).
        timer = loop.call_later(
            self.options.timeout, protocol.fail, RedisUnavailable("Redis timed out")
        )
        return futures, timer

    @staticmethod
    async def _replies(futures: list[asyncio.Future], timer: asyncio.TimerHandle) -> list[Any]:
        try:
            return [await future for future in futures]
        finally:
            timer.cancel()

    def started(self, commands: list[tuple]) -> Awaitable[list[Any]] | None:
        """Write the commands before returning when the connection is open (an
        awaitable of their replies), else None: nothing was sent."""
        protocol = self._protocol
        if protocol is None or protocol.closed or protocol.transport is None:
            return None
        return self._replies(*self._write(protocol, commands))

    async def pipeline(self, commands: list[tuple]) -> list[Any]:
        """Send the commands in one write; their replies, errors as ``hiredis.ReplyError``.

        Raises :class:`ConnectFailed` (nothing was sent) or :class:`RedisUnavailable`."""
        try:
            protocol = await self._connection()
        except RedisUnavailable as exc:
            raise ConnectFailed(str(exc)) from None
        return await self._send(protocol, commands)

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.fail(RedisUnavailable("closed"))
            self._protocol = None


class ConnectFailed(RedisUnavailable):
    """No connection could be made: no command was sent (safe to retry elsewhere)."""


def _error(reply: Any) -> RedisUnavailable | None:
    if isinstance(reply, hiredis.ReplyError):
        return RedisUnavailable(f"Redis error: {str(reply)[:100]}")
    return None


# --- clients ------------------------------------------------------------------------


class Client(abc.ABC):
    """What the store uses: ``pipeline``, ``execute``, ``run_script``, ``masters``;
    one subclass per topology (``Direct``, ``Sentinel``, ``Cluster``)."""

    @abc.abstractmethod
    async def pipeline(self, commands: list[tuple]) -> list[Any]:
        """Send the commands; their replies in order, errors as ``hiredis.ReplyError``."""

    @abc.abstractmethod
    async def masters(self) -> list[Connection]:
        """A connection to every master (for FLUSHDB in tests, SCRIPT LOAD, ...)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Drop every connection (pending commands fail with RedisUnavailable)."""

    def pipeline_started(self, commands: list[tuple]) -> Awaitable[list[Any]] | None:
        """Write the commands before returning, when that needs no waiting (an open
        connection to the one server they all go to): an awaitable of their replies.
        None when it would have to wait: nothing was sent (use ``pipeline``)."""
        return None

    async def execute(self, *command: Any) -> Any:
        (reply,) = await self.pipeline([command])
        error = _error(reply)
        if error is not None:
            raise error
        return reply

    async def run_script(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        command = (len(keys), *keys, *args)
        (reply,) = await self.pipeline([("EVALSHA", script.sha, *command)])
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            (reply,) = await self.pipeline([("EVAL", script.source, *command)])
        error = _error(reply)
        if error is not None:
            raise error
        return reply


class Direct(Client):
    """One server: TCP, TLS or a unix socket."""

    def __init__(self, config: Config) -> None:
        host, port = config.hosts[0] if config.hosts else ("", 0)
        self.connection = Connection(config.options, host, port, config.path)

    async def pipeline(self, commands: list[tuple]) -> list[Any]:
        return await self.connection.pipeline(commands)

    def pipeline_started(self, commands: list[tuple]) -> Awaitable[list[Any]] | None:
        return self.connection.started(commands)

    async def masters(self) -> list[Connection]:
        return [self.connection]

    def close(self) -> None:
        self.connection.close()


class Sentinel(Client):
    """The master of a Sentinel-monitored service, found again after a failover."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sentinels = [
            Connection(config.sentinel_options, host, port, setup=False)
            for host, port in config.hosts
        ]
        self.master: Connection | None = None
        self._discovering: asyncio.Future | None = None

    async def _discover(self) -> Connection:
        for sentinel in list(self.sentinels):
            try:
                (reply,) = await sentinel.pipeline(
                    [("SENTINEL", "get-master-addr-by-name", self.config.service)]
                )
            except RedisUnavailable:
                continue
            finally:
                sentinel.close()  # sentinels are asked rarely: no idle connections
            if not isinstance(reply, list) or len(reply) != 2:
                continue
            host, port = reply[0].decode(), int(reply[1])
            master = Connection(self.config.options, host, port)
            try:
                (role,) = await master.pipeline([("ROLE",)])
            except RedisUnavailable:
                master.close()
                continue
            if isinstance(role, list) and role and role[0] == b"master":
                # Ask the sentinel that answered first next time.
                self.sentinels.remove(sentinel)
                self.sentinels.insert(0, sentinel)
                return master
            master.close()  # a demoted master the sentinels have not caught up with
        raise ConnectFailed(f"no Sentinel names a master for {self.config.service!r}")

    async def _master(self) -> Connection:
        if self.master is not None:
            return self.master
        if self._discovering is None:
            self._discovering = asyncio.ensure_future(self._discover())
        try:
            master = await asyncio.shield(self._discovering)
        finally:
            if self._discovering is not None and self._discovering.done():
                self._discovering = None
        self.master = master
        return master

    def _forget(self, master: Connection) -> None:
        if self.master is master:
            self.master = None
        master.close()

    async def pipeline(self, commands: list[tuple]) -> list[Any]:
        # Retried only when nothing was written (no connection) or Redis refused
        # every write (READONLY: a demoted master), never after a lost reply.
        for attempt in range(3):
            master = await self._master()
            try:
                replies = await master.pipeline(commands)
            except ConnectFailed:
                self._forget(master)
                if attempt == 2:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            except RedisUnavailable:
                self._forget(master)  # the next command asks the sentinels again
                raise
            if any(isinstance(r, hiredis.ReplyError) and "READONLY" in str(r) for r in replies):
                self._forget(master)
                if attempt == 2 or any(
                    not isinstance(r, hiredis.ReplyError) for r in replies
                ):  # some were applied: retrying would apply them twice
                    return replies
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            return replies
        raise RedisUnavailable("Sentinel master kept changing")  # pragma: no cover

    async def masters(self) -> list[Connection]:
        return [await self._master()]

    def close(self) -> None:
        if self.master is not None:
            self.master.close()
            self.master = None


# --- cluster ------------------------------------------------------------------------

SLOTS = 16384


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def key_slot(key: bytes | str) -> int:
    """Redis Cluster's slot: CRC16 (XMODEM) of the key's hash tag, else the key."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ byte) & 0xFF]
    return crc % SLOTS


_NO_KEY = {
    b"PING",
    b"INFO",
    b"FLUSHDB",
    b"FLUSHALL",
    b"SCRIPT",
    b"CLUSTER",
    b"ROLE",
    b"DBSIZE",
    b"TIME",
}


def command_key(command: tuple) -> Any:
    """The key a command is routed by (its first key), or None."""
    name = command[0].upper() if isinstance(command[0], str) else command[0].decode().upper()
    if name in ("EVAL", "EVALSHA"):
        return command[3] if int(command[2]) > 0 else None
    if name in ("XREAD", "XREADGROUP"):
        upper = [a.upper() if isinstance(a, str) else a for a in command]
        return command[upper.index("STREAMS") + 1]
    if name == "XGROUP":
        return command[2]
    if name.encode() in _NO_KEY or len(command) < 2:
        return None
    return command[1]


def _redirect(reply: Any) -> tuple[str, int, str] | None:
    """(kind, slot, "host:port") of a MOVED or ASK reply."""
    if isinstance(reply, hiredis.ReplyError):
        text = str(reply)
        if text.startswith(("MOVED ", "ASK ")):
            kind, slot, address = text.split(" ", 2)
            return kind, int(slot), address
    return None


class Cluster(Client):
    """A Redis Cluster: each command to the master of its key's slot."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.seeds = [f"{host}:{port}" for host, port in config.hosts]
        self.nodes: dict[str, Connection] = {}
        self.slots: list[str | None] = [None] * SLOTS
        self._refreshing: asyncio.Future | None = None

    def node(self, address: str) -> Connection:
        connection = self.nodes.get(address)
        if connection is None:
            host, _, port = address.rpartition(":")
            connection = Connection(self.config.options, host, int(port), setup=False)
            self.nodes[address] = connection
        return connection

    async def _load_slots(self) -> None:
        known = [a for a in {*self.nodes, *self.seeds}]
        random.shuffle(known)
        for address in known:
            try:
                (reply,) = await self.node(address).pipeline([("CLUSTER", "SLOTS")])
            except RedisUnavailable:
                continue
            if not isinstance(reply, list):
                continue
            slots: list[str | None] = [None] * SLOTS
            for start, end, master, *_replicas in reply:
                host = master[0].decode() or address.rpartition(":")[0]
                target = f"{host}:{int(master[1])}"
                for slot in range(int(start), int(end) + 1):
                    slots[slot] = target
            self.slots = slots
            return
        raise ConnectFailed("no Redis Cluster node answered CLUSTER SLOTS")

    async def refresh(self) -> None:
        """Reload the slot map (once, however many commands ask at the same time)."""
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._load_slots())
        try:
            await asyncio.shield(self._refreshing)
        finally:
            if self._refreshing is not None and self._refreshing.done():
                self._refreshing = None

    async def _address_for(self, command: tuple) -> str:
        key = command_key(command)
        if self.slots[0] is None:
            await self.refresh()
        if key is None:
            return next(a for a in self.slots if a is not None)
        address = self.slots[key_slot(key)]
        if address is None:
            await self.refresh()
            address = self.slots[key_slot(key)]
        if address is None:
            raise RedisUnavailable("Redis Cluster does not serve this key's slot")
        return address

    async def _send_to(self, address: str, commands: list[tuple]) -> list[Any]:
        try:
            return await self.node(address).pipeline(commands)
        except RedisUnavailable:
            self.slots = [None] * SLOTS  # a node is gone: ask for the map again next time
            raise

    async def pipeline(self, commands: list[tuple]) -> list[Any]:
        groups: dict[str, list[int]] = {}
        for index, command in enumerate(commands):
            groups.setdefault(await self._address_for(command), []).append(index)
        replies: list[Any] = [None] * len(commands)
        if len(groups) == 1:
            ((address, indexes),) = groups.items()
            results = [await self._send_to(address, commands)]
        else:
            results = await asyncio.gather(
                *(self._send_to(a, [commands[i] for i in ix]) for a, ix in groups.items())
            )
        for indexes, group_replies in zip(groups.values(), results, strict=True):
            for index, reply in zip(indexes, group_replies, strict=True):
                replies[index] = reply
        for index, reply in enumerate(replies):
            for _hop in range(5):
                redirect = _redirect(reply)
                if redirect is None:
                    break
                kind, _slot, address = redirect
                if kind == "MOVED":
                    await self.refresh()
                    (reply,) = await self._send_to(address, [commands[index]])
                else:  # ASK: this one command, once, on the importing node
                    _ok, reply = await self._send_to(address, [("ASKING",), commands[index]])
            replies[index] = reply
        return replies

    async def masters(self) -> list[Connection]:
        await self.refresh()
        return [self.node(a) for a in sorted({a for a in self.slots if a is not None})]

    def close(self) -> None:
        for connection in self.nodes.values():
            connection.close()
        self.nodes.clear()


def connect(url: str, *, timeout: float = 1.0) -> Client:
    """A client for ``url`` (not connected until its first command)."""
    config = parse_url(url, timeout=timeout)
    if config.kind == "sentinel":
        return Sentinel(config)
    if config.kind == "cluster":
        return Cluster(config)
    return Direct(config)
