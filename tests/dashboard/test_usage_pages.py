"""Usage charts with a time range, usage per team, and the request log with one
request's detail: org-scoped, from the rollups and usage records."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from audit import latency
from audit.models import AuditRecord, Payload, UsageRecord, UsageRollup
from audit.rollups import usage_rollup
from inferia import crypto
from inferia.request_meta import RequestMeta
from orgs.models import Membership, Organization, Role
from orgs.scoping import org_scope
from orgs.services import tenancy

USAGE = "/orgs/acme/usage"
REQUESTS = "/orgs/acme/requests"


def _usage(org, *, at=None, model="openai-main/gpt-4o", key="ifr_aaa", user=None, **extra):
    values = {
        "created_at": at or timezone.now(),
        "org": org,
        "request_id": extra.pop("request_id", uuid.uuid4().hex),
        "endpoint": "chat",
        "model": model,
        "key_prefix": key,
        "user_id": user.pk if user else None,
        "status_code": 200,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost": 0.001,
        "latency_ms": 100.0,
        **extra,
    }
    return UsageRecord.objects.create(**values)


def _roll(moment=None) -> None:
    moment = moment or timezone.now()
    for period in ("hour", "day"):
        usage_rollup(period=period, moment=moment)


def _group_rows(page: str) -> dict[str, list[str]]:
    table = page.split('data-testid="usage-groups"')[1].split("</table>")[0]
    rows = {}
    for row in re.findall(r"<tr><td class=\"mono\">(.*?)</tr>", table, flags=re.S):
        cells = re.findall(r"(?:^|<td>)([^<]*)</td>", row)
        rows[cells[0]] = cells[1:]
    return rows


# --- charts and range picker ----------------------------------------------------------------


def test_usage_charts_cover_requests_tokens_cost_errors_and_latency(alice_page, cast):
    _usage(cast.acme, user=cast.alice)
    _usage(cast.acme, user=cast.bob, model="openai-main/gpt-4o-mini", key="ifr_bbb")
    _usage(cast.acme, user=cast.bob, status_code=502, error_code="UPSTREAM_ERROR")
    _usage(cast.globex, user=cast.charlie, model="globex-secret/model")
    _roll()
    page = alice_page.get(f"{USAGE}?range=24h&group=model").content.decode()
    for title in (
        "Requests an hour",
        "Tokens an hour",
        "Cost an hour",
        "Errors and refusals an hour",
        "Latency p50 an hour",
        "Latency p95 an hour",
        "Requests by model",
    ):
        assert f'aria-label="{title}"' in page, title
    rows = _group_rows(page)
    assert set(rows) == {"openai-main/gpt-4o", "openai-main/gpt-4o-mini"}
    assert rows["openai-main/gpt-4o"][:5] == ["2", "30", "0.0020", "1", "0"]
    assert "globex-secret" not in page  # another org's usage never appears
    # 24 hourly bars; the default (7 days) has 7 daily ones.
    assert page.split('aria-label="Requests an hour"')[1].split("</svg>")[0].count("<rect") == 24
    week = alice_page.get(USAGE).content.decode()
    assert week.split('aria-label="Requests a day"')[1].split("</svg>")[0].count("<rect") == 7


@pytest.mark.parametrize(
    "group,expected",
    [
        ("key", {"ifr_aaa", "ifr_bbb"}),
        ("user", {"alice", "bob"}),
    ],
)
def test_usage_grouped_per_key_and_user(alice_page, cast, group, expected):
    _usage(cast.acme, user=cast.alice)
    _usage(cast.acme, user=cast.bob, key="ifr_bbb")
    _roll()
    rows = _group_rows(alice_page.get(f"{USAGE}?range=24h&group={group}").content.decode())
    assert set(rows) == expected


def test_usage_and_cost_per_team(alice_page, cast):
    with org_scope(cast.acme):
        team = tenancy.team_create(access=_owner(cast), name="ML", slug="ml", description="")
        bob = Membership.objects.get(user=cast.bob)
        tenancy.team_member_add(access=_owner(cast), team=team, membership=bob)
    _usage(cast.acme, user=cast.bob, cost=0.25)
    _usage(cast.acme, user=cast.bob, cost=0.25)
    _usage(cast.acme, user=cast.alice, cost=1.0)
    _roll()
    rows = _group_rows(alice_page.get(f"{USAGE}?range=30d&group=team").content.decode())
    assert rows["ml"][:3] == ["2", "30", "0.5000"]
    assert rows["(no team)"][:3] == ["1", "15", "1.0000"]
    # The team page shows each team's usage and cost too.
    teams = alice_page.get("/orgs/acme/teams").content.decode()
    assert re.search(r"2 requests, 30 tokens, cost 0\.5000", teams)


def _owner(cast):
    from orgs.access import resolve_member

    return resolve_member(cast.acme, cast.alice)


def test_custom_range_picks_days_and_rejects_a_reversed_one(alice_page, cast):
    old = timezone.now() - timedelta(days=40)
    _usage(cast.acme, at=old, model="openai-main/old")
    _usage(cast.acme, model="openai-main/new")
    _roll(old)
    _roll()
    day = old.date().isoformat()
    page = alice_page.get(f"{USAGE}?range=custom&from={day}&to={day}").content.decode()
    assert set(_group_rows(page)) == {"openai-main/old"}
    # One day: hourly periods.
    assert page.split('aria-label="Requests an hour"')[1].split("</svg>")[0].count("<rect") == 24
    assert "openai-main/old" not in alice_page.get(f"{USAGE}?range=30d").content.decode()
    bad = alice_page.get(f"{USAGE}?range=custom&from=2026-05-02&to=2026-05-01")
    assert bad.status_code == 400 and b"The last day comes before the first." in bad.content
    missing = alice_page.get(f"{USAGE}?range=custom&from=2026-05-02")
    assert missing.status_code == 400 and b"Choose both days" in missing.content
    assert alice_page.get(f"{USAGE}?range=forever").status_code == 400


def test_latency_percentiles_are_not_averaged_across_periods(alice_page, cast):
    now = timezone.now().replace(minute=30)
    earlier = now - timedelta(hours=1)
    for _ in range(19):
        _usage(cast.acme, at=earlier, latency_ms=100.0)
    _usage(cast.acme, at=now, latency_ms=5000.0)
    _roll(earlier)
    _roll(now)
    # One row holds 19 fast calls, the other one slow call: the true p95 (19th of
    # 20) is fast. Taking the largest p95 would say 5000, averaging p50s 345.
    rows = _group_rows(alice_page.get(f"{USAGE}?range=24h").content.decode())
    p50, p95 = (int(v.split()[0].replace(",", "")) for v in rows["openai-main/gpt-4o"][5:7])
    assert p50 <= 100 and p95 <= 100
    merged = latency.merge(
        UsageRollup.objects.filter(period="hour").values_list("latency_histogram", flat=True)
    )
    assert sum(merged) == 20 and latency.percentile(merged, 0.95) <= 100


def test_latency_percentile_of_a_histogram():
    counts = latency.histogram([1.0] * 50 + [900.0] * 50)
    assert latency.percentile(counts, 0.5) <= 5
    assert 750 < latency.percentile(counts, 0.95) <= 1000
    assert latency.percentile([0] * latency.SIZE, 0.5) == 0.0
    assert latency.percentile(latency.histogram([10**9]), 0.5) == latency.BUCKETS_MS[-1]


def test_usage_needs_usage_view_and_is_404_across_orgs(alice_page, charlie_page, bob_page, cast):
    assert charlie_page.get(USAGE).status_code == 404
    assert charlie_page.get(REQUESTS).status_code == 404
    role = Role.objects.create(
        org=cast.acme, slug="blind", name="Blind", permissions=["org:view", "api_key:create"]
    )
    Membership.all_orgs.filter(org=cast.acme, user=cast.bob).update(role=role)
    assert bob_page.get(USAGE).status_code == 403
    assert bob_page.get(REQUESTS).status_code == 403
    nav = bob_page.get("/orgs/acme/").content.decode()
    assert 'href="/orgs/acme/usage"' not in nav


# --- request log ----------------------------------------------------------------------------------


def test_request_log_filters_by_key_model_status_and_time(alice_page, cast):
    _usage(cast.acme, key="ifr_aaa", model="openai-main/gpt-4o", request_id="req-a")
    _usage(cast.acme, key="ifr_bbb", model="openai-main/gpt-4o", request_id="req-b")
    _usage(cast.acme, key="ifr_aaa", model="openai-main/o1", status_code=429, request_id="req-c")
    _usage(cast.acme, at=timezone.now() - timedelta(days=20), request_id="req-old")
    _usage(cast.globex, key="ifr_aaa", request_id="req-globex")

    def shown(query: str) -> int:
        page = alice_page.get(f"{REQUESTS}?{query}").content.decode()
        assert "req-globex" not in page
        if 'data-testid="request-log"' not in page:
            return 0
        return page.split('data-testid="request-log"')[1].split("</tbody>")[0].count("<tr><td>")

    assert shown("") == 3  # the default range: the last 7 days
    assert shown("range=30d") == 4
    assert shown("key=ifr_aaa") == 2
    assert shown("model=openai-main/o1") == 1
    assert shown("status=4xx") == 1 and shown("status=429") == 1 and shown("status=200") == 2
    assert shown("key=ifr_aaa&status=2xx") == 1
    bad = alice_page.get(f"{REQUESTS}?status=abc")
    assert bad.status_code == 400 and b"A status code such as 429" in bad.content


def test_request_log_paginates(alice_page, cast):
    for index in range(51):
        _usage(cast.acme, request_id=f"r{index}")
    first = alice_page.get(REQUESTS).content.decode()
    assert "Page 1 of 2" in first and "Older" in first
    second = alice_page.get(f"{REQUESTS}?page=2").content.decode()
    assert "Page 2 of 2" in second


def test_request_detail_shows_its_audit_records_and_hides_other_orgs(
    alice_page, charlie_page, vera_page, cast
):
    record = _usage(cast.acme, request_id="req-detail-1")
    from audit.services import record as audit_record

    audit_record(
        action="inference:run",
        outcome="allowed",
        org=cast.acme,
        actor=cast.alice,
        status_code=200,
        meta=RequestMeta(request_id="req-detail-1"),
    )
    page = alice_page.get(f"{REQUESTS}/{record.pk}").content.decode()
    assert "req-detail-1" in page
    audit_table = page.split('data-testid="request-audit"')[1].split("</table>")[0]
    assert "inference:run" in audit_table
    assert "Payload logging is off" in page
    assert charlie_page.get(f"/orgs/globex/requests/{record.pk}").status_code == 404
    globex_record = _usage(cast.globex, request_id="req-g")
    assert alice_page.get(f"{REQUESTS}/{globex_record.pk}").status_code == 404
    # A viewer holds usage:view and audit_log:view: both parts.
    assert vera_page.get(f"{REQUESTS}/{record.pk}").status_code == 200


def _payload(org, usage) -> None:
    body = {"request": {"messages": [{"content": "tell me a secret"}]}, "response": {"ok": 1}}
    payload = Payload(org_id=org.pk, usage_id=usage.pk, request_id=usage.request_id)
    payload.encrypted = crypto.encrypt(json.dumps(body).encode(), context=payload.context())
    payload.save()


def test_payload_only_with_payload_logging_on_and_audit_log_view(alice_page, bob_page, cast):
    record = _usage(cast.acme, request_id="req-p")
    _payload(cast.acme, record)
    url = f"{REQUESTS}/{record.pk}"
    assert "tell me a secret" not in alice_page.get(url).content.decode()  # logging off
    settings = {**cast.acme.settings, "payload_logging": True}
    Organization.objects.filter(pk=cast.acme.pk).update(settings=settings)
    page = alice_page.get(url).content.decode()
    assert "tell me a secret" in page.split('data-testid="request-payload"')[1]
    # Usage viewers without audit_log:view see the call, not its payload.
    role = Role.objects.create(
        org=cast.acme, slug="usage-only", name="U", permissions=["org:view", "usage:view"]
    )
    Membership.all_orgs.filter(org=cast.acme, user=cast.bob).update(role=role)
    page = bob_page.get(url).content.decode()
    assert page and "tell me a secret" not in page and "audit_log:view" in page
    assert not AuditRecord.objects.filter(data__icontains="tell me a secret").exists()
