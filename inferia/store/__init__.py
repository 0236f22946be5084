"""Inferia's shared state: counters and windows, org epochs, the usage stream.

Two backends, chosen per call by ``settings.REDIS_URL``: Redis
(:mod:`inferia.store.redis_store`, one Lua window engine, on Inferia's one
Redis client :mod:`inferia.store.client`) or, embedded, the database
(:mod:`inferia.store.db_store`, one transaction routine). The login throttle,
the gateway's limits and quotas (reserve, then settle), the API keys' last-used
throttle and the readiness probe all come here. See docs/state.md.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError, transaction

from inferia import clock
from inferia.store import db_store, keys, redis_store
from inferia.store.breaker import BreakerState, Event
from inferia.store.windows import (
    UNLIMITED,
    Counter,
    Counts,
    StaleEpoch,
    StoreUnavailable,
    fixed_window,
)

__all__ = [
    "BreakerState",
    "Counter",
    "Event",
    "Counts",
    "StaleEpoch",
    "StoreUnavailable",
    "UNLIMITED",
    "Window",
    "breaker_delete_sync",
    "breaker_read",
    "breaker_read_sync",
    "breaker_update",
    "breaker_update_sync",
    "bump_epoch",
    "count",
    "count_sync",
    "epoch",
    "fixed_window",
    "hit",
    "keys",
    "once",
    "peek",
    "ping",
    "prune",
    "redis_enabled",
    "reset",
]

logger = logging.getLogger(__name__)


def redis_enabled() -> bool:
    return bool(settings.REDIS_URL)


# --- windows: the one engine per backend -------------------------------------------------


async def count(
    tag: str, counters: list[Counter], *, expected_epoch: int = -1, apply: bool = True
) -> Counts:
    """Check every counter against its limit and count them all, or none (``apply=False``:
    only read them). ``expected_epoch`` >= 0 also checks the org ``tag``'s epoch first
    (StaleEpoch). Raises StoreUnavailable. Every key must carry the hash tag ``tag``."""
    if redis_enabled():
        return await redis_store.count(tag, counters, expected_epoch=expected_epoch, apply=apply)
    from gateway.orm import orm

    return await orm(db_store.count)(tag, counters, expected_epoch=expected_epoch, apply=apply)


def count_sync(tag: str, counters: list[Counter], *, apply: bool = True) -> Counts:
    """:func:`count` for sync callers (no epoch)."""
    if redis_enabled():
        return redis_store.call(lambda _c: redis_store.count(tag, counters, apply=apply))
    return db_store.count(tag, counters, apply=apply)


def settle_db(adjustments: list[tuple[str, int]]) -> None:
    """Embedded: settle reservations (with Redis they ride the usage append)."""
    db_store.settle(adjustments)


# --- fixed-window throttles (login) --------------------------------------------------------


class Window:
    __slots__ = ("count", "reset_in_seconds")

    def __init__(self, count: int, reset_in_seconds: int) -> None:
        self.count = count
        self.reset_in_seconds = reset_in_seconds


def _throttle_counter(name: str, window_seconds: int, now: float | None) -> tuple[str, Counter]:
    now = clock.time() if now is None else now
    start, reset_in = fixed_window(window_seconds, now)
    tag = "ctr:" + keys.hashed(name)  # no username or credential reaches the store
    return tag, Counter(keys.tagged(tag, start), start, max(1, reset_in), UNLIMITED, 1)


def hit(name: str, *, window_seconds: int, now: float | None = None) -> Window:
    """Add one to ``name``'s current window and return the new count."""
    tag, counter = _throttle_counter(name, window_seconds, now)
    counts = count_sync(tag, [counter])
    return Window(counts.values[0], counter.reset_in)


def peek(name: str, *, window_seconds: int, now: float | None = None) -> Window:
    """The current window's count without changing it."""
    tag, counter = _throttle_counter(name, window_seconds, now)
    counts = count_sync(tag, [counter], apply=False)
    return Window(counts.values[0], counter.reset_in)


def reset(name: str, *, window_seconds: int, now: float | None = None) -> None:
    _tag, counter = _throttle_counter(name, window_seconds, now)
    if redis_enabled():
        redis_store.delete(counter.key)
    else:
        db_store.delete(counter.key, counter.window_start)


def prune(now: float | None = None) -> int:
    """Delete expired database windows (Redis expires its own)."""
    return db_store.prune(clock.time() if now is None else now)


def once(name: str, seconds: int) -> bool:
    """True for the first call naming ``name`` in the ``seconds`` that follow it, on every
    process (write throttles, the SAML replay cache). Raises StoreUnavailable."""
    key = keys.tagged("once:" + keys.hashed(name))
    if redis_enabled():
        return redis_store.once(key, seconds)
    return db_store.once(key, seconds)


# --- org epochs -----------------------------------------------------------------------------


def _bump_now(org_id: object) -> None:
    if redis_enabled():
        try:
            redis_store.bump_epoch(org_id)
        except StoreUnavailable:
            # The change is committed; while Redis is down every gateway call is
            # refused (503), and cached entries expire within INFERIA_GATEWAY_CACHE_SECONDS.
            logger.error("epoch bump for org %s failed: Redis unreachable", org_id)
        return
    db_store.bump_epoch(org_id)


def bump_epoch(org_id: object) -> None:
    """Bump the org's epoch when the current transaction commits (now, outside one).

    Any change that can alter an access decision bumps it; gateway processes check
    it on every request (in the limit script's round trip) and drop cached
    principals built before."""
    transaction.on_commit(lambda: _bump_now(org_id))


def epoch(org_id: object) -> int:
    """The org's current epoch (StoreUnavailable when Redis cannot tell)."""
    if redis_enabled():
        return redis_store.epoch(org_id)
    return db_store.epoch(org_id)


# --- circuit breakers (inferia.store.breaker) ------------------------------------------------


def _db_breaker_read(breaker_keys: list[str]) -> list[BreakerState]:
    try:
        return db_store.breaker_read(breaker_keys)
    except DatabaseError as exc:
        raise StoreUnavailable(type(exc).__name__) from exc


def _db_breaker_update(key: str, event: Event) -> tuple[bool, BreakerState]:
    try:
        return db_store.breaker_update(key, event)
    except DatabaseError as exc:
        raise StoreUnavailable(type(exc).__name__) from exc


async def breaker_read(breaker_keys: list[str]) -> list[BreakerState]:
    """The breakers' states, in the order of ``breaker_keys`` (one round trip; the keys
    of one call share a hash tag). Raises StoreUnavailable."""
    if redis_enabled():
        return await redis_store.breaker_read(breaker_keys)
    from gateway.orm import orm

    return await orm(_db_breaker_read)(breaker_keys)


async def breaker_update(key: str, event: Event) -> tuple[bool, BreakerState]:
    """Apply one event to a breaker, atomically on every process: (probe granted, the
    new state). Raises StoreUnavailable."""
    if redis_enabled():
        return await redis_store.breaker_update(key, event)
    from gateway.orm import orm

    return await orm(_db_breaker_update)(key, event)


def breaker_read_sync(breaker_keys: list[str]) -> list[BreakerState]:
    """:func:`breaker_read` for sync callers (the API, the health task)."""
    if redis_enabled():
        return redis_store.call(lambda _c: redis_store.breaker_read(breaker_keys))
    return _db_breaker_read(breaker_keys)


def breaker_delete_sync(breaker_keys: list[str]) -> None:
    """Drop breakers (a deleted deployment's). Raises StoreUnavailable."""
    if redis_enabled():
        redis_store.breaker_delete(breaker_keys)
        return
    try:
        db_store.breaker_delete(breaker_keys)
    except DatabaseError as exc:
        raise StoreUnavailable(type(exc).__name__) from exc


def breaker_update_sync(key: str, event: Event) -> tuple[bool, BreakerState]:
    """:func:`breaker_update` for sync callers."""
    if redis_enabled():
        return redis_store.call(lambda _c: redis_store.breaker_update(key, event))
    return _db_breaker_update(key, event)


# --- health ---------------------------------------------------------------------------------


def ping() -> None:
    """Raise unless the shared store answers (Redis PING; embedded: the database's)."""
    if redis_enabled():
        redis_store.ping()
        return
    from inferia.models import WindowCounter

    WindowCounter.objects.exists()
