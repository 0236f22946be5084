"""A database that fails around a REST view (the request's own audit record is
written after the view answered) is 503 in the envelope, never a 500: found by the
fault suite's PostgreSQL restart (tests/faults), pinned here without one."""

from __future__ import annotations

from django.db import OperationalError

from tests.conftest import assert_error


def test_audit_write_failing_after_the_view_is_503_not_500(alice_client, monkeypatch):
    def database_gone(**fields):
        raise OperationalError("connection to server failed: Connection refused")

    monkeypatch.setattr("inferia.api.audit.record", database_gone)
    response = alice_client.get("/api/v1/orgs/acme")
    assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert response["Retry-After"] == "5"
    assert response["X-Request-ID"]


def test_a_view_failing_on_the_database_is_503_too(alice_client, monkeypatch):
    def database_gone(*args, **kwargs):
        raise OperationalError("connection to server failed: Connection refused")

    monkeypatch.setattr("orgs.api.views.OrgDetailView.get", database_gone)
    response = alice_client.get("/api/v1/orgs/acme")
    assert_error(response, 503, "SERVICE_UNAVAILABLE")
