"""With warm caches a gateway request touches no database: key, principal, rules,
routes and the upstream secret come from the process, limits and the usage record
from Redis. Proven by making every database connection of the process (the gateway's
server thread included) refuse to work while the calls run."""

from __future__ import annotations

import contextlib

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from audit.models import UsageRecord
from tests.gateway.conftest import flush_usage

CHAT = [{"role": "user", "content": "hi"}]


@contextlib.contextmanager
def no_database():
    touched: list[str] = []
    original = BaseDatabaseWrapper._cursor

    def refuse(self, *args, **kwargs):
        touched.append(self.alias)
        raise DatabaseError("the gateway's hot path touched the database")

    BaseDatabaseWrapper._cursor = refuse
    try:
        yield touched
    finally:
        BaseDatabaseWrapper._cursor = original


def test_a_warm_request_touches_no_database(on_redis, llm):
    client = llm.sdk(llm.key())
    client.chat.completions.create(model="openai-main/gpt-4o", messages=CHAT)  # warms every cache
    client.models.list()
    with no_database() as touched:
        answers = [
            client.chat.completions.with_raw_response.create(
                model="openai-main/gpt-4o", messages=CHAT
            )
            for _ in range(3)
        ]
        chunks = list(
            client.chat.completions.create(model="openai-main/gpt-4o", messages=CHAT, stream=True)
        )
        listed = client.models.list()
    assert touched == []
    assert [a.http_response.status_code for a in answers] == [200, 200, 200]
    assert chunks and "openai-main/gpt-4o" in [m.id for m in listed.data]
    # Nothing was lost: the records waited in the Redis stream for the worker.
    flush_usage()
    ids = [a.headers["X-Request-ID"] for a in answers]
    assert UsageRecord.objects.filter(request_id__in=ids).count() == 3


def test_the_guard_sees_a_database_touch(on_redis, llm):
    """The check can fail: a new key (a cold principal) needs the database."""
    key = llm.key()
    with no_database() as touched:
        response = llm.post(
            "/chat/completions", key, {"model": "openai-main/gpt-4o", "messages": CHAT}
        )
    assert response.status_code == 503
    assert touched
