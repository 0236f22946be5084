"""An org with ``require_2fa`` answers 403 TWO_FACTOR_REQUIRED to members without
a confirmed device; they can still reach the 2FA setup and then get in."""

from __future__ import annotations

from audit.models import AuditRecord
from orgs.models import Organization, TOTPDevice
from tests.conftest import add_member, assert_error, code_now, enable_totp, to_step_start

ORG_ENDPOINTS = [
    "/api/v1/orgs/acme",
    "/api/v1/orgs/acme/members",
    "/api/v1/orgs/acme/teams",
    "/api/v1/orgs/acme/roles",
    "/api/v1/orgs/acme/invitations",
]


def require_2fa(client, value: bool = True, slug: str = "acme"):
    return client.patch(f"/api/v1/orgs/{slug}", {"require_2fa": value}, format="json")


def test_owner_turns_on_require_2fa(cast, alice_client):
    enable_totp(alice_client, cast.alice)  # nobody requires what they lack themself
    response = require_2fa(alice_client)

    assert response.status_code == 200, response.content
    assert response.json()["require_2fa"] is True
    assert Organization.objects.get(slug="acme").require_2fa is True
    record = AuditRecord.objects.get(action="org:update")
    assert record.org == cast.acme and record.actor_user == cast.alice
    assert record.data["changed"] == ["require_2fa"]
    assert record.data["before"]["require_2fa"] is False


def test_member_without_device_gets_403_until_they_enrol(cast, alice_client, bob_client):
    for path in ORG_ENDPOINTS:
        assert bob_client.get(path).status_code == 200, path
    enable_totp(alice_client, cast.alice)
    assert require_2fa(alice_client).status_code == 200

    for path in ORG_ENDPOINTS:
        error = assert_error(bob_client.get(path), 403, "TWO_FACTOR_REQUIRED")
        assert "/api/v1/auth/2fa/setup" in error["message"]
    assert_error(
        bob_client.post("/api/v1/orgs/acme/teams", {"slug": "ml", "name": "ML"}, format="json"),
        403,
        "TWO_FACTOR_REQUIRED",
    )
    denied = AuditRecord.objects.filter(action="auth:2fa_required", outcome="denied")
    assert denied.count() == len(ORG_ENDPOINTS) + 1
    assert set(denied.values_list("actor_user", flat=True)) == {cast.bob.pk}
    assert set(denied.values_list("org", flat=True)) == {cast.acme.pk}
    assert set(denied.values_list("status_code", flat=True)) == {403}

    # Outside the org, bob can still see who he is and set up 2FA.
    me = bob_client.get("/api/v1/auth/me")
    assert me.status_code == 200
    assert me.json()["memberships"][0]["org"]["require_2fa"] is True
    assert bob_client.post("/api/v1/auth/2fa/setup").status_code == 200
    device = TOTPDevice.objects.get(user=cast.bob)
    # A pending (unconfirmed) device is not enough.
    assert_error(bob_client.get("/api/v1/orgs/acme"), 403, "TWO_FACTOR_REQUIRED")
    confirm = bob_client.post(
        "/api/v1/auth/2fa/confirm", {"otp_code": code_now(device)}, format="json"
    )
    assert confirm.status_code == 200, confirm.content

    for path in ORG_ENDPOINTS:
        assert bob_client.get(path).status_code == 200, path
    created = bob_client.post(
        "/api/v1/orgs/acme/teams", {"slug": "ml", "name": "ML"}, format="json"
    )
    assert_error(created, 403, "PERMISSION_DENIED")  # 2FA passes; his role still applies


def test_the_policy_applies_to_owners_too_and_only_in_that_org(
    cast, alice_client, bob_client, dave_client
):
    add_member(cast.globex, cast.bob, "member")
    # dave (Admin, enrolled) turns it on; alice (Owner, not enrolled) is held to it too.
    enable_totp(dave_client, cast.dave)
    assert require_2fa(dave_client).status_code == 200

    assert_error(alice_client.get("/api/v1/orgs/acme"), 403, "TWO_FACTOR_REQUIRED")
    assert_error(bob_client.get("/api/v1/orgs/acme"), 403, "TWO_FACTOR_REQUIRED")
    # Globex does not require 2FA: bob is fine there.
    assert bob_client.get("/api/v1/orgs/globex").status_code == 200
    assert bob_client.get("/api/v1/orgs/globex/members").status_code == 200

    enable_totp(alice_client, cast.alice)
    assert alice_client.get("/api/v1/orgs/acme").status_code == 200


def test_non_members_still_get_404_not_403(cast, alice_client, charlie_client):
    enable_totp(alice_client, cast.alice)
    assert require_2fa(alice_client).status_code == 200
    assert_error(charlie_client.get("/api/v1/orgs/acme"), 404, "NOT_FOUND")
    assert_error(charlie_client.get("/api/v1/orgs/acme/members"), 404, "NOT_FOUND")


def test_member_with_2fa_is_not_affected(cast, alice_client, bob_client):
    enable_totp(bob_client, cast.bob)
    enable_totp(alice_client, cast.alice)
    assert require_2fa(alice_client).status_code == 200
    assert bob_client.get("/api/v1/orgs/acme/members").status_code == 200
    assert not AuditRecord.objects.filter(action="auth:2fa_required").exists()


def test_disabling_2fa_locks_the_member_out_again(cast, alice_client, bob_client, clock_shift):
    to_step_start()
    device, _codes = enable_totp(bob_client, cast.bob)
    enable_totp(alice_client, cast.alice)
    assert require_2fa(alice_client).status_code == 200
    assert bob_client.get("/api/v1/orgs/acme").status_code == 200
    clock_shift(30)

    response = bob_client.post(
        "/api/v1/auth/2fa/disable", {"otp_code": code_now(device)}, format="json"
    )

    assert response.status_code == 204, response.content
    assert_error(bob_client.get("/api/v1/orgs/acme"), 403, "TWO_FACTOR_REQUIRED")


def test_turning_the_policy_off_lets_members_back_in(cast, alice_client, bob_client, dave_client):
    enable_totp(dave_client, cast.dave)
    enable_totp(alice_client, cast.alice)
    assert require_2fa(alice_client).status_code == 200
    assert_error(bob_client.get("/api/v1/orgs/acme"), 403, "TWO_FACTOR_REQUIRED")

    # dave (Admin, holds org:update and has 2FA) turns it off again.
    response = require_2fa(dave_client, False)

    assert response.status_code == 200, response.content
    assert Organization.objects.get(slug="acme").require_2fa is False
    assert bob_client.get("/api/v1/orgs/acme").status_code == 200


def test_only_org_update_holders_change_the_policy(
    cast, bob_client, vera_client, charlie_client, alice_client
):
    assert_error(require_2fa(bob_client), 403, "PERMISSION_DENIED")
    assert_error(require_2fa(vera_client), 403, "PERMISSION_DENIED")
    assert_error(require_2fa(charlie_client), 404, "NOT_FOUND")
    assert Organization.objects.get(slug="acme").require_2fa is False
    assert not AuditRecord.objects.filter(action="org:update", outcome="success").exists()
    denied = AuditRecord.objects.filter(action="org:update", outcome="denied", status_code=403)
    assert sorted(denied.values_list("actor_label", flat=True)) == ["bob", "vera"]
    assert set(denied.values_list("org", flat=True)) == {cast.acme.pk}
    assert set(denied.values_list("status_code", flat=True)) == {403}

    error = assert_error(
        alice_client.patch("/api/v1/orgs/acme", {"require_2fa": "maybe"}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert "require_2fa" in error["details"]
    assert Organization.objects.get(slug="acme").require_2fa is False
