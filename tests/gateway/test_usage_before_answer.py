"""The usage entry leaves for Redis before the answer leaves for the client, and the
client does not wait for Redis's reply to it (gateway/usage.py ``write_started``): one
Redis round trip less on every answered call, nothing less durable.

A proxy in front of the real Redis holds every reply back a second: a call then waits
for one held reply (its limits, which must be decided before the upstream is called),
not two. The order of the two writes is checked in the gateway's own process."""

from __future__ import annotations

import re
import time

import pytest
import redis

from audit.models import UsageRecord
from inferia.store import keys
from tests.gateway.conftest import flush_usage, usage_rows, wait_for
from tests.redis_proxy import SlowReplies

DELAY = 1.0
CHAT = [{"role": "user", "content": "hi"}]


@pytest.fixture
def slow_replies(on_redis, settings):
    match = re.match(r"^redis://([^:/]+):(\d+)(/\d+)?$", on_redis)
    if not match:
        pytest.skip("needs a plain redis://host:port/db REDIS_URL")
    proxy = SlowReplies(match.group(1), int(match.group(2)), delay=DELAY)
    settings.INFERIA_GATEWAY_REDIS_TIMEOUT = 5.0
    yield f"redis://127.0.0.1:{proxy.port}{match.group(3) or ''}"
    settings.REDIS_URL = on_redis
    proxy.close()


@pytest.mark.redis
def test_the_entry_is_in_redis_when_the_answer_arrives_and_the_answer_did_not_wait(
    on_redis, llm, slow_replies, settings
):
    direct = redis.Redis.from_url(on_redis)
    key = llm.key()
    first = llm.post("/chat/completions", key, {"model": "openai-main/gpt-4o", "messages": CHAT})
    assert first.status_code == 200, first.text
    settings.REDIS_URL = slow_replies
    # Warm: the principal cached and the gateway's connection through the proxy open.
    llm.post("/chat/completions", key, {"model": "openai-main/gpt-4o", "messages": CHAT})
    wait_for(lambda: direct.xlen(keys.USAGE_STREAM) == 2, what="the warm-up entries")
    time.sleep(DELAY + 0.2)  # the proxy holds replies in turn: let the warm-up's pass

    started = time.monotonic()
    response = llm.post("/chat/completions", key, {"model": "openai-main/gpt-4o", "messages": CHAT})
    elapsed = time.monotonic() - started

    assert response.status_code == 200, response.text
    # One held reply (the limits), not two: the settlement's reply came after the answer.
    assert DELAY <= elapsed < 2 * DELAY - 0.2, elapsed
    wait_for(lambda: direct.xlen(keys.USAGE_STREAM) == 3, what="the call's entry")
    flush_usage()
    (row,) = usage_rows(1, request_id=response.headers["X-Request-ID"])
    assert row.status_code == 200


@pytest.mark.redis
def test_the_entry_is_written_to_redis_before_the_answer_is_written(on_redis, llm, monkeypatch):
    """The order of the writes themselves, seen in the gateway's process: the XADD's
    bytes go to Redis's connection before the answer's go to the client's."""
    from gateway import app
    from inferia.store import client

    events: list[str] = []
    write, send_json = client.Connection._write, app._send_json

    def spied_write(self, protocol, commands):
        events.extend(str(command[0]) for command in commands)
        return write(self, protocol, commands)

    async def spied_send_json(send, call, status, payload, extra=None):
        events.append(f"answer {status}")
        await send_json(send, call, status, payload, extra)

    key = llm.key()
    llm.post("/chat/completions", key, {"model": "openai-main/gpt-4o", "messages": CHAT})
    monkeypatch.setattr(client.Connection, "_write", spied_write)
    monkeypatch.setattr(app, "_send_json", spied_send_json)
    response = llm.post("/chat/completions", key, {"model": "openai-main/gpt-4o", "messages": CHAT})
    assert response.status_code == 200, response.text
    assert "XADD" in events and "answer 200" in events, events
    assert events.index("XADD") < events.index("answer 200"), events


@pytest.mark.redis
def test_when_redis_refuses_the_entry_after_the_answer_it_still_lands_in_the_database(
    on_redis, llm
):
    """The stream refuses the append (here: the stream key holds another type) after the
    answer is out: the record goes to the database, as when the round trip ran first."""
    direct = redis.Redis.from_url(on_redis)
    key = llm.key()
    llm.post("/chat/completions", key, {"model": "openai-main/gpt-4o", "messages": CHAT})
    flush_usage()
    direct.delete(keys.USAGE_STREAM)
    direct.set(keys.USAGE_STREAM, "not a stream")
    try:
        response = llm.post(
            "/chat/completions", key, {"model": "openai-main/gpt-4o", "messages": CHAT}
        )
        assert response.status_code == 200, response.text
        rows = wait_for(
            lambda: list(UsageRecord.objects.filter(request_id=response.headers["X-Request-ID"])),
            what="the record in the database",
        )
        assert [row.status_code for row in rows] == [200]
    finally:
        direct.delete(keys.USAGE_STREAM)
