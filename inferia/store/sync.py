"""Sync callers (Django views, on-commit hooks, Celery tasks, probes) on the one client.

A process-wide event loop runs in a daemon thread and owns that loop's client;
:func:`run` hands it a coroutine and waits. The thread starts on first use and
is forgotten in a forked child (Celery's prefork pool, gunicorn), which starts
its own on first use: a child never shares its parent's sockets.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from inferia.store.client import RedisUnavailable

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _start() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="inferia-store-loop", daemon=True
            )
            thread.start()
            _loop = loop
        return _loop


def _forget_after_fork() -> None:
    global _loop, _lock
    _loop = None  # the thread did not survive the fork; its sockets belong to the parent
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def run(make: Callable[[], Awaitable[T]], *, timeout: float) -> T:
    """Run ``make()`` on the background loop and return its result.

    Called on that loop's own thread (a sync helper used from a coroutine
    there) it would deadlock, so that raises instead."""
    loop = _start()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        raise RuntimeError("inferia.store.sync.run called from the store's own loop")

    async def call() -> Any:
        return await make()

    future = asyncio.run_coroutine_threadsafe(call(), loop)
    try:
        return future.result(timeout)
    except FutureTimeout:
        future.cancel()
        raise RedisUnavailable("Redis timed out") from None
