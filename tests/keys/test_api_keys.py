"""API key lifecycle: minted once, listed without the secret, revoked, rotated,
expired; scopes bounded at creation and at every use; owners and tenants."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from keys import apikeys
from keys.models import ApiKey
from tests.conftest import add_member, assert_error, client_for, make_user
from tests.keys.conftest import key_client, mint


def test_key_format_has_prefix_public_id_and_checksum(bob_client):
    body = mint(bob_client)
    raw = body["key"]
    assert (
        raw.startswith("ifr_") and body["prefix"] == raw[: len("ifr_") + apikeys.PUBLIC_ID_LENGTH]
    )
    assert apikeys.parse_public_id(raw) == body["prefix"][4:]
    broken = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    assert apikeys.parse_public_id(broken) is None  # checksum catches a typo
    assert (
        len(raw) - len(body["prefix"]) - 1 - apikeys.CHECKSUM_LENGTH >= 43
    )  # >= 256 bits of base62


def test_secret_is_shown_once_and_stored_as_digest_only(bob_client):
    body = mint(bob_client, name="laptop")
    row = ApiKey.all_orgs.get(pk=body["id"])
    assert row.secret_digest == apikeys.digest(body["key"]) and body["key"] not in repr(row)
    for url in ("/api/v1/orgs/acme/api-keys", f"/api/v1/orgs/acme/api-keys/{body['id']}"):
        response = bob_client.get(url)
        assert response.status_code == 200
        assert body["key"] not in response.content.decode()
        assert "key" not in (response.json().get("results", [response.json()])[0])
    listed = bob_client.get("/api/v1/orgs/acme/api-keys").json()["results"][0]
    assert listed["prefix"] == body["prefix"] and listed["owner"] == {
        "type": "user",
        "id": listed["owner"]["id"],
        "name": "bob",
    }


@pytest.mark.parametrize("header", ["x-api-key", "bearer"])
def test_key_authenticates_in_either_header(bob_client, header):
    body = mint(bob_client, permissions=["model:read"])
    response = key_client(body["key"], header=header).get("/api/v1/orgs/acme/access-rules")
    assert response.status_code == 200, response.content


def test_revoked_key_is_refused_by_prefix_only(bob_client):
    body = mint(bob_client)
    client = key_client(body["key"])
    assert client.get("/api/v1/orgs/acme/access-rules").status_code == 200
    revoked = bob_client.delete(f"/api/v1/orgs/acme/api-keys/{body['id']}")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    error = assert_error(client.get("/api/v1/orgs/acme/access-rules"), 401, "AUTHENTICATION_FAILED")
    assert body["prefix"] in error["message"] and body["key"] not in error["message"]
    assert_error(bob_client.delete(f"/api/v1/orgs/acme/api-keys/{body['id']}"), 409, "CONFLICT")
    assert AuditRecord.objects.filter(action="api_key:revoke", target_id=body["id"]).count() == 1


def test_expired_key_is_refused(cast, bob_client, clock_shift):
    body = mint(bob_client, expires_in_days=1)
    client = key_client(body["key"])
    assert client.get("/api/v1/orgs/acme/access-rules").status_code == 200
    clock_shift(86400 + 1)
    bob_client = client_for(cast.bob)  # a day later bob's login is over: a new one
    assert_error(client.get("/api/v1/orgs/acme/access-rules"), 401, "AUTHENTICATION_FAILED")
    assert bob_client.get(f"/api/v1/orgs/acme/api-keys/{body['id']}").json()["status"] == "expired"


def test_unknown_and_malformed_keys_are_refused(anon_client, bob_client):
    body = mint(bob_client)
    forged = apikeys.generate(public_id=body["prefix"][4:]).plaintext  # right id, wrong secret
    for raw in (forged, "ifr_nonsense", apikeys.generate().plaintext):
        assert_error(
            key_client(raw).get("/api/v1/orgs/acme/access-rules"), 401, "AUTHENTICATION_FAILED"
        )


def test_rotation_issues_new_secret_and_kills_old(bob_client):
    body = mint(bob_client, permissions=["model:read"])
    rotated = bob_client.post(f"/api/v1/orgs/acme/api-keys/{body['id']}/rotate", {}, format="json")
    assert rotated.status_code == 201, rotated.content
    new = rotated.json()
    assert new["key"] != body["key"] and new["permissions"] == body["permissions"]
    assert_error(
        key_client(body["key"]).get("/api/v1/orgs/acme/access-rules"), 401, "AUTHENTICATION_FAILED"
    )
    assert key_client(new["key"]).get("/api/v1/orgs/acme/access-rules").status_code == 200


def test_rotation_with_grace_keeps_old_key_until_it_ends(bob_client, clock_shift):
    body = mint(bob_client)
    new = bob_client.post(
        f"/api/v1/orgs/acme/api-keys/{body['id']}/rotate", {"grace_seconds": 3600}, format="json"
    ).json()
    old_client = key_client(body["key"])
    assert old_client.get("/api/v1/orgs/acme/access-rules").status_code == 200
    clock_shift(3601)
    assert_error(old_client.get("/api/v1/orgs/acme/access-rules"), 401, "AUTHENTICATION_FAILED")
    assert key_client(new["key"]).get("/api/v1/orgs/acme/access-rules").status_code == 200


def test_scopes_must_be_a_subset_of_the_owners_at_creation(bob_client, vera_client):
    response = bob_client.post(
        "/api/v1/orgs/acme/api-keys", {"name": "x", "permissions": ["member:invite"]}, format="json"
    )
    error = assert_error(response, 403, "PERMISSION_DENIED")
    assert error["details"]["missing_permissions"] == ["member:invite"]
    assert_error(
        vera_client.post(
            "/api/v1/orgs/acme/api-keys",
            {"name": "x", "permissions": ["model:read"]},
            format="json",
        ),
        403,
        "PERMISSION_DENIED",
    )  # a Viewer lacks api_key:create
    assert not ApiKey.all_orgs.exists()


def test_aliases_and_unknown_scopes(bob_client):
    body = mint(bob_client, permissions=["read_models", "use_streaming"])
    assert body["permissions"] == ["inference:stream", "model:read"]
    response = bob_client.post(
        "/api/v1/orgs/acme/api-keys", {"name": "x", "permissions": ["fly"]}, format="json"
    )
    assert "permissions" in assert_error(response, 400, "VALIDATION_ERROR")["details"]


def test_scopes_shrink_at_use_when_the_owner_loses_permissions(cast, dave_client, alice_client):
    body = mint(dave_client, permissions=["member:view", "model:read"])
    client = key_client(body["key"])
    assert client.get("/api/v1/orgs/acme/members").status_code == 200
    dave = alice_client.get("/api/v1/orgs/acme/members").json()["results"]
    dave_id = next(m["id"] for m in dave if m["user"]["username"] == "dave")
    # Dave (admin) becomes a custom role without member:view: his key loses it at once.
    role = alice_client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": "reader", "name": "Reader", "permissions": ["model:read"]},
        format="json",
    ).json()
    assert (
        alice_client.patch(
            f"/api/v1/orgs/acme/members/{dave_id}", {"role": role["id"]}, format="json"
        ).status_code
        == 200
    )
    assert_error(client.get("/api/v1/orgs/acme/members"), 403, "PERMISSION_DENIED")
    assert client.get("/api/v1/orgs/acme/access-rules").status_code == 200


def test_a_key_cannot_mint_a_key_with_more_than_it_has(dave_client):
    body = mint(dave_client, permissions=["api_key:create", "model:read"])
    client = key_client(body["key"])
    response = client.post(
        "/api/v1/orgs/acme/api-keys", {"name": "x", "permissions": ["member:view"]}, format="json"
    )
    assert_error(response, 403, "PERMISSION_DENIED")
    child = client.post(
        "/api/v1/orgs/acme/api-keys",
        {"name": "child", "permissions": ["model:read"]},
        format="json",
    )
    assert child.status_code == 201 and child.json()["owner"]["name"] == "dave"


def test_personal_keys_die_with_the_membership(cast, alice_client, bob_client):
    body = mint(bob_client)
    client = key_client(body["key"])
    assert client.get("/api/v1/orgs/acme/access-rules").status_code == 200
    bob_id = next(
        m["id"]
        for m in alice_client.get("/api/v1/orgs/acme/members").json()["results"]
        if m["user"]["username"] == "bob"
    )
    assert alice_client.delete(f"/api/v1/orgs/acme/members/{bob_id}").status_code == 204
    assert_error(client.get("/api/v1/orgs/acme/access-rules"), 401, "AUTHENTICATION_FAILED")


def test_service_account_keys_survive_their_creator(
    cast, alice_client, dave_client, service_account
):
    body = mint(dave_client, permissions=["model:read"], service_account="ci-bot")
    assert body["owner"] == {
        "type": "service_account",
        "id": service_account["id"],
        "name": "ci-bot",
    }
    dave_id = next(
        m["id"]
        for m in alice_client.get("/api/v1/orgs/acme/members").json()["results"]
        if m["user"]["username"] == "dave"
    )
    assert alice_client.delete(f"/api/v1/orgs/acme/members/{dave_id}").status_code == 204
    assert key_client(body["key"]).get("/api/v1/orgs/acme/access-rules").status_code == 200
    # Disabling the service account stops its keys.
    alice_client.patch(
        f"/api/v1/orgs/acme/service-accounts/{service_account['id']}",
        {"disabled": True},
        format="json",
    )
    assert_error(
        key_client(body["key"]).get("/api/v1/orgs/acme/access-rules"), 401, "AUTHENTICATION_FAILED"
    )


def test_service_account_key_scopes_are_bounded_by_its_role(dave_client, service_account):
    response = dave_client.post(
        "/api/v1/orgs/acme/api-keys",
        {"name": "x", "permissions": ["member:invite"], "service_account": "ci-bot"},
        format="json",
    )
    assert_error(response, 403, "PERMISSION_DENIED")  # the Member role lacks member:invite


def test_minting_for_a_service_account_needs_service_account_manage(bob_client, service_account):
    response = bob_client.post(
        "/api/v1/orgs/acme/api-keys",
        {"name": "x", "permissions": ["model:read"], "service_account": "ci-bot"},
        format="json",
    )
    assert_error(response, 403, "PERMISSION_DENIED")


def test_org_policy_bounds_key_lifetime(cast, bob_client):
    cast.acme.settings = {"max_key_lifetime_days": 30}
    cast.acme.save(update_fields=["settings"])
    response = bob_client.post(
        "/api/v1/orgs/acme/api-keys",
        {"name": "x", "permissions": ["model:read"], "expires_in_days": 90},
        format="json",
    )
    assert "expires_in_days" in assert_error(response, 400, "VALIDATION_ERROR")["details"]
    body = mint(bob_client)  # no expiry asked: the policy's maximum applies
    assert body["expires_at"] is not None


def test_without_api_key_view_only_own_keys_are_listed_and_revocable(
    cast, alice_client, dave_client
):
    role = alice_client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": "minter", "name": "Minter", "permissions": ["api_key:create", "model:read"]},
        format="json",
    ).json()
    mia = make_user("mia")
    membership = add_member(cast.acme, mia, "member")
    assert (
        alice_client.patch(
            f"/api/v1/orgs/acme/members/{membership.pk}", {"role": role["id"]}, format="json"
        ).status_code
        == 200
    )
    mia_client = client_for(mia)
    own = mint(mia_client, name="mia-key")
    daves = mint(dave_client, name="dave-key")
    listed = mia_client.get("/api/v1/orgs/acme/api-keys").json()
    assert [k["name"] for k in listed["results"]] == ["mia-key"]
    assert_error(mia_client.get(f"/api/v1/orgs/acme/api-keys/{daves['id']}"), 404, "NOT_FOUND")
    assert_error(mia_client.delete(f"/api/v1/orgs/acme/api-keys/{daves['id']}"), 404, "NOT_FOUND")
    assert mia_client.delete(f"/api/v1/orgs/acme/api-keys/{own['id']}").status_code == 200


def test_members_see_all_keys_but_only_revokers_revoke_others(bob_client, dave_client):
    bobs = mint(bob_client, name="bob-key")
    daves = mint(dave_client, name="dave-key")
    # The Member role holds api_key:view (every :view) but not api_key:revoke.
    assert {k["name"] for k in bob_client.get("/api/v1/orgs/acme/api-keys").json()["results"]} == {
        "bob-key",
        "dave-key",
    }
    assert_error(
        bob_client.delete(f"/api/v1/orgs/acme/api-keys/{daves['id']}"), 403, "PERMISSION_DENIED"
    )
    assert dave_client.delete(f"/api/v1/orgs/acme/api-keys/{bobs['id']}").status_code == 200


def test_keys_cannot_use_user_endpoints(bob_client):
    body = mint(bob_client)
    client = key_client(body["key"])
    for method, url in (
        ("get", "/api/v1/auth/me"),
        ("post", "/api/v1/orgs"),
        ("post", "/api/v1/auth/2fa/setup"),
    ):
        response = getattr(client, method)(url, {}, format="json")
        assert response.status_code == 403, (url, response.content)


def test_key_of_one_org_gets_404_in_another(cast, bob_client, charlie_client):
    body = mint(bob_client)
    assert_error(key_client(body["key"]).get("/api/v1/orgs/globex/access-rules"), 404, "NOT_FOUND")
    assert_error(charlie_client.get(f"/api/v1/orgs/globex/api-keys/{body['id']}"), 404, "NOT_FOUND")
    assert_error(
        charlie_client.delete(f"/api/v1/orgs/globex/api-keys/{body['id']}"), 404, "NOT_FOUND"
    )
    assert ApiKey.all_orgs.get(pk=body["id"]).revoked_at is None


def test_last_used_is_recorded_without_a_write_per_request(
    bob_client, django_assert_max_num_queries
):
    body = mint(bob_client)
    client = key_client(body["key"])
    client.get("/api/v1/orgs/acme/access-rules")
    row = ApiKey.all_orgs.get(pk=body["id"])
    assert row.last_used_at is not None and row.last_used_ip == "127.0.0.1"
    first = row.last_used_at
    client.get("/api/v1/orgs/acme/access-rules")
    assert (
        ApiKey.all_orgs.get(pk=body["id"]).last_used_at == first
    )  # no second write within the minute


def test_unauthenticated_is_401(anon_client):
    assert_error(anon_client.get("/api/v1/orgs/acme/api-keys"), 401, "AUTHENTICATION_FAILED")
