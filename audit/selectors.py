"""Tenant-scoped reads of audit/ (AuditRecord is not OrgOwnedModel: filter on the active org)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from audit.models import AuditRecord, UsageRollup
from orgs.scoping import current_org


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
    records = AuditRecord.objects.filter(org_id=current_org().pk)
    if actor:
        records = records.filter(Q(actor_label=actor) | Q(actor_label__startswith=f"{actor} via "))
    if action:
        records = records.filter(action__startswith=action[:-1]) if action.endswith("*") else records.filter(action=action)
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
    return records.order_by("-seq")


def usage_rollup_list(*, period: str, since: datetime, until: datetime) -> QuerySet[UsageRollup]:
    return UsageRollup.objects.filter(
        org_id=current_org().pk, period=period, period_start__gte=since, period_start__lt=until
    ).order_by("period_start")
