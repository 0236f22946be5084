"""Background jobs: key expiry notices and records, unused keys, invitation expiry,
retention and alerts — each idempotent."""

from __future__ import annotations

from datetime import timedelta

from django.core import mail
from django.utils import timezone

from audit import jobs as audit_jobs
from audit import services as audit
from audit.models import Alert, AuditRecord, UsageRecord, UsageRollup
from keys import jobs as key_jobs
from keys.models import ApiKey
from orgs.models import Invitation
from orgs.services import tenancy
from tests.keys.conftest import mint


def test_expiry_notices_go_out_7_days_and_1_day_before_once_each(cast, bob_client, clock_shift):
    key = mint(bob_client, expires_in_days=5)
    assert key_jobs.api_key_expiry_notices() == 1
    assert [m.to for m in mail.outbox] == [["bob@example.com"]] and key["prefix"] in mail.outbox[
        0
    ].subject
    assert key_jobs.api_key_expiry_notices() == 0  # rerun: nothing new
    clock_shift(4.5 * 86400)
    assert key_jobs.api_key_expiry_notices() == 1
    assert len(mail.outbox) == 2
    row = ApiKey.all_orgs.get(pk=key["id"])
    assert row.expiry_notice_7d_at and row.expiry_notice_1d_at


def test_expiry_is_recorded_once_after_the_date(cast, bob_client, clock_shift):
    key = mint(bob_client, expires_in_days=1)
    assert key_jobs.api_key_expire_due() == 0
    clock_shift(86400 + 1)
    assert key_jobs.api_key_expire_due() == 1
    assert key_jobs.api_key_expire_due() == 0
    record = AuditRecord.objects.get(action="api_key:expire")
    assert record.target_id == key["id"] and record.org_id == cast.acme.pk


def test_service_account_key_notices_go_to_owners_and_admins(cast, dave_client, service_account):
    mint(dave_client, service_account="ci-bot", expires_in_days=2)
    key_jobs.api_key_expiry_notices()
    assert sorted(mail.outbox[0].to) == ["alice@example.com", "dave@example.com"]


def test_unused_keys_are_reported_once_per_period(cast, bob_client, clock_shift):
    mint(bob_client)
    assert key_jobs.api_key_unused_report() == 0
    clock_shift(31 * 86400)
    assert key_jobs.api_key_unused_report() == 1
    assert "has not been used" in mail.outbox[-1].subject
    assert key_jobs.api_key_unused_report() == 0


def test_invitation_expiry_is_recorded_once(
    cast, alice_client, clock_shift, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(
            "/api/v1/orgs/acme/invitations",
            {"email": "x@example.com", "role": "member"},
            format="json",
        )
    assert tenancy.invitation_expire_due() == 0
    clock_shift(8 * 86400)
    assert tenancy.invitation_expire_due() == 1
    assert tenancy.invitation_expire_due() == 0
    assert Invitation.all_orgs.get().expired_recorded_at is not None
    assert AuditRecord.objects.filter(action="member:invite", data__op="expire").count() == 1


def test_retention_prunes_old_raw_records_and_keeps_rollups(cast):
    cast.acme.settings = {"audit_retention_days": 30}
    cast.acme.save(update_fields=["settings"])
    from audit import chain

    old = audit.record(action="member:view", outcome="allowed", org=cast.acme, actor=cast.alice)
    (backdated,) = chain.append(
        [
            AuditRecord(
                org=cast.acme,
                action="member:view",
                outcome="allowed",
                created_at=timezone.now() - timedelta(days=40),
            )
        ]
    )
    (globex_old,) = chain.append(
        [
            AuditRecord(
                org=cast.globex,
                action="member:view",
                outcome="allowed",
                created_at=timezone.now() - timedelta(days=40),
            )
        ]
    )
    UsageRollup.objects.create(
        org_id=cast.acme.pk,
        period="day",
        period_start=timezone.now() - timedelta(days=40),
        requests=3,
    )
    deleted = audit_jobs.audit_retention()
    assert deleted == 1
    assert not AuditRecord.objects.filter(pk=backdated.pk).exists()
    assert AuditRecord.objects.filter(pk=old.pk).exists()
    assert AuditRecord.objects.filter(
        pk=globex_old.pk
    ).exists()  # Globex keeps the default 365 days
    assert UsageRollup.objects.filter(org_id=cast.acme.pk).exists()


def test_burst_of_failed_logins_raises_one_alert(cast, anon_client):
    cast.acme.settings = {"alert_failed_logins": 3}
    cast.acme.save(update_fields=["settings"])
    for _ in range(3):
        anon_client.post(
            "/api/v1/auth/login", {"username": "bob", "password": "wrong-password"}, format="json"
        )
    alerts = audit_jobs.alerts_check()
    assert [a.kind for a in alerts] == ["failed_logins"]
    assert audit_jobs.alerts_check() == []  # same period: not repeated
    assert AuditRecord.objects.filter(action="alert:raise", org=cast.acme).count() == 1
    assert sorted(mail.outbox[-1].to) == ["alice@example.com", "dave@example.com"]


def test_burst_of_denials_raises_an_alert(cast, vera_client):
    cast.acme.settings = {"alert_denials": 2}
    cast.acme.save(update_fields=["settings"])
    for _ in range(2):
        vera_client.post("/api/v1/orgs/acme/teams", {"slug": "x", "name": "X"}, format="json")
    assert [a.kind for a in audit_jobs.alerts_check()] == ["denials"]


def _usage(org, *, tokens: int, ago: timedelta, ip="10.0.0.5", prefix="ifr_AAAA", rid=None):
    UsageRecord.objects.create(
        created_at=timezone.now() - ago,
        org=org,
        request_id=rid or f"r-{ago}-{ip}-{tokens}",
        endpoint="chat",
        model="m",
        status_code=200,
        prompt_tokens=tokens,
        completion_tokens=0,
        key_prefix=prefix,
        client_ip=ip,
    )


def test_token_spike_against_the_trailing_baseline(cast):
    for hour in range(2, 20):
        _usage(cast.acme, tokens=1_000, ago=timedelta(hours=hour))
    _usage(cast.acme, tokens=50_000, ago=timedelta(minutes=10))
    kinds = [a.kind for a in audit_jobs.alerts_check()]
    assert "token_spike" in kinds
    assert Alert.objects.get(kind="token_spike").data["tokens"] == 50_000


def test_no_spike_when_usage_is_steady(cast):
    for hour in range(2, 20):
        _usage(cast.acme, tokens=20_000, ago=timedelta(hours=hour))
    _usage(cast.acme, tokens=20_000, ago=timedelta(minutes=10))
    assert "token_spike" not in [a.kind for a in audit_jobs.alerts_check()]


def test_key_used_from_a_new_address_range(cast):
    _usage(cast.acme, tokens=1, ago=timedelta(days=2), ip="10.0.0.5")
    _usage(cast.acme, tokens=1, ago=timedelta(minutes=5), ip="10.0.0.9")  # same /24: fine
    assert audit_jobs.alerts_check() == []
    _usage(cast.acme, tokens=1, ago=timedelta(minutes=4), ip="192.0.2.7")
    alerts = audit_jobs.alerts_check()
    assert [a.data["range"] for a in alerts] == ["192.0.2.0/24"]
