"""The hash chain of audit records: append under a lock on the chain head, verify in order."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from audit.models import AuditChainHead, AuditRecord

GLOBAL = "global"
HASHED_FIELDS = (
    "id",
    "created_at",
    "org_id",
    "actor_user_id",
    "actor_label",
    "action",
    "outcome",
    "status_code",
    "target_type",
    "target_id",
    "client_ip",
    "user_agent",
    "request_id",
    "latency_ms",
    "model",
    "provider_account",
    "prompt_tokens",
    "completion_tokens",
    "data",
    "seq",
    "prev_hash",
)


def chain_of(org_id) -> str:
    return str(org_id) if org_id else GLOBAL


def content_hash(record: AuditRecord) -> str:
    values = {}
    for name in HASHED_FIELDS:
        value = getattr(record, name)
        values[name] = (
            value.isoformat()
            if hasattr(value, "isoformat")
            else (str(value) if name.endswith("id") and value is not None else value)
        )
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def append(records: Iterable[AuditRecord]) -> list[AuditRecord]:
    """Link and insert records (same transaction as the caller). Locks each chain head."""
    from django.utils import timezone

    records = list(records)
    by_chain: dict[str, list[AuditRecord]] = {}
    for record in records:
        if record.created_at is None:
            record.created_at = timezone.now()
        by_chain.setdefault(chain_of(record.org_id), []).append(record)
    with transaction.atomic():
        for chain in sorted(by_chain):
            head, _ = AuditChainHead.objects.select_for_update().get_or_create(chain=chain)
            for record in by_chain[chain]:
                head.seq += 1
                record.seq = head.seq
                record.prev_hash = head.last_hash
                record.hash = content_hash(record)
                head.last_hash = record.hash
            head.save(update_fields=["seq", "last_hash"])
        AuditRecord.objects.bulk_create(records)
    return records


@dataclass(frozen=True)
class ChainBreak:
    chain: str
    seq: int
    record_id: str
    reason: str


def verify(chain: str, *, batch: int = 2000) -> tuple[int, ChainBreak | None]:
    """Walk one chain in order; returns (records checked, first break or None).

    Both ends are checked against the stored chain head: the first record must
    follow the last one retention pruned (or be seq 1), the last must be the head's
    seq and hash, so deleting the newest or the oldest records is detected too.
    """
    head = AuditChainHead.objects.filter(chain=chain).first()
    checked, broken, first, last = _walk(chain, batch)
    if broken is not None:
        return checked, broken
    expected_first = (head.pruned_seq if head else 0) + 1
    expected_prev = head.pruned_hash if head else ""
    if first is not None and (first.seq != expected_first or first.prev_hash != expected_prev):
        return checked, ChainBreak(
            chain, first.seq, str(first.id), f"records before seq {first.seq} are missing"
        )
    head_seq = head.seq if head else 0
    if last is None and head_seq > (head.pruned_seq if head else 0):
        return checked, ChainBreak(chain, head_seq, "", "every record of the chain is missing")
    if last is not None and (last.seq != head_seq or last.hash != (head.last_hash if head else "")):
        return checked, ChainBreak(
            chain, last.seq, str(last.id), f"records after seq {last.seq} are missing"
        )
    return checked, None


def _walk(chain: str, batch: int):
    queryset = AuditRecord.objects.order_by("seq")
    queryset = (
        queryset.filter(org__isnull=True)
        if chain == GLOBAL
        else queryset.filter(org_id=uuid.UUID(chain))
    )
    checked, previous_hash, previous_seq = 0, None, None
    first = last = None
    for record in queryset.iterator(chunk_size=batch):
        if previous_seq is not None and record.seq != previous_seq + 1:
            return (
                checked,
                ChainBreak(
                    chain, record.seq, str(record.id), f"missing record before seq {record.seq}"
                ),
                first,
                last,
            )
        if previous_hash is not None and record.prev_hash != previous_hash:
            return (
                checked,
                ChainBreak(chain, record.seq, str(record.id), "previous hash does not match"),
                first,
                last,
            )
        if content_hash(record) != record.hash:
            return (
                checked,
                ChainBreak(chain, record.seq, str(record.id), "content was changed"),
                first,
                last,
            )
        previous_hash, previous_seq = record.hash, record.seq
        first = first or record
        last = record
        checked += 1
    return checked, None, first, last
