"""Every request that presents credentials leaves exactly one audit record."""

from __future__ import annotations

from audit.models import AuditRecord
from tests.conftest import assert_error


def test_a_read_is_recorded_once_with_its_permission(cast, bob_client):
    before = AuditRecord.objects.count()
    response = bob_client.get("/api/v1/orgs/acme/members", HTTP_USER_AGENT="pytest-agent")
    assert response.status_code == 200
    records = AuditRecord.objects.order_by("-seq")[: AuditRecord.objects.count() - before]
    assert len(records) == 1
    record = records[0]
    assert (record.action, record.outcome, record.status_code, record.org_id) == (
        "member:view",
        "allowed",
        200,
        cast.acme.pk,
    )
    assert record.actor_label == "bob" and record.target_id == "/api/v1/orgs/acme/members"
    assert record.user_agent == "pytest-agent" and record.request_id == response["X-Request-ID"]
    assert record.latency_ms is not None


def test_a_write_is_recorded_once_by_its_service(cast, alice_client):
    before = AuditRecord.objects.count()
    response = alice_client.post(
        "/api/v1/orgs/acme/teams", {"slug": "ml", "name": "ML"}, format="json"
    )
    assert response.status_code == 201
    assert AuditRecord.objects.count() == before + 1
    assert AuditRecord.objects.get(action="team:manage").outcome == "success"


def test_refusals_are_recorded(cast, vera_client, charlie_client):
    assert_error(
        vera_client.post("/api/v1/orgs/acme/teams", {"slug": "x", "name": "X"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert (
        AuditRecord.objects.filter(
            action="team:manage", outcome="denied", actor_label="vera"
        ).count()
        == 1
    )
    assert_error(charlie_client.get("/api/v1/orgs/acme/members"), 404, "NOT_FOUND")
    record = AuditRecord.objects.get(action="member:view", actor_user=cast.charlie)
    assert (record.outcome, record.status_code, record.org_id) == ("denied", 404, None)


def test_bad_credentials_are_recorded_without_the_credential(db, anon_client):
    anon_client.credentials(HTTP_AUTHORIZATION="Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.forged")
    assert_error(anon_client.get("/api/v1/orgs/acme/members"), 401, "AUTHENTICATION_FAILED")
    record = AuditRecord.objects.get(status_code=401)
    assert record.outcome == "denied" and "forged" not in str(record.data) + record.actor_label
