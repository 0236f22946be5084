"""Members: list, change role, remove, leave; owner rules; bounded delegation at use."""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditRecord
from orgs.access import BUILTIN_ROLES
from orgs.models import Membership, Role, Team, TeamMember
from tests.conftest import add_member, assert_error, builtin_role, client_for, make_user


def membership(cast, username: str, org=None) -> Membership:
    return Membership.all_orgs.select_related("role").get(
        org=org or cast.acme, user__username=username
    )


def member_url(m: Membership, org: str = "acme") -> str:
    return f"/api/v1/orgs/{org}/members/{m.pk}"


def role_of(cast, username: str) -> str:
    return membership(cast, username).role.slug


def perms_in_me(client, org_slug: str = "acme") -> set[str]:
    me = client.get("/api/v1/auth/me")
    assert me.status_code == 200, me.content
    entry = next(m for m in me.json()["memberships"] if m["org"]["slug"] == org_slug)
    return set(entry["permissions"])


def create_role(client, slug: str, permissions: list[str]) -> Role:
    response = client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": slug, "name": slug.title(), "permissions": permissions},
        format="json",
    )
    assert response.status_code == 201, response.content
    return Role.objects.get(pk=response.json()["id"])


# --- list and read -------------------------------------------------------------------------


def test_any_member_lists_members(cast, vera_client):
    response = vera_client.get("/api/v1/orgs/acme/members")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 4
    rows = {row["user"]["username"]: row for row in body["results"]}
    assert {name: row["role"]["slug"] for name, row in rows.items()} == {
        "alice": "owner",
        "bob": "member",
        "vera": "viewer",
        "dave": "admin",
    }
    assert set(rows["bob"]) == {"id", "user", "role", "created_at", "updated_at"}
    assert rows["bob"]["id"] == str(membership(cast, "bob").pk)
    assert rows["bob"]["user"] == {
        "id": str(cast.bob.pk),
        "username": "bob",
        "email": "bob@example.com",
    }


def test_member_list_is_paginated(cast, bob_client):
    body = bob_client.get("/api/v1/orgs/acme/members?page_size=3").json()
    assert body["count"] == 4 and len(body["results"]) == 3 and body["next"]
    rest = bob_client.get(body["next"]).json()
    assert len(rest["results"]) == 1 and rest["next"] is None
    names = {r["user"]["username"] for r in body["results"] + rest["results"]}
    assert names == {"alice", "bob", "vera", "dave"}


def test_member_list_other_org_is_404(cast, charlie_client):
    assert_error(charlie_client.get("/api/v1/orgs/acme/members"), 404, "NOT_FOUND")
    # and globex's list shows only globex.
    body = charlie_client.get("/api/v1/orgs/globex/members").json()
    assert [r["user"]["username"] for r in body["results"]] == ["charlie"]


def test_member_list_unauthenticated_is_401(cast, anon_client):
    assert_error(anon_client.get("/api/v1/orgs/acme/members"), 401, "AUTHENTICATION_FAILED")


def test_member_detail(cast, bob_client):
    m = membership(cast, "vera")
    response = bob_client.get(member_url(m))
    assert response.status_code == 200, response.content
    assert response.json()["user"]["username"] == "vera"
    assert response.json()["role"] == {
        "id": str(builtin_role("viewer").pk),
        "slug": "viewer",
        "name": "Viewer",
    }
    assert_error(bob_client.get(f"/api/v1/orgs/acme/members/{uuid.uuid4()}"), 404, "NOT_FOUND")


# --- change role -----------------------------------------------------------------------------


def test_owner_changes_a_role_by_slug_and_by_id(cast, alice_client):
    bob = membership(cast, "bob")
    response = alice_client.patch(member_url(bob), {"role": "viewer"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["role"]["slug"] == "viewer"
    bob.refresh_from_db()
    assert bob.role.slug == "viewer"
    assert bob.granted_by_membership == membership(cast, "alice")
    record = AuditRecord.objects.get(action="member:update", org=cast.acme)
    assert record.outcome == "success" and record.actor_user == cast.alice
    assert record.target_id == str(bob.pk)
    assert record.data["role_before"] == "member" and record.data["role_after"] == "viewer"

    response = alice_client.patch(
        member_url(bob), {"role": str(builtin_role("member").pk)}, format="json"
    )
    assert response.status_code == 200, response.content
    assert role_of(cast, "bob") == "member"
    assert AuditRecord.objects.filter(action="member:update", outcome="success").count() == 2


def test_admin_changes_a_non_owner_role(cast, dave_client):
    response = dave_client.patch(
        member_url(membership(cast, "vera")), {"role": "member"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert role_of(cast, "vera") == "member"
    assert membership(cast, "vera").granted_by_membership == membership(cast, "dave")


@pytest.mark.parametrize("who", ["bob", "vera"])
def test_change_role_needs_member_update(cast, who):
    client = client_for(getattr(cast, who))
    target = membership(cast, "vera" if who == "bob" else "bob")
    before = target.role.slug
    error = assert_error(
        client.patch(member_url(target), {"role": "viewer"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert "member:update" in error["message"]
    assert membership(cast, target.user.username).role.slug == before
    assert not AuditRecord.objects.filter(action="member:update", outcome="success").exists()
    assert AuditRecord.objects.filter(
        action="member:update", outcome="denied", actor_user=getattr(cast, who)
    ).exists()


def test_nobody_promotes_themself(cast, bob_client):
    assert_error(
        bob_client.patch(member_url(membership(cast, "bob")), {"role": "admin"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert role_of(cast, "bob") == "member"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "role"),
        ({"role": "wizard"}, "role"),
        ({"role": str(uuid.uuid4())}, "role"),
        ({"role": ""}, "role"),
    ],
)
def test_change_role_invalid_input_is_400(cast, alice_client, payload, field):
    error = assert_error(
        alice_client.patch(member_url(membership(cast, "bob")), payload, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert field in error["details"]
    assert role_of(cast, "bob") == "member"
    assert not AuditRecord.objects.filter(action="member:update", outcome="success").exists()


def test_change_role_to_another_orgs_custom_role_is_refused(cast, alice_client, charlie_client):
    globex_role = charlie_client.post(
        "/api/v1/orgs/globex/roles",
        {"slug": "ops", "name": "Ops", "permissions": ["org:view"]},
        format="json",
    ).json()
    response = alice_client.patch(
        member_url(membership(cast, "bob")), {"role": globex_role["id"]}, format="json"
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert role_of(cast, "bob") == "member"


def test_change_role_other_org_is_404(cast, charlie_client):
    assert_error(
        charlie_client.patch(
            member_url(membership(cast, "bob")), {"role": "viewer"}, format="json"
        ),
        404,
        "NOT_FOUND",
    )
    assert role_of(cast, "bob") == "member"


def test_change_role_unauthenticated_is_401(cast, anon_client):
    assert_error(
        anon_client.patch(member_url(membership(cast, "bob")), {"role": "viewer"}, format="json"),
        401,
        "AUTHENTICATION_FAILED",
    )
    assert role_of(cast, "bob") == "member"


# --- owners ----------------------------------------------------------------------------------


def test_last_owner_cannot_demote_themself(cast, alice_client):
    error = assert_error(
        alice_client.patch(member_url(membership(cast, "alice")), {"role": "admin"}, format="json"),
        409,
        "CONFLICT",
    )
    assert "Owner" in error["message"]
    assert role_of(cast, "alice") == "owner"
    assert not AuditRecord.objects.filter(action="member:update", outcome="success").exists()


def test_last_owner_cannot_leave(cast, alice_client):
    assert_error(alice_client.delete(member_url(membership(cast, "alice"))), 409, "CONFLICT")
    assert Membership.all_orgs.filter(org=cast.acme, user=cast.alice).exists()
    assert not AuditRecord.objects.filter(action="member:delete", outcome="success").exists()


def test_owner_promotes_and_then_may_step_down(cast, alice_client):
    response = alice_client.patch(
        member_url(membership(cast, "bob")), {"role": "owner"}, format="json"
    )
    assert response.status_code == 200, response.content
    bob = membership(cast, "bob")
    assert bob.role.slug == "owner"
    assert bob.granted_by_membership is None  # owners are unbounded
    assert perms_in_me(client_for(cast.bob)) == set(BUILTIN_ROLES["owner"][1])

    # With two owners alice may demote herself; then bob is the last one.
    response = alice_client.patch(
        member_url(membership(cast, "alice")), {"role": "admin"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert role_of(cast, "alice") == "admin"
    bob_client = client_for(cast.bob)
    assert_error(
        bob_client.patch(member_url(bob), {"role": "member"}, format="json"), 409, "CONFLICT"
    )
    assert_error(bob_client.delete(member_url(bob)), 409, "CONFLICT")
    assert role_of(cast, "bob") == "owner"


def test_owner_removes_another_owner(cast, alice_client):
    alice_client.patch(member_url(membership(cast, "dave")), {"role": "owner"}, format="json")
    assert role_of(cast, "dave") == "owner"
    dave = membership(cast, "dave")
    assert alice_client.delete(member_url(dave)).status_code == 204
    assert not Membership.all_orgs.filter(pk=dave.pk).exists()
    record = AuditRecord.objects.get(action="member:delete")
    assert record.target_id == str(dave.pk) and record.data == {"user": "dave", "left": False}


def test_admin_cannot_promote_to_owner(cast, dave_client):
    error = assert_error(
        dave_client.patch(member_url(membership(cast, "bob")), {"role": "owner"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert error["message"]
    assert role_of(cast, "bob") == "member"
    # Not even himself.
    assert_error(
        dave_client.patch(member_url(membership(cast, "dave")), {"role": "owner"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert role_of(cast, "dave") == "admin"
    assert not AuditRecord.objects.filter(action="member:update", outcome="success").exists()


@pytest.mark.parametrize("new_role", ["admin", "member", "viewer"])
def test_admin_cannot_change_an_owner(cast, dave_client, new_role):
    # A second owner exists, so the last-owner rule is not what refuses.
    add_member(cast.acme, make_user("olga"), "owner")
    error = assert_error(
        dave_client.patch(member_url(membership(cast, "alice")), {"role": new_role}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert "Owner" in error["message"]
    assert role_of(cast, "alice") == "owner"


def test_admin_cannot_remove_an_owner(cast, dave_client):
    add_member(cast.acme, make_user("olga"), "owner")
    assert_error(
        dave_client.delete(member_url(membership(cast, "alice"))), 403, "PERMISSION_DENIED"
    )
    assert Membership.all_orgs.filter(org=cast.acme, user=cast.alice).exists()
    assert not AuditRecord.objects.filter(action="member:delete", outcome="success").exists()


# --- remove and leave --------------------------------------------------------------------------


def test_admin_removes_a_member(cast, dave_client):
    vera = membership(cast, "vera")
    team = Team.all_orgs.create(org=cast.acme, slug="ops", name="Ops")
    TeamMember.all_orgs.create(org=cast.acme, team=team, user=cast.vera)
    assert dave_client.delete(member_url(vera)).status_code == 204
    assert not Membership.all_orgs.filter(pk=vera.pk).exists()
    assert not TeamMember.all_orgs.filter(user=cast.vera).exists()
    record = AuditRecord.objects.get(action="member:delete")
    assert (
        record.outcome == "success" and record.actor_user == cast.dave and record.org == cast.acme
    )
    assert record.data == {"user": "vera", "left": False}
    # Her access ends at once.
    assert_error(client_for(cast.vera).get("/api/v1/orgs/acme"), 404, "NOT_FOUND")


@pytest.mark.parametrize("who", ["bob", "vera"])
def test_removing_others_needs_member_delete(cast, who):
    target = membership(cast, "dave")
    error = assert_error(
        client_for(getattr(cast, who)).delete(member_url(target)), 403, "PERMISSION_DENIED"
    )
    assert "member:delete" in error["message"]
    assert Membership.all_orgs.filter(pk=target.pk).exists()
    assert not AuditRecord.objects.filter(action="member:delete", outcome="success").exists()


@pytest.mark.parametrize("who", ["bob", "vera", "dave"])
def test_anyone_can_leave(cast, who):
    client = client_for(getattr(cast, who))
    mine = membership(cast, who)
    assert client.delete(member_url(mine)).status_code == 204
    assert not Membership.all_orgs.filter(pk=mine.pk).exists()
    record = AuditRecord.objects.get(action="member:delete")
    assert record.actor_user == getattr(cast, who) and record.data == {"user": who, "left": True}
    assert_error(client.get("/api/v1/orgs/acme"), 404, "NOT_FOUND")
    assert [o["slug"] for o in client.get("/api/v1/orgs").json()["results"]] == []


def test_remove_other_org_is_404(cast, charlie_client):
    bob = membership(cast, "bob")
    assert_error(charlie_client.delete(member_url(bob)), 404, "NOT_FOUND")
    assert_error(charlie_client.delete(member_url(bob, org="globex")), 404, "NOT_FOUND")
    assert Membership.all_orgs.filter(pk=bob.pk).exists()


def test_remove_unauthenticated_is_401(cast, anon_client):
    bob = membership(cast, "bob")
    assert_error(anon_client.delete(member_url(bob)), 401, "AUTHENTICATION_FAILED")
    assert Membership.all_orgs.filter(pk=bob.pk).exists()


# --- bounded delegation ------------------------------------------------------------------------


def test_admin_cannot_assign_a_role_holding_billing_manage(cast, alice_client, dave_client):
    finance = create_role(alice_client, "finance", ["billing:manage", "usage:view"])
    error = assert_error(
        dave_client.patch(
            member_url(membership(cast, "bob")), {"role": str(finance.pk)}, format="json"
        ),
        403,
        "PERMISSION_DENIED",
    )
    assert error["details"] == {"missing_permissions": ["billing:manage"]}
    assert role_of(cast, "bob") == "member"
    assert not AuditRecord.objects.filter(action="member:update", outcome="success").exists()
    # The owner may.
    assert (
        alice_client.patch(
            member_url(membership(cast, "bob")), {"role": "finance"}, format="json"
        ).status_code
        == 200
    )
    assert role_of(cast, "bob") == "finance"


OPS = ["member:view", "team:manage", "usage:view", "org:view"]


def test_grants_shrink_when_the_grantor_is_demoted_and_rebind_to_the_remover(
    cast, alice_client, dave_client
):
    create_role(alice_client, "ops", OPS)
    bob_client = client_for(cast.bob)
    assert (
        dave_client.patch(
            member_url(membership(cast, "bob")), {"role": "ops"}, format="json"
        ).status_code
        == 200
    )
    assert membership(cast, "bob").granted_by_membership == membership(cast, "dave")
    assert perms_in_me(bob_client) == set(OPS)
    assert (
        bob_client.post(
            "/api/v1/orgs/acme/teams", {"slug": "one", "name": "One"}, format="json"
        ).status_code
        == 201
    )

    # dave loses team:manage: bob loses it too, at once, without any write to bob's row.
    assert (
        alice_client.patch(
            member_url(membership(cast, "dave")), {"role": "viewer"}, format="json"
        ).status_code
        == 200
    )
    assert membership(cast, "bob").role.slug == "ops"
    shrunk = set(OPS) & set(BUILTIN_ROLES["viewer"][1])
    assert perms_in_me(bob_client) == shrunk
    assert "team:manage" not in shrunk
    error = assert_error(
        bob_client.post("/api/v1/orgs/acme/teams", {"slug": "two", "name": "Two"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert "team:manage" in error["message"]
    assert not Team.all_orgs.filter(slug="two").exists()
    assert bob_client.get("/api/v1/orgs/acme/members").status_code == 200  # member:view stays

    # alice removes dave: bob's grant is re-bound to her, and her role holds all of ops.
    assert alice_client.delete(member_url(membership(cast, "dave"))).status_code == 204
    assert membership(cast, "bob").granted_by_membership == membership(cast, "alice")
    assert perms_in_me(bob_client) == set(OPS)
    assert (
        bob_client.post(
            "/api/v1/orgs/acme/teams", {"slug": "two", "name": "Two"}, format="json"
        ).status_code
        == 201
    )


def test_grant_rebinds_to_an_admin_remover(cast, alice_client, dave_client):
    create_role(alice_client, "ops", OPS)
    eve = make_user("eve")
    add_member(cast.acme, eve, "admin")
    dave_client.patch(member_url(membership(cast, "bob")), {"role": "ops"}, format="json")
    assert client_for(eve).delete(member_url(membership(cast, "dave"))).status_code == 204
    assert membership(cast, "bob").granted_by_membership == membership(cast, "eve")
    assert perms_in_me(client_for(cast.bob)) == set(OPS)


def test_grants_are_bounded_along_the_whole_chain(cast, alice_client):
    """eve grants dave 'lead', dave grants bob 'crew'; when eve loses her powers,
    dave holds nothing beyond viewing, and bob may not keep what dave lost."""
    create_role(alice_client, "lead", ["member:view", "member:update", "team:manage"])
    create_role(alice_client, "crew", ["member:view", "team:manage"])
    eve = make_user("eve")
    add_member(cast.acme, eve, "admin")
    eve_client, dave_client, bob_client = (
        client_for(eve),
        client_for(cast.dave),
        client_for(cast.bob),
    )
    assert (
        eve_client.patch(
            member_url(membership(cast, "dave")), {"role": "lead"}, format="json"
        ).status_code
        == 200
    )
    assert (
        dave_client.patch(
            member_url(membership(cast, "bob")), {"role": "crew"}, format="json"
        ).status_code
        == 200
    )
    assert perms_in_me(bob_client) == {"member:view", "team:manage"}

    assert (
        alice_client.patch(
            member_url(membership(cast, "eve")), {"role": "viewer"}, format="json"
        ).status_code
        == 200
    )
    assert perms_in_me(dave_client) == {"member:view"}
    assert perms_in_me(bob_client) == {"member:view"}
    assert_error(
        bob_client.post("/api/v1/orgs/acme/teams", {"slug": "x", "name": "X"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )


def test_leaving_grantor_does_not_unbind_the_grants_they_made(cast, alice_client, dave_client):
    """dave (bounded by eve, an admin demoted to viewer) gives bob a role and leaves:
    bob must not end up holding more than anyone still vouching for him."""
    create_role(alice_client, "ops", OPS)
    eve = make_user("eve")
    add_member(cast.acme, eve, "admin")
    # eve makes dave an admin again (so his grant is bounded by eve), he grants bob ops.
    assert (
        client_for(eve)
        .patch(member_url(membership(cast, "dave")), {"role": "admin"}, format="json")
        .status_code
        == 200
    )
    assert (
        dave_client.patch(
            member_url(membership(cast, "bob")), {"role": "ops"}, format="json"
        ).status_code
        == 200
    )
    # eve is demoted to viewer: dave and bob shrink with her.
    alice_client.patch(member_url(membership(cast, "eve")), {"role": "viewer"}, format="json")
    assert "team:manage" not in perms_in_me(client_for(cast.bob))
    # dave leaves: bob's grant must stay bounded by someone still in the org, not become unbounded.
    assert dave_client.delete(member_url(membership(cast, "dave"))).status_code == 204
    assert membership(cast, "bob").granted_by_membership == membership(cast, "eve")
    assert "team:manage" not in perms_in_me(client_for(cast.bob))
    assert AuditRecord.objects.get(action="member:delete").data == {"user": "dave", "left": True}


def test_me_reflects_a_custom_roles_edit_at_once(cast, alice_client):
    ops = create_role(alice_client, "ops", ["member:view"])
    alice_client.patch(member_url(membership(cast, "bob")), {"role": "ops"}, format="json")
    bob_client = client_for(cast.bob)
    assert perms_in_me(bob_client) == {"member:view"}
    assert (
        alice_client.patch(
            f"/api/v1/orgs/acme/roles/{ops.pk}",
            {"permissions": ["member:view", "team:manage"]},
            format="json",
        ).status_code
        == 200
    )
    assert perms_in_me(bob_client) == {"member:view", "team:manage"}


def test_an_owner_may_leave_when_another_owner_stays(cast, alice_client):
    olga = make_user("olga")
    add_member(cast.acme, olga, "owner")
    alice = membership(cast, "alice")
    assert alice_client.delete(member_url(alice)).status_code == 204
    assert not Membership.all_orgs.filter(pk=alice.pk).exists()
    assert AuditRecord.objects.get(action="member:delete").data == {"user": "alice", "left": True}
    # olga is now the last owner and cannot leave.
    assert_error(client_for(olga).delete(member_url(membership(cast, "olga"))), 409, "CONFLICT")
