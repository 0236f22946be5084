"""The Redis backend: one Lua window engine, epochs, the usage stream.

Async functions run on the caller's event loop (the gateway's hot path); sync
callers reach the same functions through :func:`call` (the process's
background loop, :mod:`inferia.store.sync`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import hiredis
from django.conf import settings

from inferia.store import keys, sync
from inferia.store.breaker import BREAKER_SCRIPT, BreakerState, Event
from inferia.store.client import Client, RedisUnavailable, Script, connect
from inferia.store.windows import Counter, Counts, StaleEpoch, StoreUnavailable

T = TypeVar("T")

# Check every counter, then count every counter; or count nothing (and return the
# current values). KEYS[1] is the org epoch: a caller whose cache is stale is
# refused without counting. ARGV[1]: the expected epoch (-1: not checked);
# ARGV[2] = 0 only reads the values; ARGV[3]: the number of counters, then per
# counter (limit, amount, ttl ms). Replies {0, epoch} (stale), {1, epoch,
# values...} (counted), {2, epoch, denied index or -1 when only read, values...}.
_WINDOWS = """
local epoch = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) >= 0 and tonumber(ARGV[1]) ~= epoch then
  return {0, epoch}
end
local n = tonumber(ARGV[3])
local denied = 0
if ARGV[2] == '0' then
  denied = -1
else
  for i = 1, n do
    local base = 4 + (i - 1) * 3
    local current = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
    if current + tonumber(ARGV[base + 1]) > tonumber(ARGV[base]) then
      denied = i
      break
    end
  end
end
if denied ~= 0 then
  local out = {2, epoch, denied}
  for j = 1, n do
    out[#out + 1] = tonumber(redis.call('GET', KEYS[j + 1]) or '0')
  end
  return out
end
local out = {1, epoch}
for i = 1, n do
  local base = 4 + (i - 1) * 3
  local value = redis.call('INCRBY', KEYS[i + 1], tonumber(ARGV[base + 1]))
  if redis.call('PTTL', KEYS[i + 1]) < 0 then
    redis.call('PEXPIRE', KEYS[i + 1], tonumber(ARGV[base + 2]))
  end
  out[#out + 1] = value
end
return out
"""

WINDOW_SCRIPT = Script(_WINDOWS)
BREAKER = Script(BREAKER_SCRIPT)

_CLIENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def client() -> Client:
    """The running loop's client for ``settings.REDIS_URL``."""
    loop = asyncio.get_running_loop()
    existing = _CLIENTS.get(loop)
    if existing is None or existing[0] != settings.REDIS_URL:
        if existing is not None:
            existing[1].close()
        existing = (
            settings.REDIS_URL,
            connect(settings.REDIS_URL, timeout=settings.INFERIA_GATEWAY_REDIS_TIMEOUT),
        )
        _CLIENTS[loop] = existing
    return existing[1]


def call(make: Callable[[Client], Awaitable[T]]) -> T:
    """From sync code: ``make(client)`` on the background loop; RedisUnavailable
    becomes StoreUnavailable."""
    timeout = settings.INFERIA_GATEWAY_REDIS_TIMEOUT
    try:
        return sync.run(lambda: make(client()), timeout=timeout * 4 + 1)
    except RedisUnavailable as exc:
        raise StoreUnavailable(str(exc)) from exc


# --- windows --------------------------------------------------------------------------


async def count(
    tag: str, counters: list[Counter], *, expected_epoch: int = -1, apply: bool = True
) -> Counts:
    """One round trip: the epoch check (of the org ``tag``) plus every counter."""
    script_keys = [keys.epoch(tag), *(c.key for c in counters)]
    args: list[int] = [expected_epoch, 1 if apply else 0, len(counters)]
    for c in counters:
        args += [c.limit, c.amount, c.ttl_ms]
    try:
        result = await client().run_script(WINDOW_SCRIPT, script_keys, args)
    except RedisUnavailable as exc:
        raise StoreUnavailable(str(exc)) from exc
    status, epoch = int(result[0]), int(result[1])
    if status == 0:
        raise StaleEpoch(epoch)
    if status == 2:
        index = int(result[2]) - 1
        return Counts(None if index < 0 else index, [int(v) for v in result[3:]])
    return Counts(None, [int(v) for v in result[2:]])


def settle_commands(adjustments: list[tuple[str, int]]) -> list[tuple]:
    return [("INCRBY", key, delta) for key, delta in adjustments if delta]


def _usage_commands(adjustments: list[tuple[str, int]], entry: bytes) -> list[tuple]:
    return [*settle_commands(adjustments), ("XADD", keys.USAGE_STREAM, "*", "entry", entry)]


def _appended(replies: list[Any]) -> bool:
    return not isinstance(replies[-1], hiredis.ReplyError)


async def settle_and_append(adjustments: list[tuple[str, int]], entry: bytes) -> bool:
    """The settlements and the usage stream append in one pipeline (one round trip,
    one per node on a cluster). False when the entry was not appended."""
    try:
        replies = await client().pipeline(_usage_commands(adjustments, entry))
    except RedisUnavailable:
        return False
    return _appended(replies)


def settle_and_append_started(
    adjustments: list[tuple[str, int]], entry: bytes
) -> Awaitable[bool] | None:
    """``settle_and_append`` written to Redis's connection before this returns (the
    gateway then answers while Redis works): an awaitable of the same result. None
    when that would need waiting (no open connection, several servers): nothing sent."""
    replies = client().pipeline_started(_usage_commands(adjustments, entry))
    return None if replies is None else _appended_when(replies)


async def _appended_when(replies: Awaitable[list[Any]]) -> bool:
    try:
        return _appended(await replies)
    except RedisUnavailable:
        return False


# --- epochs, small values --------------------------------------------------------------


def bump_epoch(org_id: object) -> None:
    call(lambda c: c.execute("INCR", keys.epoch(org_id)))


def epoch(org_id: object) -> int:
    return int(call(lambda c: c.execute("GET", keys.epoch(org_id))) or 0)


def delete(key: str) -> None:
    call(lambda c: c.execute("DEL", key))


def ping() -> None:
    if call(lambda c: c.execute("PING")) not in (b"PONG", "PONG"):
        raise StoreUnavailable("Redis did not answer PING")


def flush_all() -> None:
    """FLUSHDB on every master (a cluster has several): tests' clean slate."""

    async def flush(c: Client) -> None:
        for master in await c.masters():
            (reply,) = await master.pipeline([("FLUSHDB",)])
            if isinstance(reply, hiredis.ReplyError):
                raise RedisUnavailable(str(reply))

    call(flush)


# --- the usage stream -------------------------------------------------------------------


def _fields(raw: Any) -> dict[bytes, bytes]:
    if not raw:
        return {}
    return dict(zip(raw[0::2], raw[1::2], strict=True))


def _messages(raw: Any) -> list[tuple[str, bytes]]:
    out = []
    for message_id, fields in raw or []:
        if message_id is None:
            continue
        out.append((message_id.decode(), _fields(fields).get(b"entry", b"")))
    return out


def usage_batches(consumer: str, batch: int):
    """Batches of (stream id, raw entry) for ``consumer``: first what another
    consumer read and never acknowledged for 30 s (it died), then new entries.
    Each batch is read after the previous one was handled."""

    async def prepare(c: Client) -> None:
        (reply,) = await c.pipeline(
            [("XGROUP", "CREATE", keys.USAGE_STREAM, keys.USAGE_GROUP, "0", "MKSTREAM")]
        )
        if isinstance(reply, hiredis.ReplyError) and "BUSYGROUP" not in str(reply):
            raise RedisUnavailable(str(reply))

    call(prepare)
    claimed = call(
        lambda c: c.execute(
            "XAUTOCLAIM",
            keys.USAGE_STREAM,
            keys.USAGE_GROUP,
            consumer,
            30_000,
            "0-0",
            "COUNT",
            batch,
        )
    )
    yield _messages(claimed[1])
    fresh = call(
        lambda c: c.execute(
            "XREADGROUP",
            "GROUP",
            keys.USAGE_GROUP,
            consumer,
            "COUNT",
            batch,
            "STREAMS",
            keys.USAGE_STREAM,
            ">",
        )
    )
    yield _messages(fresh[0][1] if fresh else [])


def usage_done(ids: list[str]) -> None:
    """Acknowledge and delete handled entries (one round trip)."""

    async def done(c: Client) -> None:
        for reply in await c.pipeline(
            [
                ("XACK", keys.USAGE_STREAM, keys.USAGE_GROUP, *ids),
                ("XDEL", keys.USAGE_STREAM, *ids),
            ]
        ):
            if isinstance(reply, hiredis.ReplyError):
                raise RedisUnavailable(str(reply))

    call(done)


def usage_stream_state() -> tuple[int, int, int | None]:
    """(entries in the usage stream, entries read but not acknowledged, the oldest
    entry's time in epoch milliseconds or None) in one round trip, for the metrics.
    Handled entries are deleted, so what the stream holds is what is not recorded yet."""

    async def read(c: Client) -> list[Any]:
        return await c.pipeline(
            [
                ("XLEN", keys.USAGE_STREAM),
                ("XRANGE", keys.USAGE_STREAM, "-", "+", "COUNT", 1),
                ("XPENDING", keys.USAGE_STREAM, keys.USAGE_GROUP),
            ]
        )

    length, oldest, pending = call(read)
    if isinstance(length, hiredis.ReplyError) or isinstance(oldest, hiredis.ReplyError):
        raise StoreUnavailable(f"Redis error: {str(length)[:100]}")
    # No consumer group yet (nothing ingested so far): nothing pending.
    waiting = 0 if isinstance(pending, hiredis.ReplyError) or not pending else int(pending[0])
    oldest_ms = int(oldest[0][0].split(b"-")[0]) if oldest else None
    return int(length), waiting, oldest_ms


def push_dead_letters(payloads: list[bytes]) -> None:
    call(lambda c: c.execute("RPUSH", keys.DEAD_LETTERS, *payloads))


def once(key: str, seconds: int) -> bool:
    """True for the first caller in ``seconds`` (SET NX EX)."""
    return call(lambda c: c.execute("SET", key, 1, "NX", "EX", seconds)) is not None


# --- circuit breakers ---------------------------------------------------------------------


async def breaker_read(breaker_keys: list[str]) -> list[BreakerState]:
    """Every breaker's state in one pipeline (one round trip: the keys share a tag)."""
    try:
        replies = await client().pipeline([("HGETALL", key) for key in breaker_keys])
    except RedisUnavailable as exc:
        raise StoreUnavailable(str(exc)) from exc
    states = []
    for reply in replies:
        if isinstance(reply, hiredis.ReplyError):
            raise StoreUnavailable(f"Redis error: {str(reply)[:100]}")
        states.append(BreakerState.from_fields(dict(zip(reply[0::2], reply[1::2], strict=True))))
    return states


def breaker_delete(breaker_keys: list[str]) -> None:
    """Drop breakers (their keys share a tag: one command, one slot)."""
    if breaker_keys:
        call(lambda c: c.execute("DEL", *breaker_keys))


async def breaker_update(key: str, event: Event) -> tuple[bool, BreakerState]:
    """Apply ``event`` atomically (``inferia.store.breaker``); (probe granted, new state)."""
    try:
        reply = await client().run_script(BREAKER, [key], event.args())
    except RedisUnavailable as exc:
        raise StoreUnavailable(str(exc)) from exc
    granted, fields = reply[0], reply[1:]
    state = BreakerState.from_fields(dict(zip(fields[0::2], fields[1::2], strict=True)))
    return granted in (b"1", "1", 1), state
