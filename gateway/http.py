"""One pooled async HTTP client per event loop (one per process under uvicorn)."""

from __future__ import annotations

import asyncio
import weakref

import httpx
from django.conf import settings

_CLIENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    existing = _CLIENTS.get(loop)
    if existing is None or existing.is_closed:
        existing = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.INFERIA_GATEWAY_READ_TIMEOUT, connect=settings.INFERIA_GATEWAY_CONNECT_TIMEOUT
            ),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
            follow_redirects=False,  # never carry the provider secret to another host
            trust_env=False,  # no proxy or .netrc from the environment steers upstream calls
        )
        _CLIENTS[loop] = existing
    return existing
