"""Durable usage records: once a response is sent, its record survives a crash.

With Redis the record is appended to a stream in the same pipeline that
settles the reserved tokens, and the ``usage_ingest`` task moves batches into
the database (a consumer group with acknowledgements: nothing is lost when a
worker dies mid-batch). Embedded, the row is written to the database directly.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import hiredis
import orjson
import redis
from django.db import IntegrityError, transaction

from audit import chain
from audit.models import AuditRecord, Payload, UsageRecord
from gateway import aioredis, ratelimit, redis_client
from gateway.orm import orm
from orgs.models import Organization, User

logger = logging.getLogger(__name__)
STREAM = "inferia:usage"
GROUP = "ingest"
FIELDS = {f.name for f in UsageRecord._meta.get_fields()} - {"id", "org"} | {"org_id"}


def _encoded(entry: dict[str, Any]) -> bytes:
    return orjson.dumps(entry, default=str)


async def write(entry: dict[str, Any], adjustments: list[tuple[str, int]]) -> None:
    """Settle reservations and persist the usage entry before the response goes out.

    With Redis: one round trip on the event loop (the settlements and the stream
    append in one pipeline). When Redis fails here (after the upstream answered)
    the record goes straight to the database instead of being lost; the
    reservations stay held until their window ends, which errs on the safe side.
    Embedded: the counters and the row in the database.
    """
    if redis_client.enabled():
        commands = [
            *ratelimit.settle_commands(adjustments),
            ("XADD", STREAM, "*", "entry", _encoded(entry)),
        ]
        try:
            replies = await aioredis.client().pipeline(commands)
        except aioredis.RedisUnavailable:
            replies = None
        if replies is not None and not isinstance(replies[-1], hiredis.ReplyError):
            return
        logger.warning(
            "usage stream unavailable; record %s written to the database", entry.get("request_id")
        )
        await orm(_persist, thread_sensitive=False)([entry])
        return
    await orm(_write_db, thread_sensitive=False)(entry, adjustments)


def _write_db(entry: dict[str, Any], adjustments: list[tuple[str, int]]) -> None:
    ratelimit.settle_db(adjustments)
    _persist([entry])


def _audit_for(entry: dict[str, Any]) -> AuditRecord:
    return AuditRecord(
        created_at=datetime.fromtimestamp(float(entry["created_at"]), tz=UTC),
        latency_ms=entry.get("latency_ms"),
        model=entry.get("model", "")[:260],
        provider_account=entry.get("provider_account", ""),
        prompt_tokens=entry.get("prompt_tokens", 0),
        completion_tokens=entry.get("completion_tokens", 0),
        org_id=entry.get("org_id"),
        actor_user_id=entry.get("audit_user_id", entry.get("user_id")),
        actor_label=entry.get("actor_label", "")[:200],
        action="inference:stream" if entry.get("streamed") else "inference:run",
        outcome="success"
        if int(entry["status_code"]) < 400
        else "denied"
        if int(entry["status_code"]) in (401, 403, 404, 429)
        else "failure",
        status_code=entry["status_code"],
        target_type="model",
        target_id=entry.get("model", "")[:100],
        client_ip=entry.get("client_ip"),
        request_id=entry["request_id"],
        data={
            "endpoint": entry.get("endpoint"),
            "key_prefix": entry.get("key_prefix"),
            "provider_account": entry.get("provider_account"),
            "prompt_tokens": entry.get("prompt_tokens", 0),
            "completion_tokens": entry.get("completion_tokens", 0),
            "latency_ms": entry.get("latency_ms"),
            "error_code": entry.get("error_code", ""),
            **({"degraded": entry["degraded"]} if entry.get("degraded") else {}),
            **({"usage_estimated": True} if entry.get("usage_estimated") else {}),
        },
    )


def _drop_dangling_references(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep entries whose org or user is gone without the link (the columns are SET_NULL)."""
    org_ids = {str(e["org_id"]) for e in entries if e.get("org_id")}
    user_ids = {str(e["user_id"]) for e in entries if e.get("user_id")}
    # Cross-org by design: the ingest worker serves every org.
    known_orgs = {
        str(pk) for pk in Organization.objects.filter(pk__in=org_ids).values_list("pk", flat=True)
    }
    known_users = {
        str(pk) for pk in User.objects.filter(pk__in=user_ids).values_list("pk", flat=True)
    }
    cleaned = []
    for entry in entries:
        entry = dict(entry)
        if entry.get("org_id") and str(entry["org_id"]) not in known_orgs:
            entry["org_id"] = None
        if entry.get("user_id") and str(entry["user_id"]) not in known_users:
            entry["audit_user_id"] = None
        cleaned.append(entry)
    return cleaned


def _persist(entries: list[dict[str, Any]]) -> int:
    try:
        return _insert(entries)
    except IntegrityError:
        # An org or user deleted while its entries waited in the stream: without
        # this, one such entry would fail its whole batch on every ingest and hold
        # every other record back.
        return _insert(_drop_dangling_references(entries))


def _insert(entries: list[dict[str, Any]]) -> int:
    rows = []
    for entry in entries:
        values = {k: v for k, v in entry.items() if k in FIELDS}
        values["created_at"] = datetime.fromtimestamp(float(entry["created_at"]), tz=UTC)
        rows.append(UsageRecord(**values))
    with transaction.atomic():
        existing = set(
            UsageRecord.objects.filter(request_id__in=[r.request_id for r in rows]).values_list(
                "request_id", flat=True
            )
        )
        fresh = [row for row in rows if row.request_id not in existing]
        UsageRecord.objects.bulk_create(fresh)
        chain.append(
            [_audit_for(entry) for entry in entries if entry["request_id"] not in existing]
        )
        Payload.objects.bulk_create(
            [
                Payload(
                    org_id=entry["org_id"],
                    request_id=entry["request_id"],
                    encrypted=entry["payload"],
                    created_at=datetime.fromtimestamp(float(entry["created_at"]), tz=UTC),
                )
                for entry in entries
                if entry.get("payload")
                and entry.get("org_id")
                and entry["request_id"] not in existing
            ]
        )
    return len(fresh)


def ingest(*, consumer: str = "worker", batch: int = 500, block_ms: int = 0) -> int:
    """Move stream entries into the database; idempotent (request ids are unique)."""
    if not redis_client.enabled():
        return 0
    r = redis_client.client()
    try:
        r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError:
        pass  # the group exists
    moved = 0
    # First entries another consumer read but never acknowledged (it died), then new ones.
    _next, claimed, *_ = r.xautoclaim(
        STREAM, GROUP, consumer, min_idle_time=30_000, start_id="0-0", count=batch
    )
    for messages in (claimed, None):
        if messages is None:
            response = r.xreadgroup(
                GROUP, consumer, {STREAM: ">"}, count=batch, block=block_ms or None
            )
            messages = response[0][1] if response else []
        if not messages:
            continue
        ids = [message_id for message_id, _fields in messages]
        entries = [json.loads(fields[b"entry"]) for _id, fields in messages if fields]
        try:
            moved += _persist(entries)
        except IntegrityError:
            logger.exception("usage ingest batch failed; it stays pending")
            continue
        r.xack(STREAM, GROUP, *ids)
        r.xdel(STREAM, *ids)
    return moved
