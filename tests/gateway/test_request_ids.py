"""The client's X-Request-ID is echoed and stored as data; records are keyed by an id
the gateway generates, so calls sharing a request id (in one org or two) lose nothing.
A usage entry that cannot be recorded goes to the dead letters with an alert and never
holds back the entries around it."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from audit.models import Alert, AuditRecord, UsageDeadLetter, UsageRecord
from gateway import usage
from inferia.store import keys
from tests.conftest import redis_command
from tests.gateway.conftest import flush_usage
from tests.keys.conftest import mint

CHAT = [{"role": "user", "content": "hi"}]
BODY = {"model": "openai-main/gpt-4o", "messages": CHAT}


def test_parallel_calls_with_one_request_id_each_keep_their_records(backend, llm):
    key = llm.key()
    llm.sdk(key).models.list()
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(
            pool.map(
                lambda _i: llm.post("/chat/completions", key, BODY, **{"X-Request-ID": "dup-1"}),
                range(4),
            )
        )
    assert [r.status_code for r in responses] == [200] * 4
    assert {r.headers["X-Request-ID"] for r in responses} == {"dup-1"}
    flush_usage()
    records = list(UsageRecord.objects.filter(request_id="dup-1"))
    audits = list(AuditRecord.objects.filter(request_id="dup-1", action="inference:run"))
    assert len(records) == 4 and len(audits) == 4
    assert {a.data["usage_id"] for a in audits} == {str(r.id) for r in records}


def test_two_orgs_sending_the_same_request_id_both_keep_their_records(
    backend, llm, cast, charlie_client
):
    port = llm.upstream.url.rsplit(":", 1)[1]
    response = charlie_client.patch(
        "/api/v1/orgs/globex",
        {"settings": {"allowed_private_hosts": [f"127.0.0.1:{port}"]}},
        format="json",
    )
    assert response.status_code == 200, response.content
    response = charlie_client.post(
        "/api/v1/orgs/globex/provider-accounts",
        {
            "name": "globex-ai",
            "provider_type": "openai",
            "base_url": f"{llm.upstream.url}/v1",
            "models": [{"name": "gpt-4o"}],
            "secret": "sk-globex-secret-0123456789",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    response = charlie_client.put(
        "/api/v1/orgs/globex/access-rules.yaml",
        "authz_rules:\n  - models: ['globex-ai/*']\n    users: [charlie]\n",
        content_type="application/yaml",
    )
    assert response.status_code == 200, response.content
    globex_key = mint(charlie_client, org="globex", permissions=["inference:run", "model:read"])[
        "key"
    ]
    shared = {"X-Request-ID": "same-everywhere"}
    acme = llm.post("/chat/completions", llm.key(), BODY, **shared)
    globex = llm.post(
        "/chat/completions", globex_key, {**BODY, "model": "globex-ai/gpt-4o"}, **shared
    )
    assert (acme.status_code, globex.status_code) == (200, 200), globex.text
    flush_usage()
    records = UsageRecord.objects.filter(request_id="same-everywhere")
    assert sorted(str(r.org_id) for r in records) == sorted(
        [str(cast.acme.pk), str(cast.globex.pk)]
    )
    audits = AuditRecord.objects.filter(request_id="same-everywhere", action="inference:run")
    assert sorted(str(a.org_id) for a in audits) == sorted([str(cast.acme.pk), str(cast.globex.pk)])


def _entry(cast, request_id: str, **extra) -> dict:
    return {
        "created_at": 1.7e9,
        "org_id": str(cast.acme.pk),
        "request_id": request_id,
        "endpoint": "chat",
        "model": "openai-main/gpt-4o",
        "status_code": 200,
        **extra,
    }


def test_a_bad_stream_entry_is_dead_lettered_and_the_batch_goes_on(on_redis, llm, cast):
    """Good, malformed JSON, bad field types, a value the database refuses, good:
    both good ones are recorded, the three bad ones are in the dead letters (Redis list
    and database) with an alert, and nothing stays pending."""
    redis_command("DEL", keys.DEAD_LETTERS)
    first = llm.post("/chat/completions", llm.key(), BODY)
    redis_command("XADD", keys.USAGE_STREAM, "*", "entry", b"{not json")
    bad_status = json.dumps(_entry(cast, "bad-status", status_code="abc"))
    redis_command("XADD", keys.USAGE_STREAM, "*", "entry", bad_status)
    # Well-formed, but no database can store a date in the year 3e12.
    bad_date = json.dumps(_entry(cast, "bad-date", created_at=1e20))
    redis_command("XADD", keys.USAGE_STREAM, "*", "entry", bad_date)
    last = llm.post("/chat/completions", llm.key(), BODY)
    flush_usage()
    for response in (first, last):
        assert UsageRecord.objects.filter(request_id=response.headers["X-Request-ID"]).exists()
    dead = [json.loads(item) for item in redis_command("LRANGE", keys.DEAD_LETTERS, 0, -1)]
    assert len(dead) == 3, dead
    assert "{not json" in dead[0]["entry"]
    assert UsageDeadLetter.objects.count() == 3
    assert Alert.objects.filter(kind="usage_dead_letter", org=cast.acme).exists()
    assert Alert.objects.filter(kind="usage_dead_letter", org__isnull=True).exists()  # no org
    assert redis_command("XPENDING", keys.USAGE_STREAM, keys.USAGE_GROUP)[0] == 0
    assert usage.ingest(consumer="tests") == 0  # nothing left to retry
    assert UsageDeadLetter.objects.count() == 3
    redis_command("DEL", keys.DEAD_LETTERS)


def test_a_bad_entry_written_to_the_database_store_is_dead_lettered(settings, llm, cast):
    """Embedded (no Redis): the writer's bad entry is set aside with an alert; the
    calls around it are recorded."""
    settings.REDIS_URL = ""
    first = llm.post("/chat/completions", llm.key(), BODY)
    asyncio.run(usage.write(_entry(cast, "bad-db", created_at=1e20), []))
    last = llm.post("/chat/completions", llm.key(), BODY)
    for response in (first, last):
        assert UsageRecord.objects.filter(request_id=response.headers["X-Request-ID"]).exists()
    assert not UsageRecord.objects.filter(request_id="bad-db").exists()
    letter = UsageDeadLetter.objects.get()
    assert "bad-db" in letter.raw and str(letter.org_id) == str(cast.acme.pk)
    assert Alert.objects.filter(kind="usage_dead_letter", org=cast.acme).exists()


@pytest.mark.parametrize("field", ["created_at", "status_code", "endpoint"])
def test_entries_missing_a_required_field_are_dead_lettered(settings, llm, cast, field):
    settings.REDIS_URL = ""
    entry = _entry(cast, f"missing-{field}")
    del entry[field]
    asyncio.run(usage.write(entry, []))
    assert not UsageRecord.objects.filter(request_id=f"missing-{field}").exists()
    assert field in UsageDeadLetter.objects.get().reason
