"""Service accounts: CRUD with service_account:manage, a role bounded by the
actor when granted and by the granting member at every use, disable/enable,
deletion with its keys, and only signed-in humans create them or change roles."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from keys.models import AccessRule, ApiKey, ServiceAccount
from orgs.models import Membership, Role, Team
from tests.conftest import add_member, assert_error, client_for, make_user
from tests.keys.conftest import key_client, mint

LIST = "/api/v1/orgs/acme/service-accounts"


def detail(account) -> str:
    return f"{LIST}/{account['id']}"


def custom_role(client, slug: str, permissions: list[str]) -> dict:
    response = client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": slug, "name": slug.title(), "permissions": permissions},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def membership(cast, user) -> Membership:
    return Membership.all_orgs.get(org=cast.acme, user=user)


def sa_rows(org) -> list[tuple]:
    return sorted(
        ServiceAccount.all_orgs.filter(org=org).values_list(
            "slug", "name", "role__slug", "disabled_at"
        )
    )


def test_admin_creates_a_service_account(cast, dave_client):
    response = dave_client.post(
        LIST,
        {"slug": "ci-bot", "name": "CI bot", "description": "deploys", "role": "member"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert {k: body[k] for k in ("slug", "name", "description", "is_active", "disabled_at")} == {
        "slug": "ci-bot",
        "name": "CI bot",
        "description": "deploys",
        "is_active": True,
        "disabled_at": None,
    }
    assert body["role"]["slug"] == "member"
    row = ServiceAccount.all_orgs.get(pk=body["id"])
    assert row.org == cast.acme and row.created_by == cast.dave and row.role.slug == "member"
    assert row.granted_by_membership == membership(cast, cast.dave)
    record = AuditRecord.objects.get(action="service_account:manage", target_id=body["id"])
    assert record.actor_user == cast.dave and record.outcome == "success"
    assert record.data == {"op": "create", "role": "member"}


def test_any_member_lists_and_reads_service_accounts(cast, service_account, vera_client):
    listing = vera_client.get(LIST)
    assert listing.status_code == 200, listing.content
    assert [a["slug"] for a in listing.json()["results"]] == ["ci-bot"]
    read = vera_client.get(detail(service_account))
    assert read.status_code == 200 and read.json()["id"] == service_account["id"]
    assert_error(vera_client.get(f"{LIST}/00000000-0000-0000-0000-000000000000"), 404, "NOT_FOUND")


@pytest.mark.parametrize("who", ["bob", "vera"])
def test_members_and_viewers_cannot_manage_service_accounts(cast, service_account, who):
    client = client_for(getattr(cast, who))
    before = sa_rows(cast.acme)
    attempts = [
        client.post(LIST, {"slug": "mine", "name": "Mine", "role": "viewer"}, format="json"),
        client.patch(detail(service_account), {"name": "Renamed"}, format="json"),
        client.patch(detail(service_account), {"disabled": True}, format="json"),
        client.delete(detail(service_account)),
    ]
    for response in attempts:
        error = assert_error(response, 403, "PERMISSION_DENIED")
        assert "service_account:manage" in error["message"]
    assert sa_rows(cast.acme) == before
    denied = AuditRecord.objects.filter(actor_user=getattr(cast, who), outcome="denied")
    assert denied.count() == 4 and set(denied.values_list("action", flat=True)) == {
        "service_account:manage"
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "Not A Slug", "name": "x", "role": "member"}, "slug"),
        ({"slug": "bot", "role": "member"}, "name"),
        ({"slug": "bot", "name": "x"}, "role"),
        ({"slug": "bot", "name": "x", "role": "no-such-role"}, "role"),
    ],
    ids=["bad-slug", "missing-name", "missing-role", "unknown-role"],
)
def test_invalid_input_is_400(cast, dave_client, body, field):
    error = assert_error(dave_client.post(LIST, body, format="json"), 400, "VALIDATION_ERROR")
    assert field in error["details"], error
    assert not ServiceAccount.all_orgs.exists()


def test_another_orgs_custom_role_is_unknown(cast, charlie_client, dave_client):
    response = charlie_client.post(
        "/api/v1/orgs/globex/roles",
        {"slug": "g-role", "name": "G", "permissions": ["org:view"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    for ref in (response.json()["id"], "g-role"):
        error = assert_error(
            dave_client.post(LIST, {"slug": "bot", "name": "x", "role": ref}, format="json"),
            400,
            "VALIDATION_ERROR",
        )
        assert "role" in error["details"]
    assert not ServiceAccount.all_orgs.exists()


def test_slug_is_unique_per_org(cast, service_account, alice_client, charlie_client):
    response = alice_client.post(
        LIST, {"slug": "ci-bot", "name": "Again", "role": "viewer"}, format="json"
    )
    error = assert_error(response, 409, "CONFLICT")
    assert "slug" in error["details"]
    assert sa_rows(cast.acme) == [("ci-bot", "CI bot", "member", None)]
    assert (
        AuditRecord.objects.filter(action="service_account:manage", data__op="create").count() == 1
    )
    # Another org may use the same slug.
    other = charlie_client.post(
        "/api/v1/orgs/globex/service-accounts",
        {"slug": "ci-bot", "name": "G", "role": "member"},
        format="json",
    )
    assert other.status_code == 201, other.content


# --- the role is bounded by the actor ------------------------------------------------------


def test_an_admin_cannot_grant_a_role_with_billing_manage(cast, alice_client, dave_client):
    billing = custom_role(alice_client, "billing", ["billing:manage", "usage:view"])
    for ref in ("billing", billing["id"]):
        error = assert_error(
            dave_client.post(LIST, {"slug": "payer", "name": "P", "role": ref}, format="json"),
            403,
            "PERMISSION_DENIED",
        )
        assert error["details"] == {"missing_permissions": ["billing:manage"]}
    assert not ServiceAccount.all_orgs.exists()
    # The Owner holds it and may.
    response = alice_client.post(
        LIST, {"slug": "payer", "name": "P", "role": "billing"}, format="json"
    )
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("actor", ["alice", "dave"])
def test_nobody_makes_a_service_account_an_owner(cast, actor):
    client = client_for(getattr(cast, actor))
    error = assert_error(
        client.post(LIST, {"slug": "boss", "name": "Boss", "role": "owner"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert "Owner" in error["message"]
    assert not ServiceAccount.all_orgs.exists()


def test_changing_the_role_is_bounded_the_same_way(
    cast, service_account, alice_client, dave_client
):
    custom_role(alice_client, "billing", ["billing:manage"])
    for role in ("owner", "billing"):
        assert_error(
            dave_client.patch(detail(service_account), {"role": role}, format="json"),
            403,
            "PERMISSION_DENIED",
        )
    assert sa_rows(cast.acme) == [("ci-bot", "CI bot", "member", None)]
    response = dave_client.patch(detail(service_account), {"role": "viewer"}, format="json")
    assert response.status_code == 200 and response.json()["role"]["slug"] == "viewer"
    row = ServiceAccount.all_orgs.get(pk=service_account["id"])
    assert row.role.slug == "viewer" and row.granted_by_membership == membership(cast, cast.dave)
    record = AuditRecord.objects.filter(action="service_account:manage", data__op="update").get()
    assert record.actor_user == cast.dave and record.data["changed"] == [
        "role",
        "granted_by_membership",
    ]


def test_a_custom_role_held_by_a_service_account_cannot_be_deleted(cast, alice_client):
    role = custom_role(alice_client, "bots", ["model:read"])
    bot = alice_client.post(LIST, {"slug": "bot", "name": "Bot", "role": "bots"}, format="json")
    assert bot.status_code == 201, bot.content
    error = assert_error(
        alice_client.delete(f"/api/v1/orgs/acme/roles/{role['id']}"), 409, "CONFLICT"
    )
    assert "service account" in error["message"]
    assert Role.objects.filter(pk=role["id"]).exists()
    assert not AuditRecord.objects.filter(
        data__op="role_delete"
    ).exists()  # rolled back with the refusal
    assert (
        alice_client.patch(detail(bot.json()), {"role": "viewer"}, format="json").status_code == 200
    )
    assert alice_client.delete(f"/api/v1/orgs/acme/roles/{role['id']}").status_code == 204
    assert not Role.objects.filter(pk=role["id"]).exists()


# --- ...and by the granting member at every use ------------------------------------------


def test_demoting_the_granting_admin_shrinks_the_service_accounts_keys(
    cast, alice_client, dave_client
):
    bot = dave_client.post(LIST, {"slug": "ops-bot", "name": "Ops", "role": "admin"}, format="json")
    assert bot.status_code == 201, bot.content
    key = mint(dave_client, permissions=["team:manage", "model:read"], service_account="ops-bot")
    client = key_client(key["key"])
    assert (
        client.post(
            "/api/v1/orgs/acme/teams", {"slug": "one", "name": "One"}, format="json"
        ).status_code
        == 201
    )

    dave = membership(cast, cast.dave)
    assert (
        alice_client.patch(
            f"/api/v1/orgs/acme/members/{dave.pk}", {"role": "member"}, format="json"
        ).status_code
        == 200
    )
    error = assert_error(
        client.post("/api/v1/orgs/acme/teams", {"slug": "two", "name": "Two"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert "team:manage" in error["message"]
    assert (
        client.get("/api/v1/orgs/acme/access-rules").status_code == 200
    )  # the Member role keeps model:read
    # Nor can a new key of the service account get what it lost.
    refused = alice_client.post(
        "/api/v1/orgs/acme/api-keys",
        {"name": "x", "permissions": ["team:manage"], "service_account": "ops-bot"},
        format="json",
    )
    assert_error(refused, 403, "PERMISSION_DENIED")
    # The bound is live: dave back to Admin, the key may again.
    assert (
        alice_client.patch(
            f"/api/v1/orgs/acme/members/{dave.pk}", {"role": "admin"}, format="json"
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/api/v1/orgs/acme/teams", {"slug": "three", "name": "Three"}, format="json"
        ).status_code
        == 201
    )
    assert sorted(t.slug for t in Team.all_orgs.filter(org=cast.acme)) == ["one", "three"]


# --- disable, enable, delete ---------------------------------------------------------------


def test_disable_and_enable(cast, service_account, alice_client, dave_client):
    key = mint(dave_client, permissions=["model:read"], service_account="ci-bot")
    client = key_client(key["key"])
    assert client.get("/api/v1/orgs/acme/access-rules").status_code == 200
    response = dave_client.patch(detail(service_account), {"disabled": True}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["is_active"] is False and response.json()["disabled_at"]
    assert ServiceAccount.all_orgs.get(pk=service_account["id"]).disabled_at is not None
    error = assert_error(client.get("/api/v1/orgs/acme/access-rules"), 401, "AUTHENTICATION_FAILED")
    assert key["prefix"] in error["message"] and key["key"] not in error["message"]
    # No new keys for a disabled account either.
    assert_error(
        dave_client.post(
            "/api/v1/orgs/acme/api-keys",
            {"name": "x", "permissions": ["model:read"], "service_account": "ci-bot"},
            format="json",
        ),
        403,
        "PERMISSION_DENIED",
    )
    enabled = dave_client.patch(detail(service_account), {"disabled": False}, format="json")
    assert enabled.status_code == 200 and enabled.json()["is_active"] is True
    assert client.get("/api/v1/orgs/acme/access-rules").status_code == 200
    updates = AuditRecord.objects.filter(
        action="service_account:manage", data__op="update", actor_user=cast.dave
    )
    assert updates.count() == 2 and all(r.data["changed"] == ["disabled_at"] for r in updates)


def test_rename(cast, service_account, dave_client):
    response = dave_client.patch(
        detail(service_account), {"name": "Deploy bot", "description": "d"}, format="json"
    )
    assert response.status_code == 200 and response.json()["name"] == "Deploy bot"
    assert sa_rows(cast.acme) == [("ci-bot", "Deploy bot", "member", None)]


def test_delete_removes_its_keys_and_rule_subjects(
    cast, service_account, alice_client, dave_client
):
    key = mint(dave_client, permissions=["model:read"], service_account="ci-bot")
    bobs = mint(client_for(cast.bob))
    rule = alice_client.post(
        "/api/v1/orgs/acme/access-rules",
        {"models": ["*"], "service_accounts": ["ci-bot"], "users": ["bob"]},
        format="json",
    )
    assert rule.status_code == 201, rule.content
    response = dave_client.delete(detail(service_account))
    assert response.status_code == 204, response.content
    assert not ServiceAccount.all_orgs.filter(pk=service_account["id"]).exists()
    assert not ApiKey.all_orgs.filter(pk=key["id"]).exists()
    assert ApiKey.all_orgs.filter(pk=bobs["id"]).exists()  # other keys stay
    assert_error(
        key_client(key["key"]).get("/api/v1/orgs/acme/access-rules"), 401, "AUTHENTICATION_FAILED"
    )
    assert AccessRule.service_accounts.through.objects.count() == 0
    assert AccessRule.all_orgs.filter(pk=rule.json()["id"]).exists()
    record = AuditRecord.objects.get(action="service_account:manage", data__op="delete")
    assert record.actor_user == cast.dave and record.target_id == service_account["id"]
    assert record.data["slug"] == "ci-bot"
    assert_error(dave_client.delete(detail(service_account)), 404, "NOT_FOUND")


# --- humans only ---------------------------------------------------------------------------


def test_an_api_key_cannot_create_service_accounts_or_change_their_role(
    cast, service_account, dave_client
):
    key = mint(dave_client, permissions=["service_account:manage", "member:view"])
    client = key_client(key["key"])
    error = assert_error(
        client.post(LIST, {"slug": "sneaky", "name": "S", "role": "viewer"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert "signed-in user" in error["message"]
    assert_error(
        client.patch(detail(service_account), {"role": "viewer"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert sa_rows(cast.acme) == [("ci-bot", "CI bot", "member", None)]
    assert not AuditRecord.objects.filter(
        action="service_account:manage", outcome="success", actor_label__contains="via"
    ).exists()


def test_a_service_accounts_key_cannot_create_service_accounts(cast, alice_client):
    bot = alice_client.post(
        LIST, {"slug": "admin-bot", "name": "A", "role": "admin"}, format="json"
    )
    assert bot.status_code == 201, bot.content
    key = mint(alice_client, permissions=["service_account:manage"], service_account="admin-bot")
    response = key_client(key["key"]).post(
        LIST, {"slug": "child", "name": "C", "role": "viewer"}, format="json"
    )
    assert_error(response, 403, "PERMISSION_DENIED")
    assert sa_rows(cast.acme) == [("admin-bot", "A", "admin", None)]


def test_unauthenticated_is_401(cast, service_account, anon_client):
    for method in ("get", "post"):
        assert_error(getattr(anon_client, method)(LIST), 401, "AUTHENTICATION_FAILED")
    for method in ("get", "patch", "delete"):
        assert_error(
            getattr(anon_client, method)(detail(service_account)), 401, "AUTHENTICATION_FAILED"
        )
    assert sa_rows(cast.acme) == [("ci-bot", "CI bot", "member", None)]


@pytest.mark.parametrize("how", ["removed", "leaves"])
def test_a_service_account_stays_bounded_when_its_granter_goes(
    cast, alice_client, dave_client, how
):
    """dave (admin) grants a bot the Admin role. When eve (admin) removes dave, the bound
    moves to eve; when dave leaves, to whoever bounded dave (eve too, here). Either way
    the bot and its keys survive, and eve's demotion then caps the bot at once."""
    eve = make_user("eve")
    add_member(cast.acme, eve, "admin")
    eve_membership = membership(cast, eve)
    dave = membership(cast, cast.dave)
    Membership.all_orgs.filter(pk=dave.pk).update(granted_by_membership=eve_membership)
    bot = dave_client.post(LIST, {"slug": "ops-bot", "name": "Ops", "role": "admin"}, format="json")
    assert bot.status_code == 201, bot.content
    key = key_client(
        mint(dave_client, permissions=["team:manage"], service_account="ops-bot")["key"]
    )
    remover = client_for(eve) if how == "removed" else dave_client
    assert remover.delete(f"/api/v1/orgs/acme/members/{dave.pk}").status_code == 204

    account = ServiceAccount.all_orgs.get(org=cast.acme, slug="ops-bot")
    assert account.granted_by_membership == eve_membership  # not None: still bounded
    created = key.post("/api/v1/orgs/acme/teams", {"slug": "one", "name": "One"}, format="json")
    assert created.status_code == 201, created.content
    demoted = alice_client.patch(
        f"/api/v1/orgs/acme/members/{eve_membership.pk}", {"role": "member"}, format="json"
    )
    assert demoted.status_code == 200, demoted.content
    refused = key.post("/api/v1/orgs/acme/teams", {"slug": "two", "name": "Two"}, format="json")
    assert_error(refused, 403, "PERMISSION_DENIED")
