"""Tenant-scoped reads of audit/ (AuditRecord is not OrgOwnedModel: filter on the active org)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from audit.models import AuditRecord, UsageRollup
from orgs.scoping import current_org


def member_auth_events(org_id) -> Q:
    """Org-less authentication events (failed logins, lockouts, 2FA changes, refresh
    reuse...) of the org's *current* members: their account, or a login attempt typed
    with their username. Events of people outside the org never match."""
    from orgs.models import Membership

    members = Membership.all_orgs.filter(org_id=org_id)  # one org, by its id
    return Q(org__isnull=True, action__startswith="auth:") & (
        Q(actor_user_id__in=members.values("user_id"))
        | Q(actor_label__in=members.values("user__username"))
    )


def audit_record_list(
    *,
    actor: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    target: str | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditRecord]:
    org_id = current_org().pk
    # The org's own records plus the auth events of its members (recorded without an
    # org: a login is not made in one org).
    records = AuditRecord.objects.filter(Q(org_id=org_id) | member_auth_events(org_id))
    if actor:
        records = records.filter(Q(actor_label=actor) | Q(actor_label__startswith=f"{actor} via "))
    if action:
        records = (
            records.filter(action__startswith=action[:-1])
            if action.endswith("*")
            else records.filter(action=action)
        )
    if outcome:
        records = records.filter(outcome=outcome)
    if target:
        records = records.filter(target_id=target)
    if model:
        records = records.filter(model=model)
    if since:
        records = records.filter(created_at__gte=since)
    if until:
        records = records.filter(created_at__lt=until)
    # Several chains (the org's and the org-less one): time orders them, not seq.
    return records.order_by("-created_at", "-id")


def usage_numbers(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``METERING`` numbers of audit records given as values (those columns,
    ``org_id`` and ``data``), a gateway call's read through the link to its usage
    record (``audit.models.metering_of``). One query for all of them."""
    from audit.models import METERING, UsageRecord, metering_of, usage_link

    # Only records that carry no numbers of their own need theirs.
    ids = {
        link
        for record in records
        if record["prompt_tokens"] is None and (link := usage_link(record["data"]))
    }
    # Cross-org by id: a record only takes a usage record of its own org (metering_of).
    usages = (
        {
            str(usage["id"]): usage
            for usage in UsageRecord.objects.filter(pk__in=ids).values("id", "org_id", *METERING)
        }
        if ids
        else {}
    )
    return [metering_of(record, usages.get(usage_link(record["data"]) or "")) for record in records]


def with_usage(records: Iterable[AuditRecord]) -> list[AuditRecord]:
    """The records, each with ``metered``: its ``usage_numbers``."""
    records = list(records)
    values = [record.metering_inputs() for record in records]
    for record, numbers in zip(records, usage_numbers(values), strict=True):
        record.metered = numbers
    return records


def usage_rollup_list(*, period: str, since: datetime, until: datetime) -> QuerySet[UsageRollup]:
    return UsageRollup.objects.filter(
        org_id=current_org().pk, period=period, period_start__gte=since, period_start__lt=until
    ).order_by("period_start")


def usage_by_day(*, since: datetime) -> list[dict]:
    """Requests, tokens and errors a day from the usage records (oldest first)."""
    from django.db.models import Count, Sum
    from django.db.models.functions import TruncDate

    from audit.models import UsageRecord

    return list(
        UsageRecord.objects.filter(org_id=current_org().pk, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            requests=Count("id"),
            errors=Count("id", filter=Q(status_code__gte=400)),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
        )
        .order_by("day")
    )


def usage_by(field: str, *, since: datetime, limit: int = 8) -> list[dict]:
    """Top ``model`` or ``key_prefix`` values by requests since ``since``."""
    from django.db.models import Count, Sum

    from audit.models import UsageRecord

    if field not in ("model", "key_prefix"):
        raise ValueError(field)
    return list(
        UsageRecord.objects.filter(org_id=current_org().pk, created_at__gte=since)
        .values(field)
        .annotate(requests=Count("id"), tokens=Sum("prompt_tokens") + Sum("completion_tokens"))
        .order_by("-requests")[:limit]
    )


def alert_list(limit: int = 10):
    from audit.models import Alert

    return Alert.objects.filter(org_id=current_org().pk).order_by("-created_at")[:limit]


USAGE_GROUPS = ("model", "key", "user", "team")


def _usage_group_names(rows: list[UsageRollup], group_by: str) -> dict:
    """Display names of the rows' users (``user``) or each user's teams (``team``),
    read through the org's scoped managers: nothing of another org can appear."""
    from orgs.models import Membership, TeamMember

    if group_by == "user":
        ids = {row.user_id for row in rows if row.user_id}
        return dict(
            Membership.objects.filter(user_id__in=ids).values_list("user_id", "user__username")
        )
    if group_by == "team":
        teams: dict = {}
        for user_id, slug in TeamMember.objects.values_list("user_id", "team__slug"):
            teams.setdefault(user_id, []).append(slug)
        return teams
    return {}


def _usage_groups_of(row: UsageRollup, group_by: str, names: dict) -> list[str]:
    if group_by == "model":
        return [row.model or "(none)"]
    if group_by == "key":
        return [row.key_prefix or "(no key)"]
    if group_by == "user":
        if row.user_id is None:
            return ["(service account)" if row.service_account_id else "(unknown)"]
        return [names.get(row.user_id, "(former member)")]
    # team: by the user's current teams; a user in two teams counts in both.
    return names.get(row.user_id) or ["(no team)"]


def usage_report(*, period: str, since: datetime, until: datetime, group_by: str) -> dict:
    """The org's usage from the rollups, ``since`` <= period start < ``until``: one entry
    per period (every period, empty ones too) and one per group (``USAGE_GROUPS``),
    each with requests, tokens, cost, errors (5xx), refusals (4xx) and latency p50/p95
    from the merged latency histograms (``audit.latency``)."""
    from datetime import timedelta

    from audit import latency

    if group_by not in USAGE_GROUPS:
        raise ValueError(group_by)
    rows = list(usage_rollup_list(period=period, since=since, until=until))
    names = _usage_group_names(rows, group_by)
    step = timedelta(hours=1) if period == UsageRollup.Period.HOUR else timedelta(days=1)

    def empty() -> dict:
        return {
            "requests": 0,
            "errors": 0,
            "denied": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost": 0.0,
            "histograms": [],
        }

    def add(target: dict, row: UsageRollup) -> None:
        for name in ("requests", "errors", "denied", "prompt_tokens", "completion_tokens"):
            target[name] += getattr(row, name)
        target["cost"] += row.cost
        target["histograms"].append(row.latency_histogram or [])

    def shape(values: dict) -> dict:
        merged = latency.merge(values.pop("histograms"))
        return {
            **values,
            "tokens": values["prompt_tokens"] + values["completion_tokens"],
            "cost": round(values["cost"], 6),
            "latency_p50_ms": latency.percentile(merged, 0.50),
            "latency_p95_ms": latency.percentile(merged, 0.95),
        }

    periods: dict[datetime, dict] = {}
    start = since
    while start < until:
        periods[start] = empty()
        start += step
    groups: dict[str, dict] = {}
    for row in rows:
        add(periods.setdefault(row.period_start, empty()), row)
        for group in _usage_groups_of(row, group_by, names):
            add(groups.setdefault(group, empty()), row)
    total = empty()
    for row in rows:
        add(total, row)
    return {
        "periods": [{"start": start, **shape(values)} for start, values in sorted(periods.items())],
        "groups": sorted(
            ({"group": name, **shape(values)} for name, values in groups.items()),
            key=lambda entry: (-entry["requests"], entry["group"]),
        ),
        "total": shape(total),
    }


def usage_record_list(
    *,
    key: str | None = None,
    model: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
):
    """The org's gateway calls, newest first. ``status``: a code (``429``) or a class
    (``4xx``); ``key``: a key's public prefix."""
    from audit.models import UsageRecord

    records = UsageRecord.objects.filter(org_id=current_org().pk)
    if key:
        records = records.filter(key_prefix=key)
    if model:
        records = records.filter(model=model)
    if status:
        if status.endswith("xx"):
            low = int(status[0]) * 100
            records = records.filter(status_code__gte=low, status_code__lt=low + 100)
        else:
            records = records.filter(status_code=int(status))
    if since:
        records = records.filter(created_at__gte=since)
    if until:
        records = records.filter(created_at__lt=until)
    return records.order_by("-created_at", "-id")


def usage_record_get(record_id):
    """One gateway call of the org, or None (another org's id is the same None)."""
    return usage_record_list().filter(pk=record_id).first()


def audit_records_for_request(request_id: str) -> QuerySet[AuditRecord]:
    """The org's audit records of one request (matched by its request id)."""
    return AuditRecord.objects.filter(org_id=current_org().pk, request_id=request_id).order_by(
        "created_at", "seq"
    )


def payload_for(access, usage) -> dict | None:
    """The stored prompt and answer of one gateway call, decrypted and redacted, or None.

    Shown only while the org has payload logging on and to whoever may read the audit
    log (``audit_log:view``): payloads are audit data. Bound to the record's org.
    """
    import json

    from audit.models import Payload
    from audit.redaction import redact_text
    from inferia import crypto

    if not access.policy.payload_logging or not access.can("audit_log:view"):
        return None
    payload = Payload.objects.filter(org_id=current_org().pk, usage_id=usage.pk).first()
    if payload is None:
        return None
    clear = json.loads(crypto.decrypt(payload.encrypted, context=payload.context()))
    return {
        name: redact_text(json.dumps(clear.get(name), indent=2, ensure_ascii=False))
        for name in ("request", "response")
    }
