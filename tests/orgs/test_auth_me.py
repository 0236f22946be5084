"""GET /api/v1/auth/me: the user, their memberships, role and effective permissions per org."""

from __future__ import annotations

from orgs.access import BUILTIN_ROLES, PERMISSION_SET
from orgs.models import Membership
from tests.conftest import add_member, assert_error, client_for, enable_totp


def memberships_by_slug(response) -> dict:
    assert response.status_code == 200, response.content
    return {m["org"]["slug"]: m for m in response.json()["memberships"]}


def test_me_lists_each_org_with_role_and_permissions(cast, alice_client):
    add_member(cast.globex, cast.alice, "viewer")

    response = alice_client.get("/api/v1/auth/me")

    body = response.json()
    assert body["user"]["username"] == "alice"
    assert body["user"]["id"] == str(cast.alice.pk)
    assert body["user"]["two_factor_enabled"] is False
    assert "password" not in body["user"]
    memberships = memberships_by_slug(response)
    assert list(memberships) == ["acme", "globex"]
    assert memberships["acme"]["role"]["slug"] == "owner"
    assert set(memberships["acme"]["permissions"]) == PERMISSION_SET
    assert memberships["globex"]["role"]["slug"] == "viewer"
    assert set(memberships["globex"]["permissions"]) == BUILTIN_ROLES["viewer"][1]
    assert "org:delete" not in memberships["globex"]["permissions"]
    assert memberships["acme"]["org"]["require_2fa"] is False


def test_each_builtin_role_shows_its_own_permissions(cast):
    for user, role in [(cast.bob, "member"), (cast.vera, "viewer"), (cast.dave, "admin")]:
        memberships = memberships_by_slug(client_for(user).get("/api/v1/auth/me"))
        assert list(memberships) == ["acme"], user.username
        assert memberships["acme"]["role"]["slug"] == role
        assert set(memberships["acme"]["permissions"]) == BUILTIN_ROLES[role][1], role
    admin = set(
        memberships_by_slug(client_for(cast.dave).get("/api/v1/auth/me"))["acme"]["permissions"]
    )
    assert "org:delete" not in admin and "billing:manage" not in admin
    # charlie sees only his own org.
    assert list(memberships_by_slug(client_for(cast.charlie).get("/api/v1/auth/me"))) == ["globex"]


def test_permissions_are_bounded_by_the_grantor_current_role(cast, bob_client):
    # bob's Member role was granted by vera, who is only a Viewer now: his
    # effective permissions are what both roles hold.
    vera = Membership.all_orgs.get(org=cast.acme, user=cast.vera)
    Membership.all_orgs.filter(org=cast.acme, user=cast.bob).update(granted_by_membership=vera)

    permissions = set(memberships_by_slug(bob_client.get("/api/v1/auth/me"))["acme"]["permissions"])

    assert permissions == BUILTIN_ROLES["member"][1] & BUILTIN_ROLES["viewer"][1]
    assert "inference:run" not in permissions


def test_me_shows_two_factor_state(cast, bob_client):
    enable_totp(bob_client, cast.bob)
    assert bob_client.get("/api/v1/auth/me").json()["user"]["two_factor_enabled"] is True


def test_me_needs_authentication(cast, anon_client):
    assert_error(anon_client.get("/api/v1/auth/me"), 401, "AUTHENTICATION_FAILED")
