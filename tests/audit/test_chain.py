"""Tamper evidence: the hash chain and verify_audit_chain, and append-only records."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit import services as audit
from audit.models import AuditRecord, AuditRecordError


def _records(cast, count=4):
    return [
        audit.record(
            action="member:update",
            outcome="success",
            org=cast.acme,
            actor=cast.alice,
            data={"i": i},
        )
        for i in range(count)
    ]


def test_records_are_linked_and_the_chain_verifies(cast, capsys):
    records = _records(cast)
    acme = AuditRecord.objects.filter(org=cast.acme).order_by("seq")
    previous = None
    for record in acme:
        if previous is not None:
            assert record.prev_hash == previous.hash and record.seq == previous.seq + 1
        previous = record
    call_command("verify_audit_chain")
    assert "ok:" in capsys.readouterr().out
    assert records[-1].hash == acme.last().hash


def _tamper(sql: str, record) -> None:
    """What an attacker with SQL access would do (on PostgreSQL: a superuser who
    first disables the append-only trigger)."""
    pk = record.pk.hex if connection.vendor == "sqlite" else str(record.pk)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditrecord DISABLE TRIGGER audit_append_only")
        cursor.execute(sql, [pk])
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditrecord ENABLE TRIGGER audit_append_only")


def test_a_changed_record_is_reported_at_its_link(cast):
    records = _records(cast)
    _tamper("UPDATE audit_auditrecord SET actor_label = 'eve' WHERE id = %s", records[2])
    with pytest.raises(CommandError, match=f"seq {records[2].seq}"):
        call_command("verify_audit_chain", "--org", "acme")


def test_a_deleted_record_is_reported(cast):
    records = _records(cast)
    _tamper("DELETE FROM audit_auditrecord WHERE id = %s", records[1])
    with pytest.raises(CommandError, match="missing record"):
        call_command("verify_audit_chain", "--org", "acme")


def test_model_refuses_update_and_delete(cast):
    record = _records(cast, 1)[0]
    record.action = "x"
    with pytest.raises(AuditRecordError):
        record.save()
    with pytest.raises(AuditRecordError):
        record.delete()


def test_the_database_itself_protects_records_where_it_can(cast):
    """PostgreSQL refuses UPDATE and DELETE with a trigger; SQLite has no such
    trigger here, so there the chain is what catches a change."""
    from django.db import DatabaseError, transaction

    record = _records(cast, 1)[0]
    if connection.vendor == "postgresql":
        for sql in (
            "UPDATE audit_auditrecord SET action = 'x' WHERE id = %s",
            "DELETE FROM audit_auditrecord WHERE id = %s",
        ):
            with (
                pytest.raises(DatabaseError, match="append-only"),
                transaction.atomic(),
                connection.cursor() as cursor,
            ):
                cursor.execute(sql, [str(record.pk)])
        assert AuditRecord.objects.filter(pk=record.pk, action="member:update").exists()
    else:
        _tamper("UPDATE audit_auditrecord SET action = 'x' WHERE id = %s", record)
        with pytest.raises(CommandError, match="content was changed"):
            call_command("verify_audit_chain", "--org", "acme")
