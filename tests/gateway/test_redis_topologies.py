"""The gateway on a real Redis Cluster (three masters) and behind Sentinel.

The topologies come from ``.ci/redis-topologies`` (its printed
``REDIS_CLUSTER_URL`` / ``REDIS_SENTINEL_URL``); without them these tests skip
(fail in CI). Limits, quotas and revocation also run whole on each topology in
``.ci/run`` (``REDIS_URL`` set to it); here: what only a topology can show.
A Sentinel failover in the middle of a key's minute, after which the client
follows the new master and the counts carry over; a Cluster's ``MOVED`` (a
stale slot map) and ``ASK`` (a slot being migrated) followed.
"""

from __future__ import annotations

import os
import time
import uuid

import openai
import pytest

from inferia.store import client as store_client
from inferia.store import keys, sync
from tests.conftest import redis_reachable, require_or_skip, to_step_start
from tests.gateway.conftest import assert_sdk_error

CHAT = [{"role": "user", "content": "hi"}]


def _topology(name: str) -> str:
    url = os.environ.get(name, "")
    if not url:
        require_or_skip(f"needs {name} (start them with .ci/redis-topologies)")
    if not redis_reachable(url):
        require_or_skip(f"{name} ({url}) is unreachable")
    return url


def _run(make, timeout: float = 30.0):
    return sync.run(make, timeout=timeout)


def _raw(client: openai.OpenAI):
    return client.chat.completions.with_raw_response.create(
        model="openai-main/gpt-4o", messages=CHAT
    )


@pytest.fixture
def on_cluster(settings) -> str:
    """The gateway's store on the cluster. Request it before ``llm``."""
    settings.REDIS_URL = _topology("REDIS_CLUSTER_URL")
    return settings.REDIS_URL


@pytest.fixture
def on_sentinel(settings) -> str:
    settings.REDIS_URL = _topology("REDIS_SENTINEL_URL")
    return settings.REDIS_URL


def _limited_key(llm, rpm: int) -> str:
    key = llm.key()
    row = llm.key_row(key)
    row.requests_per_minute = rpm
    row.save(update_fields=["requests_per_minute"])
    return key


def _limit_then_revoke(llm, bob_client, before: int, between=None) -> None:
    """A key of 3 requests a minute: ``before`` calls, ``between()``, the rest of the
    minute (the 4th refused), then a revoke refused at once."""
    to_step_start(60)
    info = llm.key_info(bob_client)
    row = llm.key_row(info["key"])
    row.requests_per_minute = 3
    row.save(update_fields=["requests_per_minute"])
    client = llm.sdk(info["key"])
    remaining = []
    for _ in range(before):
        remaining.append(_raw(client).headers["X-RateLimit-Remaining"])
    if between is not None:
        between()
    for _ in range(3 - before):
        remaining.append(_raw(client).headers["X-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    with pytest.raises(openai.RateLimitError) as caught:
        _raw(client)
    assert_sdk_error(caught.value, 429, "RATE_LIMITED")
    assert bob_client.delete(f"/api/v1/orgs/acme/api-keys/{info['id']}").status_code == 200
    with pytest.raises(openai.AuthenticationError) as refused:
        _raw(client)
    assert_sdk_error(refused.value, 401, "AUTHENTICATION_FAILED")


# --- cluster -----------------------------------------------------------------------------


@pytest.mark.redis_cluster
def test_cluster_limits_and_revocation_on_the_org_slot(on_cluster, llm, bob_client, cast):
    _limit_then_revoke(llm, bob_client, before=3)
    org = str(cast.acme.pk)

    async def where() -> tuple[int, int]:
        redis = store_client.connect(on_cluster)
        try:
            # The epoch (bumped by the revoke) is on the slot the cluster computes.
            slot = await redis.execute("CLUSTER", "KEYSLOT", keys.epoch(org))
            return int(slot), int(await redis.execute("GET", keys.epoch(org)))
        finally:
            redis.close()

    slot, epoch = _run(where)
    assert slot == store_client.key_slot(keys.epoch(org))
    assert epoch >= 1


async def _masters(url: str) -> tuple[store_client.Cluster, list[str]]:
    redis = store_client.connect(url)
    assert isinstance(redis, store_client.Cluster)
    masters = [m.address for m in await redis.masters()]
    assert len(masters) == 3, masters
    return redis, masters


@pytest.mark.redis_cluster
def test_cluster_moved_refreshes_a_stale_slot_map():
    url = _topology("REDIS_CLUSTER_URL")
    tag = f"moved-{uuid.uuid4().hex}"
    names = [keys.tagged(f"{tag}-{i}", "n") for i in range(12)]

    async def scenario() -> None:
        redis, masters = await _masters(url)
        try:
            owner = redis.slots[store_client.key_slot(names[0])]
            wrong = next(a for a in masters if a != owner)
            redis.slots = [wrong] * store_client.SLOTS  # every slot on one node: stale
            replies = await redis.pipeline(
                [("SET", name, i) for i, name in enumerate(names)]
                + [("GET", name) for name in names]
            )
            assert replies[: len(names)] == [b"OK"] * len(names)
            assert replies[len(names) :] == [str(i).encode() for i in range(len(names))]
            assert redis.slots[store_client.key_slot(names[0])] == owner  # refreshed
            assert len(set(redis.slots)) == 3
            await redis.pipeline([("DEL", name) for name in names])
        finally:
            redis.close()

    _run(scenario)


@pytest.mark.redis_cluster
def test_cluster_ask_during_a_slot_migration():
    url = _topology("REDIS_CLUSTER_URL")
    name = keys.tagged(f"ask-{uuid.uuid4().hex}", "n")
    slot = store_client.key_slot(name)

    async def scenario() -> None:
        redis, masters = await _masters(url)
        source_address = redis.slots[slot]
        assert source_address is not None
        target_address = next(a for a in masters if a != source_address)
        source, target = redis.node(source_address), redis.node(target_address)
        (source_id,) = await source.pipeline([("CLUSTER", "MYID")])
        (target_id,) = await target.pipeline([("CLUSTER", "MYID")])
        try:
            await target.pipeline([("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)])
            await source.pipeline([("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)])
            # The key is not on the source: it answers ASK, and the client asks the target.
            assert await redis.execute("SET", name, "moved-in") == b"OK"
            assert await redis.execute("GET", name) == b"moved-in"
            (direct,) = await source.pipeline([("GET", name)])
            assert str(direct).startswith(f"ASK {slot} {target_address}")  # not on the source
            asked = await target.pipeline([("ASKING",), ("GET", name)])
            assert asked == [b"OK", b"moved-in"]
        finally:
            await target.pipeline([("ASKING",), ("DEL", name)])
            await source.pipeline([("CLUSTER", "SETSLOT", slot, "STABLE")])
            await target.pipeline([("CLUSTER", "SETSLOT", slot, "STABLE")])
            redis.close()

    _run(scenario)


# --- sentinel ------------------------------------------------------------------------------


def _sentinel_failover(url: str) -> None:
    """SENTINEL FAILOVER, then wait until the sentinels name a new master that says so."""
    config = store_client.parse_url(url)

    async def master_address() -> tuple[str, int]:
        sentinel = store_client.Connection(config.sentinel_options, *config.hosts[0], setup=False)
        try:
            (reply,) = await sentinel.pipeline(
                [("SENTINEL", "get-master-addr-by-name", config.service)]
            )
            return reply[0].decode(), int(reply[1])
        finally:
            sentinel.close()

    async def failover() -> tuple[str, int]:
        old = await master_address()
        master = store_client.Connection(config.options, *old)
        try:
            # Both nodes hold this minute's counts before the switch.
            (acked,) = await master.pipeline([("WAIT", 1, 2000)])
            assert acked >= 1, "the replica is not connected"
        finally:
            master.close()
        sentinel = store_client.Connection(config.sentinel_options, *config.hosts[0], setup=False)
        try:
            (reply,) = await sentinel.pipeline([("SENTINEL", "FAILOVER", config.service)])
            assert reply == b"OK", reply
        finally:
            sentinel.close()
        return old

    old = _run(failover)
    deadline = time.monotonic() + 30
    while True:
        new = _run(master_address)
        if new != old:

            async def roles(new: tuple[str, int] = new) -> tuple[bytes, bytes]:
                now_master = store_client.Connection(config.options, *new)
                demoted = store_client.Connection(config.options, *old)
                try:
                    (new_role,) = await now_master.pipeline([("ROLE",)])
                    (old_role,) = await demoted.pipeline([("ROLE",)])
                    return new_role[0], old_role[0]
                finally:
                    now_master.close()
                    demoted.close()

            if _run(roles) == (b"master", b"slave"):
                return
        if time.monotonic() > deadline:
            raise AssertionError("the Sentinel failover did not complete within 30 s")
        time.sleep(0.2)


@pytest.mark.redis_sentinel
def test_sentinel_failover_mid_minute_the_gateway_follows_the_new_master(
    on_sentinel, llm, bob_client
):
    """Two calls, a failover, then the third call is counted on the new master (the
    count carried over: remaining 0) and the fourth refused; a revoke still bites."""
    _limit_then_revoke(llm, bob_client, before=2, between=lambda: _sentinel_failover(on_sentinel))
