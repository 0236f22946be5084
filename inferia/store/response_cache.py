"""The gateway's response cache in Redis: entries, their per-org index, the size cap.

Every key of one org carries the org's hash tag (``inferia:{<org id>}:cache:...``),
so each script below touches one slot and runs on Redis Cluster. Per org:

- ``e:<model hash>:<request hash>``: one entry (the stored answer), expiring on its own;
- ``index``: a sorted set of the entries (member ``<model hash>:<request hash>``,
  score: when it expires, in ms of the platform clock): the TTL as the gateway
  enforces it, and the eviction order (the first to expire goes first);
- ``sizes``: a hash member -> bytes, ``bytes``: their sum (the cap's account);
- ``m:<model hash>``: a set of the model's entries (purge by model, no SCAN);
- ``stats``: a hash of ``hits`` and ``misses``.

Storing is one script (expired entries pruned, the entry replaced, the oldest evicted
until it fits, the org's total never above the cap); a lookup is one script (index
score, value and the hit or miss counted). Purging an org or a model is one script.
The structure keys live as long as the longest-lived entry, so an org that stops
using the cache leaves nothing behind. See docs/response-cache.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import hiredis

from inferia.store import keys
from inferia.store.client import RedisUnavailable, Script
from inferia.store.redis_store import call, client
from inferia.store.windows import StoreUnavailable

# Redis keeps an entry this much longer than its TTL, so the index (the gateway's
# clock) decides when it expires, never a race with Redis's own expiry.
SLACK_MS = 60_000

# A member is "<model hash>:<request hash>"; ARGV[1] is the org's key prefix.
_DROP = """
local function drop(prefix, m)
  local s = tonumber(redis.call('HGET', prefix .. 'sizes', m) or '0')
  redis.call('DEL', prefix .. 'e:' .. m)
  redis.call('HDEL', prefix .. 'sizes', m)
  redis.call('ZREM', prefix .. 'index', m)
  local mh = string.match(m, '^([^:]+):')
  if mh then redis.call('SREM', prefix .. 'm:' .. mh, m) end
  if s > 0 then redis.call('DECRBY', prefix .. 'bytes', s) end
  return s
end
"""

# KEYS: index, sizes, bytes, entry, model set (all of one org). ARGV: prefix, member,
# value, ttl ms, now ms, cap bytes. Replies {stored 0/1, the org's bytes, evicted}.
_STORE = (
    _DROP
    + """
local prefix, member, value = ARGV[1], ARGV[2], ARGV[3]
local ttl, now, cap = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local size = string.len(value)
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)) do
  drop(prefix, m)
end
if redis.call('HEXISTS', KEYS[2], member) == 1 then drop(prefix, member) end
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
if size > cap then return {0, total, 0} end
local evicted = 0
while total + size > cap do
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)
  if #oldest == 0 then
    -- Nothing indexed but bytes accounted (Redis dropped entries itself): start over.
    redis.call('SET', KEYS[3], 0)
    total = 0
    break
  end
  drop(prefix, oldest[1])
  evicted = evicted + 1
  total = tonumber(redis.call('GET', KEYS[3]) or '0')
end
local keep = ttl + tonumber(ARGV[7])
redis.call('SET', KEYS[4], value, 'PX', keep)
redis.call('ZADD', KEYS[1], now + ttl, member)
redis.call('HSET', KEYS[2], member, size)
total = redis.call('INCRBY', KEYS[3], size)
redis.call('SADD', KEYS[5], member)
for _, k in ipairs({KEYS[1], KEYS[2], KEYS[3], KEYS[5]}) do
  if redis.call('PTTL', k) < keep then redis.call('PEXPIRE', k, keep) end
end
return {1, total, evicted}
"""
)

# KEYS: index, entry, stats. ARGV: member, now ms. The value, or false (a miss).
_LOOKUP = """
local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
if expires and tonumber(expires) > tonumber(ARGV[2]) then
  local value = redis.call('GET', KEYS[2])
  if value then
    redis.call('HINCRBY', KEYS[3], 'hits', 1)
    return value
  end
end
redis.call('HINCRBY', KEYS[3], 'misses', 1)
return false
"""

# KEYS: index (of the org). ARGV: prefix, model hash or '' (every entry). Replies the
# number of entries dropped.
_PURGE = (
    _DROP
    + """
local prefix, mh = ARGV[1], ARGV[2]
local members
if mh == '' then
  members = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  members = redis.call('SMEMBERS', prefix .. 'm:' .. mh)
end
for _, m in ipairs(members) do drop(prefix, m) end
if mh ~= '' then
  redis.call('DEL', prefix .. 'm:' .. mh)
elseif redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', prefix .. 'bytes')
end
return #members
"""
)

STORE_SCRIPT = Script(_STORE)
LOOKUP_SCRIPT = Script(_LOOKUP)
PURGE_SCRIPT = Script(_PURGE)


def prefix(org_id: object) -> str:
    """``inferia:{<org id>}:cache:``: the org's keys, on the slot of its limits."""
    return keys.tagged(str(org_id), "cache") + ":"


def model_hash(model: str) -> str:
    """The model FQN as a key part (any characters, bounded length)."""
    return keys.hashed("model:" + model)[:24]


async def lookup(org_id: object, member: str, now_ms: int) -> bytes | None:
    """The entry ``member`` of the org if it has not expired (counted as a hit, else
    as a miss). Raises StoreUnavailable."""
    base = prefix(org_id)
    try:
        value = await client().run_script(
            LOOKUP_SCRIPT, [base + "index", base + "e:" + member, base + "stats"], [member, now_ms]
        )
    except RedisUnavailable as exc:
        raise StoreUnavailable(str(exc)) from exc
    return value if isinstance(value, bytes) else None


def _store_call(
    org_id: object, member: str, value: bytes, ttl_ms: int, now_ms: int, max_bytes: int
) -> tuple[list[str], list[Any]]:
    base = prefix(org_id)
    model = member.partition(":")[0]
    script_keys = [base + "index", base + "sizes", base + "bytes", base + "e:" + member]
    script_keys.append(base + "m:" + model)
    return script_keys, [base, member, value, ttl_ms, now_ms, max_bytes, SLACK_MS]


def _stored(reply: Any) -> tuple[bool, int, int]:
    return bool(int(reply[0])), int(reply[1]), int(reply[2])


async def store(
    org_id: object, member: str, value: bytes, *, ttl_ms: int, now_ms: int, max_bytes: int
) -> tuple[bool, int, int]:
    """Store ``value`` as ``member`` (replacing it), evicting the org's entries that
    expire first until its total fits ``max_bytes``: (stored, the org's bytes,
    entries evicted). Raises StoreUnavailable."""
    script_keys, args = _store_call(org_id, member, value, ttl_ms, now_ms, max_bytes)
    try:
        return _stored(await client().run_script(STORE_SCRIPT, script_keys, args))
    except RedisUnavailable as exc:
        raise StoreUnavailable(str(exc)) from exc


def store_started(
    org_id: object, member: str, value: bytes, *, ttl_ms: int, now_ms: int, max_bytes: int
) -> Awaitable[tuple[bool, int, int]]:
    """``store``, already written to Redis's connection when this returns when that
    needs no waiting (an open connection to one server): Redis then runs it before any
    command this process sends later, such as the lookup of the caller's next request.
    Else (a cluster, a connection to open) it starts as a task now, on its way well
    before that lookup (which follows the limit script's round trip). Await the
    result; raises StoreUnavailable."""
    script_keys, args = _store_call(org_id, member, value, ttl_ms, now_ms, max_bytes)
    command = ("EVALSHA", STORE_SCRIPT.sha, len(script_keys), *script_keys, *args)
    try:
        replies = client().pipeline_started([command])
    except RedisUnavailable as exc:
        raise StoreUnavailable(str(exc)) from exc
    if replies is None:
        return asyncio.ensure_future(
            store(org_id, member, value, ttl_ms=ttl_ms, now_ms=now_ms, max_bytes=max_bytes)
        )
    return _stored_when(replies, script_keys, args)


async def _stored_when(
    replies: Awaitable[list[Any]], script_keys: list[str], args: list[Any]
) -> tuple[bool, int, int]:
    try:
        (reply,) = await replies
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            # Redis does not know the script yet (a restart): once more, with its source.
            reply = await client().run_script(STORE_SCRIPT, script_keys, args)
        elif isinstance(reply, hiredis.ReplyError):
            raise RedisUnavailable(str(reply)[:100])
    except RedisUnavailable as exc:
        raise StoreUnavailable(str(exc)) from exc
    return _stored(reply)


async def _purge(org_id: object, model: str | None) -> int:
    base = prefix(org_id)
    reply = await client().run_script(
        PURGE_SCRIPT, [base + "index"], [base, model_hash(model) if model else ""]
    )
    return int(reply)


def purge(org_id: object, model: str | None = None) -> int:
    """Drop the org's entries (of ``model`` only, when given); returns how many.
    Raises StoreUnavailable."""
    return call(lambda _c: _purge(org_id, model))


async def _stats(org_id: object, now_ms: int) -> dict[str, int]:
    base = prefix(org_id)
    replies = await client().pipeline(
        [
            ("ZCOUNT", base + "index", f"({now_ms}", "+inf"),
            ("GET", base + "bytes"),
            ("HMGET", base + "stats", "hits", "misses"),
        ]
    )
    for reply in replies:
        if isinstance(reply, hiredis.ReplyError):
            raise RedisUnavailable(str(reply)[:100])
    entries, total, (hits, misses) = replies
    return {
        "entries": int(entries or 0),
        "bytes": int(total or 0),
        "hits": int(hits or 0),
        "misses": int(misses or 0),
    }


def stats(org_id: object, now_ms: int) -> dict[str, Any]:
    """The org's live entries, the bytes held (expired entries count until the next
    store prunes them), and the hits and misses counted so far. Raises StoreUnavailable."""
    return call(lambda _c: _stats(org_id, now_ms))
