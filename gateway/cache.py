"""The gateway's side of the response cache (docs/response-cache.md).

An org that turned the cache on (``OrgPolicy.cache_enabled``, changed only with
``cache:manage``) gets exact-match answers from Redis (``inferia.store.response_cache``)
for chat completions, completions and the Responses and Messages dialects, streamed
or not. ``gateway.app`` asks here only after authorization, the limits and chat
retrieval, so a hit still needs the model grant and still counts one request.

The key is the org (its hash tag: never shared across orgs), the model FQN (a
deployment's own FQN) and the SHA-256 of the canonical JSON (sorted keys) of what
decides the answer: the endpoint, the stream flag, the request body as the upstream
gets it (after validation and retrieval augmentation) and, for a dialect, the body
the client sent (its answer echoes fields of it). Never the credential, never the
caller's identity. An entry holds the answer only: the JSON body, or the relayed
server-sent events of a stream that completed, plus its original token counts.

``Cache-Control: no-cache`` skips the lookup (the fresh answer is still stored),
``no-store`` skips both. A Redis failure is a miss: logged, never the caller's error.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import orjson

from inferia import clock, store
from inferia.store import response_cache
from orgs.policy import OrgPolicy

logger = logging.getLogger(__name__)

HEADER = "X-Inferia-Cache"
CACHEABLE = frozenset({"chat", "completions", "responses", "messages"})
JSON, SSE = "json", "sse"


@dataclass(slots=True)
class Lookup:
    """One request's place in its org's cache and what the caller allows."""

    org_id: str
    member: str  # "<model hash>:<request hash>"
    read: bool
    write: bool
    ttl_seconds: int
    max_bytes: int
    max_entry_bytes: int


@dataclass(slots=True)
class Hit:
    kind: str  # JSON or SSE
    body: bytes
    usage: dict[str, int]


def _directives(cache_control: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in cache_control.split(","))


def request_hash(
    *, endpoint: str, streamed: bool, body: dict[str, Any], client_body: dict[str, Any] | None
) -> str:
    canonical = orjson.dumps(
        {"endpoint": endpoint, "stream": streamed, "body": body, "client_body": client_body},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


def plan(
    *,
    policy: OrgPolicy,
    org_id: object,
    endpoint: str,
    model: str,
    streamed: bool,
    body: dict[str, Any],
    client_body: dict[str, Any] | None,
    cache_control: str,
) -> Lookup | None:
    """The request's lookup, or None when the cache is not in play (off for the org,
    no Redis, an endpoint it does not serve, or ``Cache-Control: no-store``)."""
    if not policy.cache_enabled or endpoint not in CACHEABLE or not store.redis_enabled():
        return None
    directives = _directives(cache_control) if cache_control else frozenset()
    if "no-store" in directives:
        return Lookup(str(org_id), "", False, False, 0, 0, 0)
    digest = request_hash(endpoint=endpoint, streamed=streamed, body=body, client_body=client_body)
    return Lookup(
        org_id=str(org_id),
        member=f"{response_cache.model_hash(model)}:{digest}",
        read="no-cache" not in directives,
        write=True,
        ttl_seconds=policy.cache_ttl_seconds,
        max_bytes=policy.cache_max_bytes,
        max_entry_bytes=policy.cache_max_entry_bytes,
    )


def _now_ms() -> int:
    return int(clock.time() * 1000)


async def get(lookup: Lookup) -> Hit | None:
    """The stored answer, or None (a miss, or Redis failed: logged, still a miss)."""
    try:
        value = await response_cache.lookup(lookup.org_id, lookup.member, _now_ms())
    except store.StoreUnavailable as exc:
        logger.warning("response cache lookup failed: %s", type(exc).__name__)
        return None
    if value is None:
        return None
    header, _, body = value.partition(b"\n")
    try:
        meta = orjson.loads(header)
        usage = {
            "prompt_tokens": int(meta["usage"].get("prompt_tokens") or 0),
            "completion_tokens": int(meta["usage"].get("completion_tokens") or 0),
        }
        kind = meta["kind"]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        logger.warning("response cache entry unreadable; treated as a miss")
        return None
    if kind not in (JSON, SSE):
        return None
    return Hit(kind, body, usage)


def put_started(
    lookup: Lookup, kind: str, body: bytes, usage: dict[str, Any] | None
) -> Awaitable[None] | None:
    """Store an answer (a 200 only: the caller's job) unless it is larger than the
    org's entry limit (then None). Call it before the answer's last bytes go out and
    await the result after: the store is on Redis's connection first, so the caller's
    next request finds it. A Redis failure is logged and dropped, never raised."""
    usage = usage or {}
    header = orjson.dumps(
        {
            "kind": kind,
            "created_at": round(clock.time(), 3),
            "usage": {
                "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                "completion_tokens": int(usage.get("completion_tokens") or 0),
            },
        }
    )
    value = header + b"\n" + body
    if len(value) > lookup.max_entry_bytes:
        return None
    try:
        storing = response_cache.store_started(
            lookup.org_id,
            lookup.member,
            value,
            ttl_ms=lookup.ttl_seconds * 1000,
            now_ms=_now_ms(),
            max_bytes=lookup.max_bytes,
        )
    except store.StoreUnavailable as exc:
        logger.warning("response cache store failed: %s", type(exc).__name__)
        return None
    return _stored(storing)


async def _stored(storing: Awaitable[Any]) -> None:
    try:
        await storing
    except store.StoreUnavailable as exc:
        logger.warning("response cache store failed: %s", type(exc).__name__)


class Recorder:
    """The server-sent events of a stream as relayed, up to the entry limit."""

    __slots__ = ("chunks", "size", "limit")

    def __init__(self, limit: int) -> None:
        self.chunks: list[bytes] | None = []
        self.size = 0
        self.limit = limit

    def add(self, data: bytes) -> None:
        if self.chunks is None:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.chunks = None  # too large to cache: stop holding it
            return
        self.chunks.append(data)

    def body(self) -> bytes | None:
        return None if self.chunks is None else b"".join(self.chunks)
