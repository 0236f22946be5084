"""``audit.usage_ingest.record_usage``: the one writer of a gateway call's records.

A call's usage record holds the metering (tokens, cost, latency, endpoint, provider
account, key); its audit record the accountability (who, which key, action, target
model, outcome, status, client IP, request id, flags) and the link ``usage_id``.
Readers show the numbers through the link; records written before the split keep
theirs and still verify."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from audit import chain
from audit.models import Alert, AuditRecord, Payload, UsageDeadLetter, UsageRecord
from audit.usage_ingest import record_usage
from tests.audit.test_chain import _tamper
from tests.gateway.conftest import flush_usage

METERING = {
    "latency_ms": 812.5,
    "provider_account": "openai-main",
    "prompt_tokens": 11,
    "completion_tokens": 7,
}
REPOINT = (
    "UPDATE audit_auditrecord"
    ' SET data = \'{"usage_id": "00000000-0000-4000-8000-000000000000"}\' WHERE id = %s'
)


def _entry(cast, **extra) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "created_at": 1.7e9,
        "org_id": str(cast.acme.pk),
        "request_id": "req-1",
        "user_id": str(cast.bob.pk),
        "actor_label": "bob via ik_abc",
        "key_prefix": "ik_abc",
        "endpoint": "chat",
        "model": "openai-main/gpt-4o",
        "status_code": 200,
        "error_code": "",
        "cost": 0.0001,
        "upstream_latency_ms": 800.0,
        "client_ip": "203.0.113.9",
        **METERING,
        **extra,
    }


def _old_style_audit(cast, entry: dict) -> AuditRecord:
    """An audit record of a call as the gateway wrote it before the split: the
    numbers in its own columns and in ``data`` too."""
    (record,) = chain.append(
        [
            AuditRecord(
                created_at=_at(entry),
                latency_ms=entry["latency_ms"],
                model=entry["model"],
                provider_account=entry["provider_account"],
                prompt_tokens=entry["prompt_tokens"],
                completion_tokens=entry["completion_tokens"],
                org_id=cast.acme.pk,
                actor_user_id=cast.bob.pk,
                actor_label=entry["actor_label"],
                action="inference:run",
                outcome="success",
                status_code=200,
                target_type="model",
                target_id=entry["model"],
                client_ip=entry["client_ip"],
                request_id=entry["request_id"],
                data={
                    "usage_id": entry["id"],
                    "endpoint": "chat",
                    "key_prefix": entry["key_prefix"],
                    "provider_account": entry["provider_account"],
                    "prompt_tokens": entry["prompt_tokens"],
                    "completion_tokens": entry["completion_tokens"],
                    "latency_ms": entry["latency_ms"],
                    "error_code": "",
                },
            )
        ]
    )
    return record


def _at(entry: dict) -> datetime:
    return datetime.fromtimestamp(entry["created_at"], tz=UTC)


def test_each_entry_leaves_one_usage_record_one_audit_record_and_its_payload(cast):
    entries = [
        _entry(cast, payload="sealed-1"),
        _entry(cast, streamed=True, degraded="allowed", usage_estimated=True),
    ]
    result = record_usage([("1-0", entries[0]), ("2-0", json.dumps(entries[1]).encode())])
    assert (result.written, result.dead) == (2, [])
    for entry in entries:
        usage = UsageRecord.objects.get(pk=entry["id"])
        audit = AuditRecord.objects.get(data__usage_id=entry["id"])
        assert (usage.prompt_tokens, usage.completion_tokens, usage.cost) == (11, 7, 0.0001)
        assert (usage.latency_ms, usage.provider_account, usage.endpoint) == (
            812.5,
            "openai-main",
            "chat",
        )
        assert (audit.org_id, audit.actor_user_id, audit.actor_label) == (
            cast.acme.pk,
            cast.bob.pk,
            "bob via ik_abc",
        )
        assert (audit.outcome, audit.status_code, audit.model, audit.target_id) == (
            "success",
            200,
            "openai-main/gpt-4o",
            "openai-main/gpt-4o",
        )
        assert (audit.client_ip, audit.request_id) == ("203.0.113.9", "req-1")
        # Nothing of the metering twice.
        assert (audit.latency_ms, audit.provider_account) == (None, "")
        assert (audit.prompt_tokens, audit.completion_tokens) == (None, None)
        assert audit.metering(usage) == METERING
    first, streamed = (AuditRecord.objects.get(data__usage_id=e["id"]) for e in entries)
    assert first.data == {"usage_id": entries[0]["id"], "key_prefix": "ik_abc"}
    assert streamed.action == "inference:stream"
    assert streamed.data == {
        "usage_id": entries[1]["id"],
        "key_prefix": "ik_abc",
        "degraded": "allowed",
        "usage_estimated": True,
    }
    assert Payload.objects.get().usage_id == uuid.UUID(entries[0]["id"])


def test_an_entry_recorded_twice_is_written_once(cast):
    entry = _entry(cast)
    assert record_usage([("1-0", entry), ("1-1", entry)]).written == 1
    assert record_usage([("1-0", entry)]).written == 0  # redelivered after a crash
    assert UsageRecord.objects.filter(pk=entry["id"]).count() == 1
    assert AuditRecord.objects.filter(data__usage_id=entry["id"]).count() == 1


def test_bad_entries_are_dead_lettered_alone_and_reported_to_the_caller(cast):
    good = _entry(cast)
    refused = _entry(cast, request_id="bad-date", created_at=1e20)
    result = record_usage(
        [
            ("1-0", b"{not json"),
            ("1-1", _entry(cast, prompt_tokens=-1)),
            ("1-2", good),
            ("1-3", refused),
        ]
    )
    assert result.written == 1 and UsageRecord.objects.filter(pk=good["id"]).exists()
    assert [(d.source_id, d.org_id) for d in result.dead] == [
        ("1-0", None),
        ("1-1", str(cast.acme.pk)),
        ("1-3", str(cast.acme.pk)),
    ]
    assert result.dead[0].raw == "{not json"
    assert result.dead[1].reason == "negative prompt_tokens"
    assert result.dead[2].reason == "refused by the database"
    assert UsageDeadLetter.objects.count() == 3
    assert not AuditRecord.objects.filter(request_id="bad-date").exists()
    assert Alert.objects.filter(kind="usage_dead_letter", org=cast.acme).get().data == {"count": 2}
    assert Alert.objects.filter(kind="usage_dead_letter", org__isnull=True).exists()


def test_an_old_style_record_still_verifies_and_keeps_its_numbers(cast, capsys):
    """Written before the split (numbers hashed in its own columns), then new-style
    records on the same chain: the chain verifies; a new-style record's link is
    covered by its hash like any other data."""
    old_entry = _entry(cast)
    UsageRecord.objects.create(  # as it was written then, next to its audit record
        id=old_entry["id"],
        created_at=_at(old_entry),
        org_id=cast.acme.pk,
        request_id="req-1",
        endpoint="chat",
        status_code=200,
        **METERING,
    )
    old = _old_style_audit(cast, old_entry)
    new_entry = _entry(cast, prompt_tokens=3, completion_tokens=4)
    record_usage([("", new_entry)])
    call_command("verify_audit_chain", "--org", "acme")
    assert "ok" in capsys.readouterr().out

    old.refresh_from_db()
    new = AuditRecord.objects.get(data__usage_id=new_entry["id"])
    assert old.seq < new.seq
    # The old record shows its own numbers (hashed); the new one its usage record's.
    linked = UsageRecord.objects.get(pk=old_entry["id"])
    assert old.metering(linked) == METERING
    assert new.metering(UsageRecord.objects.get(pk=new_entry["id"]))["prompt_tokens"] == 3
    # A usage record of another org is never shown through a link.
    other = UsageRecord(pk=uuid.UUID(new_entry["id"]), org_id=cast.globex.pk, prompt_tokens=99)
    assert new.metering(other)["prompt_tokens"] is None

    # Pointing the link at another usage record is a changed record.
    _tamper(REPOINT, new)
    with pytest.raises(CommandError, match=f"seq {new.seq}"):
        call_command("verify_audit_chain", "--org", "acme")


def test_the_audit_log_shows_the_numbers_through_the_link(llm, cast):
    """API (JSON, CSV, JSON lines) and the dashboard page: a call's tokens, latency and
    provider account come from its usage record; an old-style record shows its own."""
    raw = llm.sdk(llm.key()).chat.completions.with_raw_response.create(
        model="openai-main/gpt-4o", messages=[{"role": "user", "content": "Say hello"}]
    )
    flush_usage()
    usage = UsageRecord.objects.get(request_id=raw.headers["X-Request-ID"])
    old = _old_style_audit(cast, _entry(cast, request_id="old-call"))
    expected = {
        usage.request_id: {
            "latency_ms": usage.latency_ms,
            "provider_account": "openai-main",
            "prompt_tokens": 2,
            "completion_tokens": 6,
        },
        "old-call": METERING,
    }
    query = {"action": "inference:run"}
    results = llm.admin.get("/api/v1/orgs/acme/audit-logs", query).json()["results"]
    assert {r["request_id"]: {k: r[k] for k in METERING} for r in results} == expected

    lines = b"".join(
        llm.admin.get(
            "/api/v1/orgs/acme/audit-logs", {**query, "format": "jsonl"}
        ).streaming_content
    ).decode()
    rows = [json.loads(line) for line in lines.splitlines()]
    assert {r["request_id"]: {k: r[k] for k in METERING} for r in rows} == expected

    text = b"".join(
        llm.admin.get("/api/v1/orgs/acme/audit-logs", {**query, "format": "csv"}).streaming_content
    ).decode()
    by_request = {row["request_id"]: row for row in csv.DictReader(io.StringIO(text))}
    assert by_request[usage.request_id]["prompt_tokens"] == "2"
    assert by_request[usage.request_id]["provider_account"] == "openai-main"
    assert float(by_request[usage.request_id]["latency_ms"]) == usage.latency_ms
    assert by_request["old-call"]["completion_tokens"] == "7"

    browser = Client()
    browser.force_login(cast.alice, backend="django.contrib.auth.backends.ModelBackend")
    page = browser.get("/orgs/acme/audit-log?action=inference:run")
    assert page.status_code == 200
    body = page.content.decode()
    assert "<td>2+6</td>" in body and "<td>11+7</td>" in body
    assert old.pk  # listed above as "old-call"
