"""Audit tamper resistance: verify_audit_chain checks both ends of a chain against the
stored head (deleting the newest or the oldest records is detected); retention keeps a
30-day floor and changing it needs the Owner; on PostgreSQL no session setting unlocks
the append-only trigger, TRUNCATE is refused and retention runs through a
SECURITY DEFINER function."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit import chain
from audit import jobs as audit_jobs
from audit import services as audit
from audit.models import AuditChainHead, AuditRecord
from tests.audit.test_chain import _records, _tamper
from tests.conftest import assert_error, require_or_skip


@pytest.fixture
def postgres(db):
    if connection.vendor != "postgresql":
        require_or_skip("needs PostgreSQL (DATABASE_URL)")


def test_deleting_the_newest_records_is_detected(cast):
    records = _records(cast)
    _tamper("DELETE FROM audit_auditrecord WHERE id = %s", records[-1])
    with pytest.raises(CommandError, match=f"after seq {records[-2].seq} are missing"):
        call_command("verify_audit_chain", "--org", "acme")


def test_deleting_the_oldest_records_is_detected(cast):
    records = AuditRecord.objects.filter(org=cast.acme).order_by("seq")
    first = records.first()
    _records(cast)
    _tamper("DELETE FROM audit_auditrecord WHERE id = %s", first)
    with pytest.raises(CommandError, match="before seq .* are missing"):
        call_command("verify_audit_chain", "--org", "acme")


def test_deleting_a_whole_chain_is_detected(cast):
    _records(cast)
    for record in list(AuditRecord.objects.filter(org=cast.acme)):
        _tamper("DELETE FROM audit_auditrecord WHERE id = %s", record)
    with pytest.raises(CommandError, match="every record"):
        call_command("verify_audit_chain", "--org", "acme")


def _backdated(org, days: int) -> AuditRecord:
    (record,) = chain.append(
        [
            AuditRecord(
                org=org,
                action="member:view",
                outcome="allowed",
                created_at=timezone.now() - timedelta(days=days),
            )
        ]
    )
    return record


def test_retention_notes_the_pruned_link_so_the_chain_still_verifies(cast, capsys):
    cast.acme.settings = {"audit_retention_days": 30}
    cast.acme.save(update_fields=["settings"])
    AuditRecord.objects.filter(org=cast.acme).count()
    # A fresh chain whose oldest records are past retention.
    old = [_backdated(cast.acme, 40) for _ in range(2)]
    kept = _records(cast, 2)
    pruned_before = AuditRecord.objects.filter(org=cast.acme, seq__lt=old[0].seq)
    for record in list(pruned_before):  # the org:create record is recent: out of the way
        _tamper("DELETE FROM audit_auditrecord WHERE id = %s", record)
    AuditChainHead.objects.filter(chain=str(cast.acme.pk)).update(
        pruned_seq=old[0].seq - 1, pruned_hash=old[0].prev_hash
    )

    assert audit_jobs.audit_retention() == 2
    assert not AuditRecord.objects.filter(pk__in=[r.pk for r in old]).exists()
    head = AuditChainHead.objects.get(chain=str(cast.acme.pk))
    assert (head.pruned_seq, head.pruned_hash) == (old[-1].seq, old[-1].hash)
    call_command("verify_audit_chain", "--org", "acme")
    assert "ok" in capsys.readouterr().out
    assert AuditRecord.objects.filter(pk__in=[r.pk for r in kept]).count() == 2


def test_retention_below_the_floor_in_settings_keeps_30_days(cast):
    cast.acme.settings = {"audit_retention_days": 1}  # written before the floor existed
    cast.acme.save(update_fields=["settings"])
    recent = _backdated(cast.acme, 10)
    audit_jobs.audit_retention()
    assert AuditRecord.objects.filter(pk=recent.pk).exists()


def test_changing_retention_needs_the_owner_and_respects_the_floor(cast, alice_client, dave_client):
    url = "/api/v1/orgs/acme"
    response = dave_client.patch(url, {"settings": {"audit_retention_days": 60}}, format="json")
    assert_error(response, 403, "PERMISSION_DENIED")
    response = alice_client.patch(url, {"settings": {"audit_retention_days": 7}}, format="json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "audit_retention_days" in error["details"]
    cast.acme.refresh_from_db()
    assert "audit_retention_days" not in cast.acme.settings

    response = alice_client.patch(url, {"settings": {"audit_retention_days": 60}}, format="json")
    assert response.status_code == 200, response.content
    cast.acme.refresh_from_db()
    assert cast.acme.settings["audit_retention_days"] == 60
    record = AuditRecord.objects.filter(action="org:update", org=cast.acme).first()
    assert record.actor_user_id == cast.alice.pk
    # An Admin may still change other settings (retention unchanged).
    response = dave_client.patch(url, {"name": "Acme Inc"}, format="json")
    assert response.status_code == 200, response.content


# --- PostgreSQL: the database itself ------------------------------------------------------


@pytest.mark.postgres
def test_no_session_setting_unlocks_the_trigger(cast, postgres):
    record = audit.record(action="member:view", outcome="allowed", org=cast.acme)
    for setting in ("inferia.audit_retention", "inferia.audit_prune"):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"SET LOCAL {setting} = 'on'")
            cursor.execute("DELETE FROM audit_auditrecord WHERE id = %s", [str(record.pk)])
    assert AuditRecord.objects.filter(pk=record.pk).exists()


@pytest.mark.postgres
def test_truncate_is_refused_for_an_ordinary_role(cast, postgres):
    audit.record(action="member:view", outcome="allowed", org=cast.acme)
    with connection.cursor() as cursor:
        cursor.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
            "'inferia_test_app') THEN CREATE ROLE inferia_test_app NOSUPERUSER; END IF; END $$"
        )
        cursor.execute("GRANT ALL ON audit_auditrecord, audit_usagerecord TO inferia_test_app")
    for table in ("audit_auditrecord", "audit_usagerecord"):
        with (
            pytest.raises(DatabaseError, match="TRUNCATE refused"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("SET LOCAL ROLE inferia_test_app")
            cursor.execute(f"TRUNCATE {table}")
    assert AuditRecord.objects.filter(org=cast.acme).exists()


@pytest.mark.postgres
def test_the_prune_function_refuses_a_cutoff_inside_the_floor(cast, postgres):
    recent = _backdated(cast.acme, 10)
    with (
        pytest.raises(DatabaseError, match="30-day floor"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "SELECT * FROM inferia_audit_prune(%s, %s)",
            [cast.acme.pk, timezone.now() - timedelta(days=1)],
        )
    old = _backdated(cast.acme, 40)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM inferia_audit_prune(%s, %s)",
            [cast.acme.pk, timezone.now() - timedelta(days=30)],
        )
        assert cursor.fetchone()[0] == 1
    assert not AuditRecord.objects.filter(pk=old.pk).exists()
    assert AuditRecord.objects.filter(pk=recent.pk).exists()
