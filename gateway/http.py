"""One pooled async HTTP client per event loop (one per process under uvicorn)."""

from __future__ import annotations

import asyncio
import weakref

from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx
from django.conf import settings


def _no_cookies() -> CookieJar:
    """A jar that refuses every cookie: one shared client serves every org, so an
    upstream's Set-Cookie must never ride along on another org's calls. (Passed as
    a CookieJar: httpx keeps its policy; an httpx.Cookies would be copied without it.)"""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))

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
            cookies=_no_cookies(),
        )
        _CLIENTS[loop] = existing
    return existing
