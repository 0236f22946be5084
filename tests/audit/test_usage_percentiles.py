"""The usage API's latency percentiles over several rollup rows come from the rows'
summed latency histograms, not from averaging (or taking the largest of) their
percentiles."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.utils import timezone

from audit import rollups
from audit.models import UsageRecord


def _call(org, at, latency_ms: float) -> None:
    UsageRecord.objects.create(
        created_at=at,
        org=org,
        request_id=uuid.uuid4().hex,
        endpoint="chat",
        model="openai-main/gpt-4o",
        status_code=200,
        latency_ms=latency_ms,
    )


def test_usage_api_percentiles_merge_histograms(alice_client, cast):
    now = timezone.now().replace(minute=30, second=0, microsecond=0)
    earlier = now - timedelta(hours=1)
    for _ in range(19):
        _call(cast.acme, earlier, 100.0)
    _call(cast.acme, now, 5000.0)
    for moment in (earlier, now):
        rollups.usage_rollup(period="hour", moment=moment)
    response = alice_client.get(
        "/api/v1/orgs/acme/usage",
        {
            "period": "hour",
            "since": (now - timedelta(hours=3)).isoformat(),
            "until": (now + timedelta(hours=1)).isoformat(),
        },
    )
    assert response.status_code == 200, response.content
    (total,) = response.json()["totals"]
    assert total["requests"] == 20
    # 19 of 20 calls took 100 ms: p95 (the 19th) is fast, p50 too. The old method
    # said p95 = 5000 (largest row p95) and p50 = 345 (request-weighted mean).
    assert total["latency_p95_ms"] <= 100
    assert total["latency_p50_ms"] <= 100
