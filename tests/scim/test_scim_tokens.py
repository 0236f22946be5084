"""SCIM tokens: made, listed and revoked through /api/v1/orgs/{org}/scim-tokens by
Owners and Admins (sso:manage); shown once, stored hashed, audited; good for SCIM in
their own org and for nothing else."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from keys import apikeys
from orgs.models import Membership
from scim.models import ScimToken
from tests.conftest import assert_error, client_for
from tests.keys.conftest import mint
from tests.scim.conftest import ScimClient, assert_scim_error, make_token

TOKENS = "/api/v1/orgs/acme/scim-tokens"


def test_owner_creates_a_token_shown_once_and_stored_hashed(cast, alice_client):
    body = make_token(alice_client)
    raw = body["token"]
    assert raw.startswith("ifs_") and body["prefix"] == raw[: len("ifs_") + 12]
    assert body["status"] == "active" and body["role"]["slug"] == "member"
    assert body["scim_base_url"].endswith("/scim/v2")
    row = ScimToken.all_orgs.get(pk=body["id"])
    assert row.secret_digest == apikeys.digest(raw) and raw not in repr(row)
    assert row.granted_by_membership == Membership.all_orgs.get(org=cast.acme, user=cast.alice)
    listed = alice_client.get(TOKENS).json()["results"]
    assert [t["id"] for t in listed] == [body["id"]]
    assert "token" not in listed[0] and raw not in str(listed)
    assert "token" not in alice_client.get(f"{TOKENS}/{body['id']}").json()
    record = AuditRecord.objects.get(action="sso:manage", target_id=body["id"])
    assert record.actor_user == cast.alice and record.data["op"] == "scim_token_create"
    assert raw not in str(record.data) and record.data["prefix"] == body["prefix"]


def test_admin_may_manage_tokens_members_and_viewers_may_not(
    cast, dave_client, bob_client, vera_client
):
    assert dave_client.post(TOKENS, {"name": "azure"}, format="json").status_code == 201
    for client in (bob_client, vera_client):
        assert_error(client.get(TOKENS), 403, "PERMISSION_DENIED")
        assert_error(client.post(TOKENS, {"name": "x"}, format="json"), 403, "PERMISSION_DENIED")
    assert AuditRecord.objects.filter(action="sso:manage", outcome="denied").count() == 4


def test_other_orgs_tokens_are_404(cast, alice_client, charlie_client):
    token = make_token(alice_client)
    assert_error(
        charlie_client.get(f"/api/v1/orgs/globex/scim-tokens/{token['id']}"), 404, "NOT_FOUND"
    )
    assert_error(
        charlie_client.delete(f"/api/v1/orgs/globex/scim-tokens/{token['id']}"), 404, "NOT_FOUND"
    )
    assert_error(charlie_client.get(TOKENS), 404, "NOT_FOUND")
    assert ScimToken.all_orgs.get(pk=token["id"]).revoked_at is None


def test_a_token_cannot_provision_owners_nor_a_role_beyond_its_creator(
    cast, alice_client, dave_client
):
    assert_error(
        alice_client.post(TOKENS, {"name": "x", "role": "owner"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    # An Admin cannot hand a token a role holding org:delete (a custom role of the org).
    role = alice_client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": "deleter", "name": "Deleter", "permissions": ["org:delete"]},
        format="json",
    )
    assert role.status_code == 201, role.content
    assert_error(
        dave_client.post(TOKENS, {"name": "x", "role": "deleter"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert_error(
        alice_client.post(TOKENS, {"name": "x", "role": "nope"}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert_error(
        alice_client.post(TOKENS, {"name": "x", "token": "mine"}, format="json"),
        400,
        "VALIDATION_ERROR",
    )


def test_an_api_key_cannot_mint_a_scim_token(cast, alice_client):
    key = mint(alice_client, permissions=["member:view"])["key"]
    client = client_for(cast.alice)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert_error(client.post(TOKENS, {"name": "x"}, format="json"), 403, "PERMISSION_DENIED")
    assert not ScimToken.all_orgs.exists()


def test_revoked_token_is_refused_at_once(cast, alice_client):
    token = make_token(alice_client)
    scim = ScimClient(token["token"])
    assert scim.get("/Users").status_code == 200
    revoked = alice_client.delete(f"{TOKENS}/{token['id']}")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    error = assert_scim_error(scim.get("/Users"), 401)
    assert error["detail"] == f"SCIM token {token['prefix']} is revoked"
    assert (
        AuditRecord.objects.filter(action="sso:manage", data__op="scim_token_revoke").count() == 1
    )
    denied = AuditRecord.objects.filter(outcome="denied", status_code=401).latest("created_at")
    assert denied.target_id == "/scim/v2/Users"


@pytest.mark.parametrize(
    "header",
    ["", "Bearer ", "Bearer ifs_nonsense", "Basic dXNlcjpwYXNz", "Bearer ifr_abc"],
)
def test_missing_or_malformed_credentials_are_401_in_scim_shape(db, cast, header):
    scim = ScimClient("x")
    scim.http.credentials(**({"HTTP_AUTHORIZATION": header} if header else {}))
    response = scim.get("/Users")
    assert_scim_error(response, 401)
    assert response["WWW-Authenticate"] == 'Bearer realm="scim"'


def test_a_forged_token_with_a_real_prefix_is_refused(cast, alice_client):
    token = make_token(alice_client)
    public_id = token["prefix"].split("_")[1]
    forged = apikeys.generate(public_id=public_id, prefix="ifs").plaintext
    assert forged != token["token"]
    error = assert_scim_error(ScimClient(forged).get("/Users"), 401)
    assert error["detail"] == f"SCIM token {token['prefix']} is not valid"


def test_a_scim_token_does_nothing_but_scim(cast, alice_client, bob_client):
    token = make_token(alice_client)["token"]
    client = client_for(cast.alice)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    for path in (
        "/api/v1/orgs/acme/members",
        "/api/v1/auth/me",
        "/api/v1/orgs/acme/api-keys",
        TOKENS,
    ):
        assert_error(client.get(path), 401, "AUTHENTICATION_FAILED")
    client.credentials(HTTP_X_API_KEY=token)
    assert_error(client.get("/api/v1/orgs/acme/members"), 401, "AUTHENTICATION_FAILED")
    # And the other way round: an API key or a user's access token is no SCIM token.
    key = mint(bob_client, permissions=["model:read"])["key"]
    assert_scim_error(ScimClient(key).get("/Users"), 401)
    access = bob_client._credentials["HTTP_AUTHORIZATION"].split(" ", 1)[1]
    assert_scim_error(ScimClient(access).get("/Users"), 401)


def test_token_dies_when_its_creator_loses_sso_manage(cast, alice_client, dave_client):
    token = make_token(dave_client)
    scim = ScimClient(token["token"])
    assert scim.get("/Users").status_code == 200
    dave = Membership.all_orgs.get(org=cast.acme, user=cast.dave)
    demoted = alice_client.patch(
        f"/api/v1/orgs/acme/members/{dave.pk}", {"role": "member"}, format="json"
    )
    assert demoted.status_code == 200, demoted.content
    error = assert_scim_error(scim.get("/Users"), 401)
    assert "lost sso:manage" in error["detail"]


def test_removing_the_creator_rebinds_the_token_to_the_remover(cast, alice_client, dave_client):
    token = make_token(dave_client)
    dave = Membership.all_orgs.get(org=cast.acme, user=cast.dave)
    assert alice_client.delete(f"/api/v1/orgs/acme/members/{dave.pk}").status_code == 204
    row = ScimToken.all_orgs.get(pk=token["id"])
    assert row.granted_by_membership == Membership.all_orgs.get(org=cast.acme, user=cast.alice)
    assert ScimClient(token["token"]).get("/Users").status_code == 200


def test_operators_see_tokens_in_the_admin_without_the_digest(cast, alice_client, admin_client):
    token = make_token(alice_client)
    listed = admin_client.get("/admin/scim/scimtoken/")
    assert listed.status_code == 200 and token["prefix"].encode() in listed.content
    page = admin_client.get(f"/admin/scim/scimtoken/{token['id']}/change/")
    assert page.status_code == 200
    row = ScimToken.all_orgs.get(pk=token["id"])
    assert (
        row.secret_digest.encode() not in page.content
        and token["token"].encode() not in page.content
    )
