"""Append-only audit records."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditRecordError(RuntimeError):
    """Audit records are append-only."""


# What a gateway call's usage record holds and its audit record shows through the link.
METERING = ("latency_ms", "provider_account", "prompt_tokens", "completion_tokens")


class Outcome(models.TextChoices):
    SUCCESS = "success"
    FAILURE = "failure"
    ALLOWED = "allowed"
    DENIED = "denied"


class AuditRecord(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Set before hashing (never auto_now_add, which would overwrite the hashed value).
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Not OrgOwnedModel: login failures and other pre-tenant events have no org.
    # No database constraint: records outlive their org and actor unchanged
    # (their ids are part of the hashed content).
    org = models.ForeignKey(
        "orgs.Organization",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    # The latency of an API request. A gateway call's latency, provider account and
    # tokens are in its usage record (``data["usage_id"]`` links it; ``metering``);
    # calls recorded before that split carry them here too (hashed, kept as they are).
    latency_ms = models.FloatField(null=True, blank=True)
    model = models.CharField(max_length=260, blank=True, db_index=True)  # the target model
    provider_account = models.CharField(max_length=50, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    # Tamper evidence: each record's hash covers its content and the previous
    # record's hash in the same chain (one chain per org, one for org-less events).
    seq = models.PositiveBigIntegerField(default=0)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)
    # Not a column: the ``METERING`` values, set by ``selectors.with_usage`` for readers.
    metered: dict[str, Any]

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["org", "-created_at"]),
            models.Index(fields=["org", "seq"]),
            models.Index(fields=["org", "action"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.outcome}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AuditRecordError("audit records cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditRecordError("audit records cannot be deleted")

    @property
    def usage_id(self) -> str | None:
        """The id of the gateway call's usage record (the link), or None."""
        return usage_link(self.data)

    def metering_inputs(self) -> dict[str, Any]:
        """What ``metering_of`` reads of this record."""
        return {name: getattr(self, name) for name in (*METERING, "org_id", "data")}

    def metering(self, usage: UsageRecord | None) -> dict[str, Any]:
        """``metering_of`` this record, with ``usage`` the record its link names."""
        linked = (
            None
            if usage is None
            else {
                "id": usage.pk,
                "org_id": usage.org_id,
                **{name: getattr(usage, name) for name in METERING},
            }
        )
        return metering_of(self.metering_inputs(), linked)


def usage_link(data: Any) -> str | None:
    """The usage record id an audit record's ``data`` links (``usage_id``), or None."""
    value = data.get("usage_id") if isinstance(data, dict) else None
    return str(value) if value else None


def metering_of(record: Mapping[str, Any], usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """An audit record's ``METERING`` numbers from its values (those columns, ``org_id``
    and ``data``): its linked usage record's (``usage``: ``id``, ``org_id`` and the same
    columns) when the record carries none itself, as gateway calls do since audit and
    usage records hold different facts; else its own (older calls, API requests)."""
    if (
        usage is not None
        and record["prompt_tokens"] is None
        and str(usage["id"]) == usage_link(record["data"])
        and usage["org_id"] == record["org_id"]
    ):
        return {name: usage[name] for name in METERING}
    return {name: record[name] for name in METERING}


class AuditChainHead(models.Model):
    """The last link of one audit chain; locked while a record is appended."""

    chain = models.CharField(max_length=64, primary_key=True)  # org id, or "global"
    seq = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, blank=True)
    # The last record retention removed (0 and "" when none): the first remaining
    # record must follow it, so deleting the oldest records is detected too.
    pruned_seq = models.PositiveBigIntegerField(default=0)
    pruned_hash = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"{self.chain}@{self.seq}"


class UsageRecord(models.Model):
    """One gateway call: who, which model, tokens, cost, latency, outcome.

    Written by the gateway's durable writer (a Redis stream drained by a worker,
    or the database directly when embedded); append-only like audit records.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(db_index=True)
    org = models.ForeignKey(
        "orgs.Organization",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    # The client's X-Request-ID (or the server's id when it sent none): data only,
    # never a key. The record's own id is generated by the gateway for each call.
    request_id = models.CharField(max_length=128, db_index=True)
    user_id = models.UUIDField(null=True, blank=True)
    service_account_id = models.UUIDField(null=True, blank=True)
    key_prefix = models.CharField(max_length=32, blank=True)
    endpoint = models.CharField(max_length=32)
    model = models.CharField(max_length=260, blank=True)
    provider_account = models.CharField(max_length=50, blank=True)
    status_code = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=32, blank=True)
    streamed = models.BooleanField(default=False)
    # Answered from the org's response cache: no upstream call, zero tokens and cost.
    cache_hit = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.FloatField(default=0.0)
    latency_ms = models.FloatField(default=0.0)
    upstream_latency_ms = models.FloatField(default=0.0)
    client_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["org", "-created_at"]),
            models.Index(fields=["org", "model"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.model} {self.status_code}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AuditRecordError("usage records cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditRecordError("usage records cannot be deleted")


class UsageRollup(models.Model):
    """Usage of one period (hour or day) per org, model, key and principal.

    Rebuilt idempotently from usage records; the usage API groups these rows
    by model, key, user or team.
    """

    class Period(models.TextChoices):
        HOUR = "hour"
        DAY = "day"

    org_id = models.UUIDField(db_index=True)
    period = models.CharField(max_length=8, choices=Period.choices)
    period_start = models.DateTimeField()
    model = models.CharField(max_length=260, blank=True)
    key_prefix = models.CharField(max_length=32, blank=True)
    user_id = models.UUIDField(null=True, blank=True)
    service_account_id = models.UUIDField(null=True, blank=True)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    denied = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.FloatField(default=0.0)
    latency_p50_ms = models.FloatField(default=0.0)
    latency_p95_ms = models.FloatField(default=0.0)
    # Requests per fixed latency bucket (``audit.latency``): percentiles of several
    # rows come from their summed histograms, never from their percentiles.
    latency_histogram = models.JSONField(default=list, blank=True)

    class Meta:
        indexes = [models.Index(fields=["org_id", "period", "period_start"])]

    def __str__(self) -> str:
        return f"{self.period} {self.period_start:%Y-%m-%d %H:00} {self.model}"


class Alert(models.Model):
    """Something an owner should look at: a usage spike, a burst of failures, a new IP range."""

    class Kind(models.TextChoices):
        TOKEN_SPIKE = "token_spike"  # noqa: S105 - an alert kind, not a password
        FAILED_LOGINS = "failed_logins"
        DENIALS = "denials"
        NEW_IP_RANGE = "new_ip_range"
        GATEWAY_DEGRADED = "gateway_degraded"
        USAGE_DEAD_LETTER = "usage_dead_letter"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # None: a platform alert for operators (e.g. a usage entry naming no known org).
    org = models.ForeignKey(
        "orgs.Organization",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    message = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)
    # One alert per condition and period: reruns of the check do not repeat it.
    dedupe_key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class Payload(models.Model):
    """A gateway call's prompt and answer, kept only when the org turned payload
    logging on; envelope-encrypted and bound to its org and request id."""

    org_id = models.UUIDField(db_index=True)
    # The usage record's id (server-generated, unique); the client's request id is data.
    usage_id = models.UUIDField(null=True, blank=True, unique=True)
    request_id = models.CharField(max_length=128, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    encrypted = models.TextField()

    def __str__(self) -> str:
        return f"payload {self.usage_id or self.request_id}"

    def context(self) -> str:
        return f"audit.payload:{self.org_id}:{self.usage_id or self.request_id}"


class UsageDeadLetter(models.Model):
    """A usage stream entry that could not be recorded (malformed, or refused by the
    database): kept here and in the Redis list ``inferia:usage:dead`` for an operator,
    so it never blocks the entries behind it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    org_id = models.UUIDField(null=True, blank=True)
    stream_id = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=300)
    raw = models.TextField()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"dead usage entry {self.stream_id or self.pk}: {self.reason}"
