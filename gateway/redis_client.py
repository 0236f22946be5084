"""One Redis connection pool per process for the gateway's shared state."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings


@lru_cache(maxsize=1)
def client():
    import redis

    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
    )


def enabled() -> bool:
    return bool(settings.REDIS_URL)
