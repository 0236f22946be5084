"""Tenant-scoped reads of audit/ (AuditRecord is not OrgOwnedModel: filter on the active org)."""

from __future__ import annotations

from datetime import datetime

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
