"""Bounded delegation cannot be escaped: the Admin's takeover chain (key rotation ->
broadest key -> self-made Owner -> real Owner demoted) is closed at every step;
changing your own role keeps your grantor; a service account's grants stay
bounded by its own grantor."""

from __future__ import annotations

from audit.models import AuditRecord
from keys.models import ApiKey
from orgs.access import BUILTIN_ROLES, PERMISSIONS
from orgs.models import Membership
from tests.conftest import add_member, assert_error, client_for, make_user
from tests.keys.conftest import create_service_account, key_client, mint

ORG = "/api/v1/orgs/acme"


def _membership(cast, user) -> Membership:
    return Membership.all_orgs.select_related("role").get(org=cast.acme, user=user)


def test_admin_cannot_chain_key_rotation_into_taking_ownership(cast, alice_client, dave_client):
    # alice (Owner) has a deploy key within the Admin's permissions, and her broadest key.
    deploy = mint(
        alice_client,
        name="deploy",
        permissions=["model:read", "api_key:create", "api_key:view", "api_key:revoke"],
    )
    everything = mint(alice_client, name="everything", permissions=list(PERMISSIONS))
    keys_before = ApiKey.all_orgs.count()

    # 1. dave (Admin, api_key:revoke) rotates alice's deploy key to receive its secret.
    step1 = dave_client.post(f"{ORG}/api-keys/{deploy['id']}/rotate", {}, format="json")
    assert_error(step1, 403, "PERMISSION_DENIED")
    assert "key" not in step1.json()

    # 2. Suppose the narrow key leaked anyway: it rotates alice's broadest key.
    step2 = key_client(deploy["key"]).post(
        f"{ORG}/api-keys/{everything['id']}/rotate", {}, format="json"
    )
    assert_error(step2, 403, "PERMISSION_DENIED")
    assert ApiKey.all_orgs.count() == keys_before
    assert ApiKey.all_orgs.get(pk=everything["id"]).revoked_at is None

    # 3. Suppose the broadest key leaked too: it makes dave an Owner ...
    dave = _membership(cast, cast.dave)
    step3 = key_client(everything["key"]).patch(
        f"{ORG}/members/{dave.pk}", {"role": "owner"}, format="json"
    )
    assert_error(step3, 403, "PERMISSION_DENIED")
    # 4. ... and demotes the real Owner.
    alice = _membership(cast, cast.alice)
    step4 = key_client(everything["key"]).patch(
        f"{ORG}/members/{alice.pk}", {"role": "viewer"}, format="json"
    )
    assert_error(step4, 403, "PERMISSION_DENIED")

    assert _membership(cast, cast.alice).role.slug == "owner"
    assert _membership(cast, cast.dave).role.slug == "admin"
    assert not AuditRecord.objects.filter(
        action__in=("api_key:rotate", "member:update"), outcome="success"
    ).exists()


def _bounded_admin(cast, alice_client):
    """erin: Admin granted by alice; frank: Admin granted by erin."""
    erin, frank = make_user("erin"), make_user("frank")
    add_member(cast.acme, erin, "viewer")
    add_member(cast.acme, frank, "viewer")
    erin_m, frank_m = _membership(cast, erin), _membership(cast, frank)
    response = alice_client.patch(f"{ORG}/members/{erin_m.pk}", {"role": "admin"}, format="json")
    assert response.status_code == 200, response.content
    response = client_for(erin).patch(
        f"{ORG}/members/{frank_m.pk}", {"role": "admin"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert _membership(cast, frank).granted_by_membership_id == erin_m.pk
    return erin, frank


def test_changing_your_own_role_keeps_your_grantor(cast, alice_client):
    erin, frank = _bounded_admin(cast, alice_client)
    erin_m, frank_m = _membership(cast, erin), _membership(cast, frank)
    # frank re-grants himself a role he holds, trying to cut the chain to erin ...
    response = client_for(frank).patch(
        f"{ORG}/members/{frank_m.pk}", {"role": "admin"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert _membership(cast, frank).granted_by_membership_id == erin_m.pk
    record = AuditRecord.objects.filter(action="member:update", target_id=str(frank_m.pk)).latest(
        "created_at"
    )
    assert record.actor_user == frank and record.outcome == "success"
    # ... so when alice demotes erin, frank's Admin is bounded by erin's Viewer role.
    response = alice_client.patch(f"{ORG}/members/{erin_m.pk}", {"role": "viewer"}, format="json")
    assert response.status_code == 200, response.content
    me = client_for(frank).get("/api/v1/auth/me").json()["memberships"][0]
    assert set(me["permissions"]) == set(BUILTIN_ROLES["viewer"][1])
    assert_error(
        client_for(frank).patch(f"{ORG}/members/{frank_m.pk}", {"role": "admin"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )


def test_a_grant_to_someone_else_records_the_grantor(cast, dave_client):
    bob = _membership(cast, cast.bob)
    response = dave_client.patch(f"{ORG}/members/{bob.pk}", {"role": "viewer"}, format="json")
    assert response.status_code == 200, response.content
    assert _membership(cast, cast.bob).granted_by_membership_id == _membership(cast, cast.dave).pk


def test_service_account_keys_stay_within_the_accounts_grantor(cast, alice_client):
    erin, _frank = _bounded_admin(cast, alice_client)
    # erin (Admin) creates a service account with the Admin role; its grantor is erin.
    account = create_service_account(client_for(erin), "ops-bot", "admin")
    sa_key = mint(
        client_for(erin),
        name="ops",
        service_account="ops-bot",
        permissions=["model:read", "api_key:create", "member:update", "member:invite"],
    )
    # alice demotes erin to Viewer: the account's grants shrink with her.
    erin_m = _membership(cast, erin)
    assert (
        alice_client.patch(
            f"{ORG}/members/{erin_m.pk}", {"role": "viewer"}, format="json"
        ).status_code
        == 200
    )
    keys_before = ApiKey.all_orgs.count()
    # The account's key cannot mint keys anymore (api_key:create is beyond a Viewer) ...
    minted = key_client(sa_key["key"]).post(
        f"{ORG}/api-keys", {"name": "child", "permissions": ["model:read"]}, format="json"
    )
    assert_error(minted, 403, "PERMISSION_DENIED")
    assert ApiKey.all_orgs.count() == keys_before
    # ... nor grant roles, nor invite.
    bob = _membership(cast, cast.bob)
    granted = key_client(sa_key["key"]).patch(
        f"{ORG}/members/{bob.pk}", {"role": "viewer"}, format="json"
    )
    assert_error(granted, 403, "PERMISSION_DENIED")
    assert _membership(cast, cast.bob).role.slug == "member"
    assert account["role"]["slug"] == "admin"


def test_service_account_key_never_grants_a_role_even_unbounded(cast, alice_client):
    # Created by the Owner (unbounded grantor), with every Admin permission.
    create_service_account(alice_client, "root-bot", "admin")
    sa_key = mint(
        alice_client,
        name="root",
        service_account="root-bot",
        permissions=["member:update", "member:view", "member:invite"],
    )
    bob = _membership(cast, cast.bob)
    response = key_client(sa_key["key"]).patch(
        f"{ORG}/members/{bob.pk}", {"role": "viewer"}, format="json"
    )
    error = assert_error(response, 403, "PERMISSION_DENIED")
    assert "signed-in user" in error["message"]
    after = _membership(cast, cast.bob)
    assert after.role.slug == "member" and after.granted_by_membership_id is None
