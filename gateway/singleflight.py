"""One load in flight per key: concurrent cache misses wait for the same result.

When a cached principal or upstream secret expires under load, every request in
flight misses at once. Each used to run its own build in the ORM's one thread
(``gateway.orm``), one after the other: with 64 connections a 20 ms build became
a 1.3 s stall for the last of them (the saturation tail of README.md, Benchmark).
Now the first miss starts the load as a task of its own and the others await it;
a caller that is cancelled (its client went away) does not cancel the load for
the rest. Per event loop: a task belongs to the loop that runs it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_RUNNING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, asyncio.Future]] = (
    weakref.WeakKeyDictionary()
)


def _retrieved(task: asyncio.Future) -> None:
    # Every waiter may have gone: mark the outcome seen (no "never retrieved" warning).
    if not task.cancelled():
        task.exception()


async def run(key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
    """``await load()``, shared with every concurrent caller for ``key``."""
    loop = asyncio.get_running_loop()
    running = _RUNNING.get(loop)
    if running is None:
        running = _RUNNING[loop] = {}
    task: Any = running.get(key)
    if task is None:
        task = asyncio.ensure_future(load())
        running[key] = task

        def done(finished: asyncio.Future) -> None:
            if running.get(key) is finished:
                del running[key]
            _retrieved(finished)

        task.add_done_callback(done)
    return await asyncio.shield(task)
