"""Roles: built-ins and custom roles, aliases, bounded delegation, in-use protection."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from audit.models import AuditRecord
from orgs.access import BUILTIN_ROLES
from orgs.models import Invitation, Membership, Role
from tests.conftest import add_member, assert_error, builtin_role, client_for, make_user

ROLE_FIELDS = {
    "id",
    "slug",
    "name",
    "description",
    "permissions",
    "is_builtin",
    "member_count",
    "created_at",
}


def role_url(role, org: str = "acme") -> str:
    return f"/api/v1/orgs/{org}/roles/{role.pk}"


def make_role(org, slug: str, permissions: list[str]) -> Role:
    return Role.objects.create(
        org=org, slug=slug, name=slug.title(), permissions=sorted(permissions)
    )


def assign(cast, username: str, role: Role) -> None:
    Membership.all_orgs.filter(org=cast.acme, user__username=username).update(role=role)


# --- list and read -------------------------------------------------------------------------


def test_list_shows_builtins_and_own_custom_roles(cast, vera_client):
    ops = make_role(cast.acme, "ops", ["org:view", "team:manage"])
    make_role(cast.globex, "globex-secret", ["org:view"])
    response = vera_client.get("/api/v1/orgs/acme/roles")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 5
    rows = {row["slug"]: row for row in body["results"]}
    assert set(rows) == {"owner", "admin", "member", "viewer", "ops"}
    for slug, (name, permissions) in BUILTIN_ROLES.items():
        assert rows[slug]["is_builtin"] is True
        assert rows[slug]["name"] == name
        assert set(rows[slug]["permissions"]) == set(permissions)
        assert rows[slug]["id"] == str(builtin_role(slug).pk)
    assert rows["ops"]["is_builtin"] is False
    assert rows["ops"]["id"] == str(ops.pk)
    assert rows["ops"]["permissions"] == ["org:view", "team:manage"]
    assert set(rows["ops"]) == ROLE_FIELDS


def test_member_counts_are_per_org(cast, alice_client):
    # globex has an owner too, and more members: acme's counts must not include them.
    for name in ("g1", "g2", "g3"):
        add_member(cast.globex, make_user(name), "member")
    rows = {
        row["slug"]: row for row in alice_client.get("/api/v1/orgs/acme/roles").json()["results"]
    }
    assert {slug: rows[slug]["member_count"] for slug in BUILTIN_ROLES} == {
        "owner": 1,
        "admin": 1,
        "member": 1,
        "viewer": 1,
    }
    detail = alice_client.get(role_url(builtin_role("member"))).json()
    assert detail["member_count"] == 1


def test_builtin_role_detail(cast, bob_client):
    response = bob_client.get(role_url(builtin_role("admin")))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["slug"] == "admin" and body["is_builtin"] is True
    assert "org:delete" not in body["permissions"] and "billing:manage" not in body["permissions"]


def test_unknown_role_id_is_404(cast, bob_client):
    assert_error(bob_client.get(f"/api/v1/orgs/acme/roles/{uuid.uuid4()}"), 404, "NOT_FOUND")


def test_role_list_other_org_is_404_and_unauthenticated_401(cast, charlie_client, anon_client):
    assert_error(charlie_client.get("/api/v1/orgs/acme/roles"), 404, "NOT_FOUND")
    assert_error(anon_client.get("/api/v1/orgs/acme/roles"), 401, "AUTHENTICATION_FAILED")


# --- create --------------------------------------------------------------------------------


def test_create_custom_role_with_aliases(cast, alice_client):
    response = alice_client.post(
        "/api/v1/orgs/acme/roles",
        {
            "slug": "model-user",
            "name": "Model user",
            "description": "Reads models and runs them",
            "permissions": [
                "read_models",
                "run_inference",
                "use_streaming",
                "usage:view",
                "read_models",
            ],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["permissions"] == ["inference:run", "inference:stream", "model:read", "usage:view"]
    assert body["is_builtin"] is False and body["slug"] == "model-user"
    role = Role.objects.get(pk=body["id"])
    assert role.org == cast.acme
    assert role.permissions == ["inference:run", "inference:stream", "model:read", "usage:view"]
    assert role.description == "Reads models and runs them"
    record = AuditRecord.objects.get(action="policy:manage", org=cast.acme)
    assert record.outcome == "success" and record.actor_user == cast.alice
    assert record.target_id == str(role.pk) and record.data["op"] == "role_create"
    # It shows up in the list.
    slugs = [r["slug"] for r in alice_client.get("/api/v1/orgs/acme/roles").json()["results"]]
    assert "model-user" in slugs


def test_every_alias_maps_to_its_permission(cast, alice_client):
    aliases = [
        "read_models",
        "write_models",
        "delete_models",
        "run_inference",
        "use_streaming",
        "read_metrics",
        "view_audit_logs",
        "manage_users",
        "manage_cache",
    ]
    response = alice_client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": "legacy", "name": "Legacy", "permissions": aliases},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["permissions"] == sorted(
        [
            "model:read",
            "model:write",
            "model:delete",
            "inference:run",
            "inference:stream",
            "usage:view",
            "metrics:read",
            "audit_log:view",
            "member:update",
            "cache:manage",
        ]
    )


def test_unknown_permission_names_are_400_with_details(cast, alice_client):
    response = alice_client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": "weird", "name": "Weird", "permissions": ["model:read", "fly", "org:own"]},
        format="json",
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    messages = error["details"]["permissions"]
    assert any("fly" in m for m in messages) and any("org:own" in m for m in messages)
    assert not any("model:read" in m for m in messages)
    assert not Role.objects.filter(slug="weird").exists()
    assert not AuditRecord.objects.filter(action="policy:manage", outcome="success").exists()


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"name", "permissions"}),  # slug: derived from the name
        ({"slug": "Bad Slug", "name": "X", "permissions": []}, {"slug"}),
        ({"slug": "ok", "name": "", "permissions": []}, {"name"}),
        ({"slug": "ok", "name": "X", "permissions": "model:read"}, {"permissions"}),
        ({"slug": "ok", "name": "X", "permissions": [["nested"]]}, {"permissions"}),
    ],
)
def test_create_invalid_input_is_400(cast, alice_client, payload, fields):
    error = assert_error(
        alice_client.post("/api/v1/orgs/acme/roles", payload, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert fields <= set(error["details"]), error
    assert not Role.objects.filter(org=cast.acme).exists()


def test_duplicate_slug_is_409(cast, alice_client):
    make_role(cast.acme, "ops", ["org:view"])
    response = alice_client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": "ops", "name": "Ops 2", "permissions": []},
        format="json",
    )
    error = assert_error(response, 409, "CONFLICT")
    assert "slug" in error["details"]
    assert Role.objects.filter(org=cast.acme, slug="ops").count() == 1


def test_same_slug_in_another_org_is_fine(cast, alice_client):
    make_role(cast.globex, "ops", ["org:view"])
    response = alice_client.post(
        "/api/v1/orgs/acme/roles", {"slug": "ops", "name": "Ops", "permissions": []}, format="json"
    )
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("slug", ["owner", "admin", "member", "viewer"])
def test_builtin_slug_is_reserved(cast, alice_client, slug):
    response = alice_client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": slug, "name": "Fake", "permissions": ["org:view"]},
        format="json",
    )
    assert_error(response, 409, "CONFLICT")
    assert not Role.objects.filter(org=cast.acme).exists()


@pytest.mark.parametrize("who", ["bob", "vera"])
def test_create_needs_policy_manage(cast, who):
    response = client_for(getattr(cast, who)).post(
        "/api/v1/orgs/acme/roles",
        {"slug": "mine", "name": "Mine", "permissions": ["org:view"]},
        format="json",
    )
    error = assert_error(response, 403, "PERMISSION_DENIED")
    assert "policy:manage" in error["message"]
    assert not Role.objects.filter(slug="mine").exists()
    assert AuditRecord.objects.filter(
        action="policy:manage", outcome="denied", actor_user=getattr(cast, who)
    ).exists()


def test_admin_cannot_create_a_role_with_permissions_they_lack(cast, dave_client):
    response = dave_client.post(
        "/api/v1/orgs/acme/roles",
        {
            "slug": "money",
            "name": "Money",
            "permissions": ["billing:manage", "org:delete", "usage:view"],
        },
        format="json",
    )
    error = assert_error(response, 403, "PERMISSION_DENIED")
    assert error["details"] == {"missing_permissions": ["billing:manage", "org:delete"]}
    assert not Role.objects.filter(slug="money").exists()
    assert not AuditRecord.objects.filter(action="policy:manage", outcome="success").exists()
    # Within his own permissions dave may.
    ok = dave_client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": "money", "name": "Money", "permissions": ["usage:view"]},
        format="json",
    )
    assert ok.status_code == 201, ok.content


def test_custom_role_holder_cannot_grant_beyond_their_own_role(cast, alice_client):
    make_role(cast.acme, "policy-lite", ["policy:manage", "member:view", "org:view"])
    assign(cast, "bob", Role.objects.get(slug="policy-lite"))
    bob_client = client_for(cast.bob)
    response = bob_client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": "bigger", "name": "Bigger", "permissions": ["team:manage"]},
        format="json",
    )
    assert assert_error(response, 403, "PERMISSION_DENIED")["details"] == {
        "missing_permissions": ["team:manage"]
    }
    response = bob_client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": "smaller", "name": "Smaller", "permissions": ["org:view"]},
        format="json",
    )
    assert response.status_code == 201, response.content


def test_create_other_org_is_404_and_unauthenticated_401(cast, charlie_client, anon_client):
    payload = {"slug": "sneaky", "name": "Sneaky", "permissions": []}
    assert_error(
        charlie_client.post("/api/v1/orgs/acme/roles", payload, format="json"), 404, "NOT_FOUND"
    )
    assert_error(
        anon_client.post("/api/v1/orgs/acme/roles", payload, format="json"),
        401,
        "AUTHENTICATION_FAILED",
    )
    assert not Role.objects.filter(slug="sneaky").exists()


# --- update ----------------------------------------------------------------------------------


def test_update_custom_role(cast, alice_client):
    ops = make_role(cast.acme, "ops", ["org:view"])
    response = alice_client.patch(
        role_url(ops),
        {
            "name": "Operations",
            "description": "Runs things",
            "permissions": ["org:view", "manage_users"],
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["permissions"] == ["member:update", "org:view"]
    ops.refresh_from_db()
    assert (ops.name, ops.description, ops.slug) == ("Operations", "Runs things", "ops")
    assert ops.permissions == ["member:update", "org:view"]
    record = AuditRecord.objects.get(action="policy:manage", org=cast.acme)
    assert record.data["op"] == "role_update"
    assert set(record.data["changed"]) == {"permissions", "name", "description"}


def test_update_with_unknown_permission_is_400(cast, alice_client):
    ops = make_role(cast.acme, "ops", ["org:view"])
    error = assert_error(
        alice_client.patch(role_url(ops), {"permissions": ["nope"]}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert "permissions" in error["details"]
    ops.refresh_from_db()
    assert ops.permissions == ["org:view"]


@pytest.mark.parametrize("slug", ["owner", "admin", "member", "viewer"])
def test_builtin_roles_cannot_be_changed_or_deleted(cast, alice_client, slug):
    role = builtin_role(slug)
    before = (role.name, sorted(role.permissions))
    assert_error(
        alice_client.patch(role_url(role), {"name": "Renamed"}, format="json"), 409, "CONFLICT"
    )
    assert_error(
        alice_client.patch(role_url(role), {"permissions": ["org:view"]}, format="json"),
        409,
        "CONFLICT",
    )
    assert_error(alice_client.delete(role_url(role)), 409, "CONFLICT")
    role.refresh_from_db()
    assert (role.name, sorted(role.permissions)) == before
    assert not AuditRecord.objects.filter(action="policy:manage", outcome="success").exists()


def test_admin_cannot_edit_a_role_holding_permissions_he_lacks(cast, dave_client):
    finance = make_role(cast.acme, "finance", ["billing:manage", "usage:view"])
    error = assert_error(
        dave_client.patch(role_url(finance), {"name": "Renamed"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert error["details"] == {"missing_permissions": ["billing:manage"]}
    error = assert_error(
        dave_client.patch(role_url(finance), {"permissions": ["usage:view"]}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert_error(dave_client.delete(role_url(finance)), 403, "PERMISSION_DENIED")
    finance.refresh_from_db()
    assert finance.name == "Finance" and finance.permissions == ["billing:manage", "usage:view"]
    assert Role.objects.filter(pk=finance.pk).exists()


def test_admin_cannot_add_permissions_he_lacks(cast, dave_client):
    ops = make_role(cast.acme, "ops", ["usage:view"])
    error = assert_error(
        dave_client.patch(
            role_url(ops), {"permissions": ["usage:view", "org:delete"]}, format="json"
        ),
        403,
        "PERMISSION_DENIED",
    )
    assert error["details"] == {"missing_permissions": ["org:delete"]}
    ops.refresh_from_db()
    assert ops.permissions == ["usage:view"]


def test_update_needs_policy_manage(cast, bob_client):
    ops = make_role(cast.acme, "ops", ["org:view"])
    assert_error(
        bob_client.patch(role_url(ops), {"name": "Mine"}, format="json"), 403, "PERMISSION_DENIED"
    )
    assert_error(bob_client.delete(role_url(ops)), 403, "PERMISSION_DENIED")
    ops.refresh_from_db()
    assert ops.name == "Ops"


# --- delete ------------------------------------------------------------------------------------


def test_delete_unused_role(cast, alice_client):
    ops = make_role(cast.acme, "ops", ["org:view"])
    assert alice_client.delete(role_url(ops)).status_code == 204
    assert not Role.objects.filter(pk=ops.pk).exists()
    record = AuditRecord.objects.get(action="policy:manage")
    assert record.data == {"op": "role_delete", "slug": "ops", "spent_invitations_removed": 0}
    assert record.target_id == str(ops.pk)


def test_role_in_use_cannot_be_deleted(cast, alice_client):
    ops = make_role(cast.acme, "ops", ["org:view"])
    assign(cast, "bob", ops)
    error = assert_error(alice_client.delete(role_url(ops)), 409, "CONFLICT")
    assert error["message"]
    assert Role.objects.filter(pk=ops.pk).exists()
    assert not AuditRecord.objects.filter(action="policy:manage", outcome="success").exists()
    # Once bob has another role, it can go.
    assign(cast, "bob", builtin_role("member"))
    assert alice_client.delete(role_url(ops)).status_code == 204


def test_role_of_a_pending_invitation_cannot_be_deleted(cast, alice_client):
    ops = make_role(cast.acme, "ops", ["org:view"])
    response = alice_client.post(
        "/api/v1/orgs/acme/invitations",
        {"email": "frank@example.com", "role": "ops"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert_error(alice_client.delete(role_url(ops)), 409, "CONFLICT")
    assert Role.objects.filter(pk=ops.pk).exists()
    # Revoked, the invitation no longer holds the role.
    assert (
        alice_client.delete(f"/api/v1/orgs/acme/invitations/{response.json()['id']}").status_code
        == 200
    )
    assert alice_client.delete(role_url(ops)).status_code == 204
    assert not Role.objects.filter(pk=ops.pk).exists()
    assert not Invitation.all_orgs.filter(pk=response.json()["id"]).exists()
    record = AuditRecord.objects.get(action="policy:manage", data__op="role_delete")
    assert record.data["spent_invitations_removed"] == 1


def test_role_of_an_accepted_invitation_can_be_deleted_once_unassigned(
    cast, alice_client, django_capture_on_commit_callbacks
):
    from django.core import mail

    from tests.conftest import invitation_token

    ops = make_role(cast.acme, "ops", ["org:view"])
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(
            "/api/v1/orgs/acme/invitations",
            {"email": "frank@example.com", "role": "ops"},
            format="json",
        )
    accepted = APIClient().post(
        f"/api/v1/invitations/{invitation_token(mail.outbox[0])}/accept",
        {"username": "frank", "password": "a-long-enough-passphrase"},
        format="json",
    )
    assert accepted.status_code == 201, accepted.content
    assert_error(alice_client.delete(role_url(ops)), 409, "CONFLICT")  # frank holds it
    assign(cast, "frank", builtin_role("viewer"))
    assert alice_client.delete(role_url(ops)).status_code == 204
    assert not Role.objects.filter(pk=ops.pk).exists()
    assert Membership.all_orgs.get(org=cast.acme, user__username="frank").role.slug == "viewer"


def test_another_orgs_role_is_404(cast, charlie_client):
    ops = make_role(cast.acme, "ops", ["org:view"])
    for method in ("get", "patch", "delete"):
        response = getattr(charlie_client, method)(
            role_url(ops, org="globex"), {"name": "x"}, format="json"
        )
        assert_error(response, 404, "NOT_FOUND")
    ops.refresh_from_db()
    assert ops.name == "Ops"


def test_role_detail_unauthenticated_is_401(cast, anon_client):
    ops = make_role(cast.acme, "ops", ["org:view"])
    assert_error(anon_client.get(role_url(ops)), 401, "AUTHENTICATION_FAILED")
    assert_error(anon_client.delete(role_url(ops)), 401, "AUTHENTICATION_FAILED")
    assert Role.objects.filter(pk=ops.pk).exists()
