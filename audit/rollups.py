"""Usage rollups: hourly and daily aggregates of usage records (idempotent)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction

from audit.latency import histogram as latency_histogram
from audit.models import UsageRecord, UsageRollup

DENIED = {401, 403, 404, 413, 415, 429}


def period_bounds(period: str, moment: datetime) -> tuple[datetime, datetime]:
    start = moment.replace(minute=0, second=0, microsecond=0)
    if period == UsageRollup.Period.DAY:
        start = start.replace(hour=0)
        return start, start + timedelta(days=1)
    return start, start + timedelta(hours=1)


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * (len(ordered) - 1)))))
    return float(ordered[index])


def usage_rollup(*, period: str, moment: datetime) -> int:
    """Rebuild the rollup rows of the period containing ``moment``; returns rows written.

    Rerunning a period replaces its rows with the same result.
    """
    start, end = period_bounds(period, moment)
    groups: dict[tuple, dict] = defaultdict(
        lambda: {
            "latencies": [],
            "requests": 0,
            "errors": 0,
            "denied": 0,
            "prompt": 0,
            "completion": 0,
            "cost": 0.0,
        }
    )
    # Cross-org by design: a platform job over every tenant's usage.
    records = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end).values_list(
        "org_id",
        "model",
        "key_prefix",
        "user_id",
        "service_account_id",
        "status_code",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "latency_ms",
    )
    for (
        org_id,
        model,
        prefix,
        user_id,
        sa_id,
        status,
        prompt,
        completion,
        cost,
        latency,
    ) in records.iterator(chunk_size=5000):
        if org_id is None:
            continue
        group = groups[(org_id, model, prefix, user_id, sa_id)]
        group["requests"] += 1
        group["errors"] += status >= 500
        group["denied"] += status in DENIED
        group["prompt"] += prompt
        group["completion"] += completion
        group["cost"] += cost
        group["latencies"].append(latency)
    rows = [
        UsageRollup(
            org_id=org_id,
            period=period,
            period_start=start,
            model=model,
            key_prefix=prefix,
            user_id=user_id,
            service_account_id=sa_id,
            requests=g["requests"],
            errors=g["errors"],
            denied=g["denied"],
            prompt_tokens=g["prompt"],
            completion_tokens=g["completion"],
            cost=g["cost"],
            latency_p50_ms=_percentile(g["latencies"], 0.5),
            latency_p95_ms=_percentile(g["latencies"], 0.95),
            latency_histogram=latency_histogram(g["latencies"]),
        )
        for (org_id, model, prefix, user_id, sa_id), g in groups.items()
    ]
    with transaction.atomic():
        UsageRollup.objects.filter(period=period, period_start=start).delete()
        UsageRollup.objects.bulk_create(rows)
    return len(rows)
