"""Atomic fixed-window counters shared by every process: Redis, else the database.

Used for login throttling now and request limits later. Keys are hashed so no
username or credential reaches the store in clear.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from inferia import clock
from inferia.models import WindowCounter


@dataclass(frozen=True)
class Window:
    count: int
    reset_in_seconds: int


def _hashed(key: str) -> str:
    return "ctr:" + hashlib.sha256(key.encode()).hexdigest()[:40]


@lru_cache(maxsize=1)
def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


# The key names its window's start, so the window ends at start + window
# whatever the key's TTL says; the TTL (one window from the first hit) only
# cleans up.
_INCR_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def _window_start(window_seconds: int, now: float) -> int:
    return int(now) - int(now) % window_seconds


def hit(key: str, *, window_seconds: int, now: float | None = None) -> Window:
    """Add one to ``key`` in the current window and return the new count."""
    now = clock.time() if now is None else now
    start = _window_start(window_seconds, now)
    reset_in = start + window_seconds - int(now)
    if settings.REDIS_URL:
        count = _redis().eval(_INCR_SCRIPT, 1, f"{_hashed(key)}:{start}", window_seconds)
        return Window(int(count), max(1, reset_in))
    hashed = _hashed(key)
    for _attempt in range(3):
        with transaction.atomic():
            updated = WindowCounter.objects.filter(key=hashed, window_start=start).update(
                count=F("count") + 1
            )
            if not updated:
                try:
                    with transaction.atomic():
                        WindowCounter.objects.create(
                            key=hashed,
                            window_start=start,
                            count=1,
                            expires_at=start + window_seconds,
                        )
                except IntegrityError:
                    continue  # a parallel request created it: increment instead
            row = WindowCounter.objects.get(key=hashed, window_start=start)
            return Window(row.count, max(1, reset_in))
    raise RuntimeError("counter contention")


def peek(key: str, *, window_seconds: int, now: float | None = None) -> Window:
    """The current window's count without changing it."""
    now = clock.time() if now is None else now
    start = _window_start(window_seconds, now)
    reset_in = start + window_seconds - int(now)
    if settings.REDIS_URL:
        value = _redis().get(f"{_hashed(key)}:{start}")
        return Window(int(value or 0), max(1, reset_in))
    row = WindowCounter.objects.filter(key=_hashed(key), window_start=start).first()
    return Window(row.count if row else 0, max(1, reset_in))


def reset(key: str, *, window_seconds: int, now: float | None = None) -> None:
    now = clock.time() if now is None else now
    start = _window_start(window_seconds, now)
    if settings.REDIS_URL:
        _redis().delete(f"{_hashed(key)}:{start}")
        return
    WindowCounter.objects.filter(key=_hashed(key), window_start=start).delete()


def prune(now: float | None = None) -> int:
    """Delete expired database windows (Redis expires its own)."""
    now = clock.time() if now is None else now
    deleted, _ = WindowCounter.objects.filter(expires_at__lt=int(now)).delete()
    return deleted
