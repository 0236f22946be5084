"""Concurrent cache misses share one load (gateway/singleflight.py): the saturation
tail of an expiring principal or secret was every request in flight rebuilding it,
one after the other, in the ORM's one thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gateway import app, principals, singleflight
from orgs.policy import OrgPolicy


def test_concurrent_callers_share_one_load():
    calls = []

    async def load():
        calls.append(1)
        await asyncio.sleep(0.05)
        return object()

    async def main():
        results = await asyncio.gather(*(singleflight.run("k", load) for _ in range(20)))
        assert len({id(r) for r in results}) == 1
        # Finished: the next miss loads again (nothing is cached here).
        assert await singleflight.run("k", load) is not results[0]

    asyncio.run(main())
    assert len(calls) == 2


def test_a_cancelled_caller_does_not_cancel_the_load_for_the_others():
    async def load():
        await asyncio.sleep(0.05)
        return "loaded"

    async def main():
        first = asyncio.ensure_future(singleflight.run("k", load))
        second = asyncio.ensure_future(singleflight.run("k", load))
        await asyncio.sleep(0.01)
        first.cancel()
        assert await second == "loaded"
        with pytest.raises(asyncio.CancelledError):
            await first

    asyncio.run(main())


def test_a_failure_reaches_every_waiter_and_is_not_kept():
    attempts = []

    async def load():
        attempts.append(1)
        await asyncio.sleep(0.01)
        if len(attempts) == 1:
            raise ValueError("database down")
        return "ok"

    async def main():
        results = await asyncio.gather(
            *(singleflight.run("k", load) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, ValueError) for r in results)
        assert await singleflight.run("k", load) == "ok"

    asyncio.run(main())
    assert len(attempts) == 2


def test_keys_do_not_share():
    async def load(value):
        await asyncio.sleep(0.01)
        return value

    async def main():
        a, b = await asyncio.gather(
            singleflight.run("a", lambda: load("a")), singleflight.run("b", lambda: load("b"))
        )
        assert (a, b) == ("a", "b")

    asyncio.run(main())


def _slow_build(builds: list[int]):
    """``principals.build`` as a cold build takes time (database rows, the resolver),
    noting the thread each build ran in; the principal's epoch is the build's number."""

    def build(raw, hint, *, verify_only=False):
        builds.append(threading.get_ident())
        time.sleep(0.05)
        return principals.Principal(
            org_id="org",
            org_slug="org",
            policy=OrgPolicy(),
            epoch=len(builds),
            permissions=frozenset(),
            label="key",
            built_at=time.monotonic(),
        )

    return build


def test_cold_requests_for_one_credential_build_its_principal_once(monkeypatch):
    """The gateway's own path: concurrent misses for one key run ``principals.build``
    once (in the ORM thread), and every request gets that principal."""
    builds: list[int] = []
    monkeypatch.setattr(principals, "build", _slow_build(builds))
    principals.clear()

    async def main():
        return await asyncio.gather(
            *(app._load_principal("ifr_cold_credential", "") for _ in range(16))
        )

    try:
        results = asyncio.run(main())
    finally:
        principals.clear()
    assert len(builds) == 1
    assert len({id(p) for p in results}) == 1


def test_a_rebuild_after_a_stale_epoch_does_not_join_an_older_build(monkeypatch):
    """A build in flight may have read the epoch before an access change: requests that
    saw the newer epoch start their own build rather than wait for that one."""
    builds: list[int] = []
    monkeypatch.setattr(principals, "build", _slow_build(builds))
    principals.clear()

    async def main():
        return await asyncio.gather(
            app._load_principal("ifr_cold_credential", ""),
            app._load_principal("ifr_cold_credential", "", seen_epoch=7),
            app._load_principal("ifr_cold_credential", "", seen_epoch=7),
        )

    try:
        first, second, third = asyncio.run(main())
    finally:
        principals.clear()
    assert len(builds) == 2
    assert second is third and first is not second
