"""An owner without 2FA cannot lock themself out by turning ``require_2fa`` on:
400 VALIDATION_ERROR on ``require_2fa`` (API and dashboard, through the service)."""

from __future__ import annotations

from audit.models import AuditRecord
from orgs.models import Organization
from tests.conftest import assert_error, enable_totp


def _set(client, value: bool = True):
    return client.patch("/api/v1/orgs/acme", {"require_2fa": value}, format="json")


def test_owner_without_2fa_cannot_require_it(cast, alice_client):
    error = assert_error(_set(alice_client), 400, "VALIDATION_ERROR")
    assert "require_2fa" in error["details"]
    assert Organization.objects.get(pk=cast.acme.pk).require_2fa is False
    assert not AuditRecord.objects.filter(action="org:update", outcome="success").exists()
    # She is not locked out: the org still answers.
    assert alice_client.get("/api/v1/orgs/acme").status_code == 200


def test_nothing_is_half_written_when_refused(cast, alice_client):
    response = alice_client.patch(
        "/api/v1/orgs/acme", {"require_2fa": True, "name": "Renamed"}, format="json"
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    org = Organization.objects.get(pk=cast.acme.pk)
    assert (org.name, org.require_2fa) == ("Acme", False)


def test_owner_with_2fa_requires_it(cast, alice_client):
    enable_totp(alice_client, cast.alice)
    response = _set(alice_client)
    assert response.status_code == 200, response.content
    assert Organization.objects.get(pk=cast.acme.pk).require_2fa is True
    assert AuditRecord.objects.get(action="org:update").data["changed"] == ["require_2fa"]
    assert alice_client.get("/api/v1/orgs/acme").status_code == 200


def test_turning_it_off_needs_no_device(cast, alice_client):
    Organization.objects.filter(pk=cast.acme.pk).update(require_2fa=True)
    enable_totp(alice_client, cast.alice)
    assert _set(alice_client, False).status_code == 200
    assert Organization.objects.get(pk=cast.acme.pk).require_2fa is False


def test_dashboard_refuses_it_too(cast):
    from tests.dashboard.conftest import page_client

    response = page_client(cast.alice).post(
        "/orgs/acme/settings", {"name": "Acme", "require_2fa": "on"}
    )
    assert response.status_code == 400, response.status_code
    assert b"two-factor" in response.content.lower()
    assert Organization.objects.get(pk=cast.acme.pk).require_2fa is False
