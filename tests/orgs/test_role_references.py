"""Roles are named as displayed (``Member``) or by slug (``member``) everywhere; slugs
are derived from names when omitted (orgs.selectors.role_get_by_ref, slug_from_name)."""

from __future__ import annotations

import pytest

from keys.models import AccessRule, ServiceAccount
from orgs.models import Invitation, Membership, Role, Team
from tests.conftest import assert_error

ACME = "/api/v1/orgs/acme"


def bob_membership(cast) -> Membership:
    return Membership.all_orgs.select_related("role").get(org=cast.acme, user=cast.bob)


@pytest.mark.parametrize("ref", ["Viewer", "viewer", "VIEWER", " Viewer "])
def test_member_role_change_takes_the_displayed_name_or_the_slug(cast, alice_client, ref):
    membership = bob_membership(cast)
    response = alice_client.patch(f"{ACME}/members/{membership.pk}", {"role": ref}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["role"]["slug"] == "viewer"
    assert bob_membership(cast).role.slug == "viewer"


@pytest.mark.parametrize(("ref", "slug"), [("Admin", "admin"), ("member", "member")])
def test_invitation_takes_the_displayed_name(cast, alice_client, ref, slug):
    response = alice_client.post(
        f"{ACME}/invitations", {"email": "new@example.com", "role": ref}, format="json"
    )
    assert response.status_code == 201, response.content
    assert Invitation.all_orgs.get(pk=response.json()["id"]).role.slug == slug


def test_service_account_role_by_name_and_slug_derived(cast, alice_client):
    response = alice_client.post(
        f"{ACME}/service-accounts", {"name": "CI Bot", "role": "Member"}, format="json"
    )
    assert response.status_code == 201, response.content
    account = ServiceAccount.all_orgs.get(pk=response.json()["id"])
    assert (account.slug, account.role.slug) == ("ci-bot", "member")
    changed = alice_client.patch(
        f"{ACME}/service-accounts/{account.pk}", {"role": "Viewer"}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["role"]["slug"] == "viewer"


def test_access_rule_json_and_yaml_take_displayed_role_names(cast, alice_client):
    created = alice_client.post(
        f"{ACME}/access-rules", {"models": ["openai-main/*"], "roles": ["Member"]}, format="json"
    )
    assert created.status_code == 201, created.content
    assert created.json()["roles"] == ["member"]
    response = alice_client.put(
        f"{ACME}/access-rules.yaml",
        "authz_rules:\n  - models: [openai-main/*]\n    roles: [Member, Viewer]\n",
        content_type="application/yaml",
    )
    assert response.status_code == 200, response.content
    (rule,) = AccessRule.all_orgs.filter(org=cast.acme)
    assert sorted(r.slug for r in rule.roles.all()) == ["member", "viewer"]


def test_custom_role_by_name_and_by_derived_slug(cast, alice_client):
    created = alice_client.post(
        f"{ACME}/roles", {"name": "Data Science", "permissions": ["model:read"]}, format="json"
    )
    assert created.status_code == 201, created.content
    assert created.json()["slug"] == "data-science"
    membership = bob_membership(cast)
    for ref in ("data science", "Data-Science"):
        response = alice_client.patch(
            f"{ACME}/members/{membership.pk}", {"role": ref}, format="json"
        )
        assert response.status_code == 200, response.content
        assert bob_membership(cast).role.slug == "data-science"


def test_a_slug_wins_over_a_custom_role_named_like_a_builtin(cast, alice_client):
    # A custom role displayed as "admin" (slug "ops"): "admin" still names the built-in.
    custom = alice_client.post(
        f"{ACME}/roles",
        {"slug": "ops", "name": "admin", "permissions": ["model:read"]},
        format="json",
    )
    assert custom.status_code == 201, custom.content
    membership = bob_membership(cast)
    response = alice_client.patch(
        f"{ACME}/members/{membership.pk}", {"role": "admin"}, format="json"
    )
    assert response.status_code == 200, response.content
    role = bob_membership(cast).role
    assert role.is_builtin and role.slug == "admin"
    # The custom role is reached by its own slug.
    alice_client.patch(f"{ACME}/members/{membership.pk}", {"role": "ops"}, format="json")
    assert bob_membership(cast).role.pk == Role.objects.get(org=cast.acme, slug="ops").pk


def test_a_name_shared_by_two_roles_is_ambiguous(cast, alice_client):
    for slug in ("ops-eu", "ops-us"):
        response = alice_client.post(
            f"{ACME}/roles", {"slug": slug, "name": "Ops", "permissions": []}, format="json"
        )
        assert response.status_code == 201, response.content
    membership = bob_membership(cast)
    error = assert_error(
        alice_client.patch(f"{ACME}/members/{membership.pk}", {"role": "ops"}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert "slug or id" in error["details"]["role"][0]
    assert bob_membership(cast).role.slug == "member"
    yaml_error = assert_error(
        alice_client.put(
            f"{ACME}/access-rules.yaml",
            "authz_rules:\n  - models: [openai-main/*]\n    roles: [Ops]\n",
            content_type="application/yaml",
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert set(yaml_error["details"]) == {"authz_rules[0].roles"}


def test_an_unknown_role_reference_is_400(cast, alice_client):
    membership = bob_membership(cast)
    error = assert_error(
        alice_client.patch(f"{ACME}/members/{membership.pk}", {"role": "Superuser"}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert set(error["details"]) == {"role"}


def test_another_orgs_custom_role_is_not_found_by_name(cast, alice_client, charlie_client):
    created = charlie_client.post(
        "/api/v1/orgs/globex/roles", {"name": "Globex Ops", "permissions": []}, format="json"
    )
    assert created.status_code == 201, created.content
    membership = bob_membership(cast)
    for ref in ("Globex Ops", "globex-ops", created.json()["id"]):
        assert_error(
            alice_client.patch(f"{ACME}/members/{membership.pk}", {"role": ref}, format="json"),
            400,
            "VALIDATION_ERROR",
        )


# --- slugs derived from names --------------------------------------------------------------


def test_team_slug_is_derived_from_the_name(cast, alice_client):
    response = alice_client.post(f"{ACME}/teams", {"name": "ML Platform_2"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["slug"] == "ml-platform-2"
    assert Team.all_orgs.filter(org=cast.acme, slug="ml-platform-2").exists()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("teams", {"name": "ML Platform"}),
        ("roles", {"name": "ML Platform", "permissions": []}),
        ("service-accounts", {"name": "ML Platform", "role": "Viewer"}),
    ],
)
def test_a_derived_slug_that_is_taken_is_a_conflict(cast, alice_client, path, body):
    assert alice_client.post(f"{ACME}/{path}", body, format="json").status_code == 201
    error = assert_error(alice_client.post(f"{ACME}/{path}", body, format="json"), 409, "CONFLICT")
    assert set(error["details"]) == {"slug"}
    # A slug given explicitly resolves the clash.
    again = alice_client.post(f"{ACME}/{path}", {**body, "slug": "ml-platform-2"}, format="json")
    assert again.status_code == 201, again.content


def test_a_custom_role_named_like_a_builtin_needs_its_own_slug(cast, alice_client):
    error = assert_error(
        alice_client.post(f"{ACME}/roles", {"name": "Admin", "permissions": []}, format="json"),
        409,
        "CONFLICT",
    )
    assert set(error["details"]) == {"slug"}


def test_a_name_without_letters_needs_a_slug(cast, alice_client):
    error = assert_error(
        alice_client.post(f"{ACME}/teams", {"name": "!!!"}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert set(error["details"]) == {"slug"}


@pytest.mark.parametrize("ref", ["Viewer", "viewer"])
def test_member_and_service_account_lists_filter_by_role_reference(cast, alice_client, ref):
    members = alice_client.get(f"{ACME}/members", {"role": ref})
    assert members.status_code == 200, members.content
    assert [m["user"]["username"] for m in members.json()["results"]] == ["vera"]
    for name, role in (("Bot A", "Viewer"), ("Bot B", "Member")):
        created = alice_client.post(
            f"{ACME}/service-accounts", {"name": name, "role": role}, format="json"
        )
        assert created.status_code == 201, created.content
    accounts = alice_client.get(f"{ACME}/service-accounts", {"role": ref})
    assert [a["slug"] for a in accounts.json()["results"]] == ["bot-a"]
    assert_error(alice_client.get(f"{ACME}/members", {"role": "nope"}), 400, "VALIDATION_ERROR")
