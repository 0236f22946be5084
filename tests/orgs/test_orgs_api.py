"""Organizations through the API: list, create, read, update settings, delete, transfer."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from orgs.models import Membership, Organization
from orgs.services import tenancy
from tests.conftest import PASSWORD, assert_error, client_for, enable_totp, make_user

ORG_FIELDS = {"id", "slug", "name", "require_2fa", "settings", "created_at", "updated_at"}


# --- list ------------------------------------------------------------------------------


def test_list_shows_only_my_orgs(cast, alice_client, bob_client, charlie_client):
    for client, expected in (
        (alice_client, ["acme"]),
        (bob_client, ["acme"]),
        (charlie_client, ["globex"]),
    ):
        response = client.get("/api/v1/orgs")
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"count", "next", "previous", "results"}
        assert [org["slug"] for org in body["results"]] == expected
        assert body["count"] == 1
        assert set(body["results"][0]) == ORG_FIELDS


def test_list_of_user_without_orgs_is_empty(db):
    response = client_for(make_user("nobody")).get("/api/v1/orgs")
    assert response.status_code == 200
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_list_is_paginated(cast, alice_client):
    for slug in ("b-org", "c-org", "d-org", "e-org"):
        tenancy.organization_create(user=cast.alice, slug=slug, name=slug.upper())
    # An org alice does not belong to never counts.
    tenancy.organization_create(user=cast.charlie, slug="aaa-other", name="Other")

    first = alice_client.get("/api/v1/orgs?page_size=2").json()
    assert first["count"] == 5
    assert [org["slug"] for org in first["results"]] == ["acme", "b-org"]
    assert first["previous"] is None
    assert "page=2" in first["next"]

    second = alice_client.get(first["next"]).json()
    assert [org["slug"] for org in second["results"]] == ["c-org", "d-org"]
    assert second["previous"] is not None and second["next"] is not None

    third = alice_client.get("/api/v1/orgs?page_size=2&page=3").json()
    assert [org["slug"] for org in third["results"]] == ["e-org"]
    assert third["next"] is None


def test_list_page_out_of_range_is_404(cast, alice_client):
    assert_error(alice_client.get("/api/v1/orgs?page=9"), 404, "NOT_FOUND")


def test_list_unauthenticated_is_401(cast, anon_client):
    assert_error(anon_client.get("/api/v1/orgs"), 401, "AUTHENTICATION_FAILED")


def test_list_with_garbage_token_is_401(cast, anon_client):
    anon_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert_error(anon_client.get("/api/v1/orgs"), 401, "AUTHENTICATION_FAILED")


# --- create ----------------------------------------------------------------------------


def test_create_makes_the_creator_owner(cast, bob_client):
    response = bob_client.post(
        "/api/v1/orgs", {"slug": "initech", "name": "Initech"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == ORG_FIELDS
    assert body["slug"] == "initech" and body["name"] == "Initech"
    assert body["require_2fa"] is False and body["settings"] == {}

    org = Organization.objects.get(slug="initech")
    assert str(org.pk) == body["id"]
    memberships = list(Membership.all_orgs.filter(org=org).select_related("role", "user"))
    assert [(m.user.username, m.role.slug, m.role.org_id) for m in memberships] == [
        ("bob", "owner", None)
    ]
    assert memberships[0].granted_by_membership_id is None
    record = AuditRecord.objects.get(action="org:create", org=org)
    assert record.outcome == "success"
    assert record.actor_user == cast.bob
    assert record.target_id == str(org.pk)

    me = bob_client.get("/api/v1/auth/me").json()
    initech = next(m for m in me["memberships"] if m["org"]["slug"] == "initech")
    assert initech["role"]["slug"] == "owner"
    assert "org:delete" in initech["permissions"] and "billing:manage" in initech["permissions"]
    # The new org is listed for bob, next to acme.
    assert [o["slug"] for o in bob_client.get("/api/v1/orgs").json()["results"]] == [
        "acme",
        "initech",
    ]


def test_create_duplicate_slug_is_409(cast, bob_client):
    response = bob_client.post(
        "/api/v1/orgs", {"slug": "acme", "name": "Another Acme"}, format="json"
    )
    error = assert_error(response, 409, "CONFLICT")
    assert "slug" in error["details"]
    assert Organization.objects.filter(slug="acme").count() == 1
    assert Organization.objects.get(slug="acme").name == "Acme"
    assert not Membership.all_orgs.filter(
        org__slug="acme", user=cast.bob, role__slug="owner"
    ).exists()
    assert not AuditRecord.objects.filter(action="org:create", actor_user=cast.bob).exists()


@pytest.mark.parametrize(
    "slug",
    ["Bad Slug", "UPPER", "-lead", "trail-", "under_score", "", "x" * 51, "dots.not.ok"],
)
def test_create_bad_slug_is_400(cast, bob_client, slug):
    before = Organization.objects.count()
    response = bob_client.post("/api/v1/orgs", {"slug": slug, "name": "Something"}, format="json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert set(error["details"]) == {"slug"}
    assert Organization.objects.count() == before


def test_create_missing_fields_is_400_with_details(cast, bob_client):
    error = assert_error(
        bob_client.post("/api/v1/orgs", {}, format="json"), 400, "VALIDATION_ERROR"
    )
    assert set(error["details"]) == {"slug", "name"}


def test_create_malformed_json_is_400(cast, bob_client):
    response = bob_client.post("/api/v1/orgs", "{not json", content_type="application/json")
    assert_error(response, 400, "VALIDATION_ERROR")


def test_create_unauthenticated_is_401(cast, anon_client):
    response = anon_client.post("/api/v1/orgs", {"slug": "anon-org", "name": "Anon"}, format="json")
    assert_error(response, 401, "AUTHENTICATION_FAILED")
    assert not Organization.objects.filter(slug="anon-org").exists()


# --- detail ----------------------------------------------------------------------------


def test_member_reads_the_org(cast, vera_client):
    response = vera_client.get("/api/v1/orgs/acme")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == ORG_FIELDS
    assert body["id"] == str(cast.acme.pk) and body["slug"] == "acme" and body["name"] == "Acme"


def test_other_org_gets_404_like_an_unknown_org(cast, charlie_client):
    foreign = assert_error(charlie_client.get("/api/v1/orgs/acme"), 404, "NOT_FOUND")
    unknown = assert_error(charlie_client.get("/api/v1/orgs/no-such-org"), 404, "NOT_FOUND")
    assert foreign == unknown


def test_detail_unauthenticated_is_401(cast, anon_client):
    assert_error(anon_client.get("/api/v1/orgs/acme"), 401, "AUTHENTICATION_FAILED")


def test_owner_renames_the_org(cast, alice_client):
    response = alice_client.patch("/api/v1/orgs/acme", {"name": "Acme Corp"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Acme Corp"
    cast.acme.refresh_from_db()
    assert cast.acme.name == "Acme Corp"
    record = AuditRecord.objects.get(action="org:update", org=cast.acme)
    assert record.outcome == "success" and record.actor_user == cast.alice
    assert record.data["changed"] == ["name"]
    assert record.data["before"]["name"] == "Acme"


def test_admin_updates_the_org(cast, dave_client):
    response = dave_client.patch("/api/v1/orgs/acme", {"name": "Acme by Dave"}, format="json")
    assert response.status_code == 200, response.content
    cast.acme.refresh_from_db()
    assert cast.acme.name == "Acme by Dave"


@pytest.mark.parametrize("who", ["bob", "vera"])
def test_member_and_viewer_cannot_update_the_org(cast, who):
    client = client_for(getattr(cast, who))
    response = client.patch("/api/v1/orgs/acme", {"name": "Hijacked"}, format="json")
    error = assert_error(response, 403, "PERMISSION_DENIED")
    assert "org:update" in error["message"]
    cast.acme.refresh_from_db()
    assert cast.acme.name == "Acme"
    assert not AuditRecord.objects.filter(action="org:update", outcome="success").exists()
    denied = AuditRecord.objects.get(action="org:update", outcome="denied")
    assert denied.actor_user == getattr(cast, who) and denied.org == cast.acme
    assert denied.status_code == 403


def test_other_org_cannot_update_and_gets_404(cast, charlie_client):
    response = charlie_client.patch("/api/v1/orgs/acme", {"name": "Hijacked"}, format="json")
    assert_error(response, 404, "NOT_FOUND")
    cast.acme.refresh_from_db()
    assert cast.acme.name == "Acme"


def test_update_unauthenticated_is_401(cast, anon_client):
    assert_error(
        anon_client.patch("/api/v1/orgs/acme", {"name": "X"}, format="json"),
        401,
        "AUTHENTICATION_FAILED",
    )
    cast.acme.refresh_from_db()
    assert cast.acme.name == "Acme"


def test_settings_are_validated_and_merged(cast, alice_client):
    response = alice_client.patch(
        "/api/v1/orgs/acme",
        {
            "settings": {
                "max_key_lifetime_days": 90,
                "allowed_private_hosts": ["127.0.0.1:9000", "vllm.internal"],
            }
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["settings"] == {
        "max_key_lifetime_days": 90,
        "allowed_private_hosts": ["127.0.0.1:9000", "vllm.internal"],
    }
    # A second PATCH merges: keys it does not mention stay.
    response = alice_client.patch(
        "/api/v1/orgs/acme",
        {"settings": {"audit_retention_days": 30, "requests_per_minute": 600}},
        format="json",
    )
    assert response.status_code == 200, response.content
    cast.acme.refresh_from_db()
    assert cast.acme.settings == {
        "max_key_lifetime_days": 90,
        "allowed_private_hosts": ["127.0.0.1:9000", "vllm.internal"],
        "audit_retention_days": 30,
        "requests_per_minute": 600,
    }
    records = AuditRecord.objects.filter(action="org:update", org=cast.acme).order_by("created_at")
    assert [r.data["changed"] for r in records] == [["settings"], ["settings"]]


@pytest.mark.parametrize(
    ("payload", "field_path"),
    [
        ({"name": ""}, ("name",)),
        ({"name": "x" * 201}, ("name",)),
        ({"require_2fa": "maybe"}, ("require_2fa",)),
        ({"settings": ["not", "an", "object"]}, ("settings",)),
        ({"settings": "yes"}, ("settings",)),
        ({"settings": {"max_key_lifetime_days": "forever"}}, ("settings", "max_key_lifetime_days")),
        ({"settings": {"max_key_lifetime_days": 0}}, ("settings", "max_key_lifetime_days")),
        ({"settings": {"audit_retention_days": 99999}}, ("settings", "audit_retention_days")),
        (
            {"settings": {"allowed_private_hosts": "vllm.internal"}},
            ("settings", "allowed_private_hosts"),
        ),
        (
            {"settings": {"allowed_private_hosts": [{"host": "x"}]}},
            ("settings", "allowed_private_hosts"),
        ),
        ({"settings": {"requests_per_minute": -5}}, ("settings", "requests_per_minute")),
        ({"settings": {"tokens_per_minute": "lots"}}, ("settings", "tokens_per_minute")),
        # A setting nobody reads (a typo) must not be silently dropped.
        (
            {"settings": {"alowed_private_hosts": ["10.0.0.1"]}},
            ("settings", "alowed_private_hosts"),
        ),
    ],
)
def test_invalid_update_is_400_with_details(cast, alice_client, payload, field_path):
    response = alice_client.patch("/api/v1/orgs/acme", payload, format="json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    details = error["details"]
    for key in field_path:
        assert key in details, error
        details = details[key]
    cast.acme.refresh_from_db()
    assert cast.acme.name == "Acme"
    assert cast.acme.require_2fa is False
    assert cast.acme.settings == {}
    assert not AuditRecord.objects.filter(action="org:update", outcome="success").exists()


def test_require_2fa_locks_out_members_without_a_device(cast, alice_client, bob_client):
    enable_totp(alice_client, cast.alice)
    response = alice_client.patch("/api/v1/orgs/acme", {"require_2fa": True}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["require_2fa"] is True
    cast.acme.refresh_from_db()
    assert cast.acme.require_2fa is True
    assert AuditRecord.objects.get(action="org:update").data["changed"] == ["require_2fa"]

    assert_error(bob_client.get("/api/v1/orgs/acme/members"), 403, "TWO_FACTOR_REQUIRED")
    # Bob can still reach the 2FA setup, and once enrolled he is let in.
    enable_totp(bob_client, cast.bob)
    assert bob_client.get("/api/v1/orgs/acme/members").status_code == 200
    # Another org's policy does not affect charlie.
    assert client_for(cast.charlie).get("/api/v1/orgs/globex").status_code == 200


# --- delete and transfer -----------------------------------------------------------------


def test_owner_deletes_the_org_with_password(cast, alice_client):
    org_id = cast.acme.pk
    response = alice_client.delete("/api/v1/orgs/acme", {"password": PASSWORD}, format="json")
    assert response.status_code == 204, response.content
    assert not Organization.objects.filter(pk=org_id).exists()
    assert not Membership.all_orgs.filter(org_id=org_id).exists()
    record = AuditRecord.objects.get(action="org:delete")
    assert record.outcome == "success" and record.actor_user == cast.alice
    assert record.target_id == str(org_id)
    # Globex is untouched.
    assert Membership.all_orgs.filter(org=cast.globex).count() == 1


def test_delete_needs_the_password(cast, alice_client):
    error = assert_error(
        alice_client.delete("/api/v1/orgs/acme", {}, format="json"), 400, "VALIDATION_ERROR"
    )
    assert "password" in error["details"]
    assert_error(
        alice_client.delete("/api/v1/orgs/acme", {"password": "wrong"}, format="json"),
        401,
        "AUTHENTICATION_FAILED",
    )
    assert Organization.objects.filter(pk=cast.acme.pk).exists()
    assert not AuditRecord.objects.filter(action="org:delete", outcome="success").exists()


def test_admin_cannot_delete_the_org(cast, dave_client):
    response = dave_client.delete("/api/v1/orgs/acme", {"password": PASSWORD}, format="json")
    assert_error(response, 403, "PERMISSION_DENIED")
    assert Organization.objects.filter(pk=cast.acme.pk).exists()
    assert AuditRecord.objects.filter(
        action="org:delete", outcome="denied", actor_user=cast.dave
    ).exists()


def test_other_org_cannot_delete(cast, charlie_client):
    response = charlie_client.delete("/api/v1/orgs/acme", {"password": PASSWORD}, format="json")
    assert_error(response, 404, "NOT_FOUND")
    assert Organization.objects.filter(pk=cast.acme.pk).exists()


def test_owner_transfers_ownership(cast, alice_client):
    bob_membership = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
    response = alice_client.post(
        "/api/v1/orgs/acme/transfer-ownership",
        {"member_id": str(bob_membership.pk), "password": PASSWORD},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["role"]["slug"] == "owner"
    roles = dict(
        Membership.all_orgs.filter(org=cast.acme).values_list("user__username", "role__slug")
    )
    assert roles["bob"] == "owner" and roles["alice"] == "admin"
    assert AuditRecord.objects.get(action="org:transfer_ownership").actor_user == cast.alice


def test_admin_cannot_transfer_ownership(cast, dave_client):
    bob_membership = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
    response = dave_client.post(
        "/api/v1/orgs/acme/transfer-ownership",
        {"member_id": str(bob_membership.pk), "password": PASSWORD},
        format="json",
    )
    assert_error(response, 403, "PERMISSION_DENIED")
    assert Membership.all_orgs.get(pk=bob_membership.pk).role.slug == "member"
    assert not AuditRecord.objects.filter(
        action="org:transfer_ownership", outcome="success"
    ).exists()


def test_unsupported_method_is_405_with_the_envelope(cast, alice_client):
    assert_error(
        alice_client.put("/api/v1/orgs/acme", {"name": "X"}, format="json"),
        405,
        "METHOD_NOT_ALLOWED",
    )
    assert_error(alice_client.delete("/api/v1/orgs"), 405, "METHOD_NOT_ALLOWED")
    cast.acme.refresh_from_db()
    assert cast.acme.name == "Acme"


def test_patch_with_malformed_json_is_400(cast, alice_client):
    response = alice_client.patch("/api/v1/orgs/acme", "{oops", content_type="application/json")
    assert_error(response, 400, "VALIDATION_ERROR")
    cast.acme.refresh_from_db()
    assert cast.acme.name == "Acme"
