"""A key may rotate or revoke itself, or keys it covers (scopes and models) and may
manage (``api_key:revoke``); "same owner" alone is not enough. Rotating a key
you do not own is refused: the new secret would go to the caller."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from keys.models import ApiKey
from tests.conftest import assert_error
from tests.keys.conftest import key_client, mint

ORG = "/api/v1/orgs/acme"
BROAD = ["model:read", "api_key:create", "api_key:revoke", "api_key:view", "member:update"]


def _rotate(client, key_id):
    return client.post(f"{ORG}/api-keys/{key_id}/rotate", {}, format="json")


def _state(key_id) -> tuple:
    row = ApiKey.all_orgs.get(pk=key_id)
    return row.revoked_at, row.expires_at, row.replaced_by_id


def _assert_untouched(key_id, before, caller_prefix: str) -> None:
    assert _state(key_id) == before
    assert ApiKey.all_orgs.filter(replaced_by__isnull=False).count() == 0 or before[2]
    assert not AuditRecord.objects.filter(
        action__in=("api_key:rotate", "api_key:revoke"),
        outcome="success",
        target_id=str(key_id),
    ).exists(), caller_prefix


def test_narrow_key_cannot_rotate_its_owners_broad_key(alice_client):
    broad = mint(alice_client, name="broad", permissions=BROAD)
    narrow = mint(alice_client, name="narrow", permissions=["model:read"])
    before = _state(broad["id"])
    count = ApiKey.all_orgs.count()
    error = assert_error(_rotate(key_client(narrow["key"]), broad["id"]), 403, "PERMISSION_DENIED")
    assert narrow["prefix"] in error["message"] and broad["prefix"] in error["message"]
    assert ApiKey.all_orgs.count() == count  # no replacement minted
    _assert_untouched(broad["id"], before, narrow["prefix"])
    # Nor revoke it.
    error = assert_error(
        key_client(narrow["key"]).delete(f"{ORG}/api-keys/{broad['id']}"), 403, "PERMISSION_DENIED"
    )
    _assert_untouched(broad["id"], before, narrow["prefix"])


def test_key_with_revoke_scope_cannot_rotate_a_sibling_with_more_scopes(alice_client):
    manager = mint(alice_client, name="mgr", permissions=["model:read", "api_key:revoke"])
    wider = mint(alice_client, name="wider", permissions=["model:read", "member:update"])
    before = _state(wider["id"])
    assert_error(_rotate(key_client(manager["key"]), wider["id"]), 403, "PERMISSION_DENIED")
    assert_error(
        key_client(manager["key"]).delete(f"{ORG}/api-keys/{wider['id']}"), 403, "PERMISSION_DENIED"
    )
    _assert_untouched(wider["id"], before, manager["prefix"])


@pytest.mark.parametrize(
    ("manager_models", "target_models"),
    [
        (["openai-main/gpt-4o"], []),  # restricted key, unrestricted sibling
        (["openai-main/gpt-4o"], ["openai-main/*"]),  # a narrower model list
        (["openai-main/gpt-4o"], ["openai-main/gpt-4o", "azure-prod/gpt-4o"]),  # more models
        (["openai-main/a/*"], ["openai-main/*"]),
    ],
    ids=["unrestricted-target", "wildcard-target", "more-models", "narrower-prefix"],
)
def test_key_cannot_rotate_a_sibling_with_more_models(alice_client, manager_models, target_models):
    scopes = ["model:read", "api_key:revoke"]
    manager = mint(alice_client, name="mgr", permissions=scopes, models=manager_models)
    target = mint(alice_client, name="target", permissions=["model:read"], models=target_models)
    before = _state(target["id"])
    assert_error(_rotate(key_client(manager["key"]), target["id"]), 403, "PERMISSION_DENIED")
    _assert_untouched(target["id"], before, manager["prefix"])


def test_key_rotates_a_covered_sibling_and_gets_its_secret(alice_client):
    manager = mint(
        alice_client,
        name="mgr",
        permissions=["model:read", "api_key:revoke"],
        models=["openai-main/*"],
    )
    target = mint(
        alice_client, name="target", permissions=["model:read"], models=["openai-main/gpt-4o"]
    )
    response = _rotate(key_client(manager["key"]), target["id"])
    assert response.status_code == 201, response.content
    new = response.json()
    assert new["permissions"] == ["model:read"] and new["models"] == ["openai-main/gpt-4o"]
    assert ApiKey.all_orgs.get(pk=target["id"]).revoked_at is not None
    record = AuditRecord.objects.get(action="api_key:rotate", target_id=target["id"])
    assert record.outcome == "success" and manager["prefix"] in record.actor_label
    # The new secret works.
    assert key_client(new["key"]).get(f"{ORG}/access-rules").status_code == 200


def test_covered_sibling_without_revoke_scope_is_refused(alice_client):
    manager = mint(alice_client, name="mgr", permissions=["model:read", "api_key:create"])
    target = mint(alice_client, name="target", permissions=["model:read"])
    before = _state(target["id"])
    error = assert_error(
        _rotate(key_client(manager["key"]), target["id"]), 403, "PERMISSION_DENIED"
    )
    assert "api_key:revoke" in error["message"]
    _assert_untouched(target["id"], before, manager["prefix"])


def test_key_rotates_and_revokes_itself(bob_client):
    own = mint(bob_client, name="self", permissions=["model:read"])
    response = _rotate(key_client(own["key"]), own["id"])
    assert response.status_code == 201, response.content
    new = response.json()
    assert ApiKey.all_orgs.get(pk=own["id"]).revoked_at is not None
    revoked = key_client(new["key"]).delete(f"{ORG}/api-keys/{new['id']}")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert AuditRecord.objects.filter(
        action="api_key:revoke", target_id=new["id"], outcome="success"
    ).exists()


def test_key_with_revoke_scope_may_revoke_but_not_rotate_another_members_key(
    dave_client, bob_client
):
    manager = mint(
        dave_client, name="dave-mgr", permissions=["model:read", "api_key:view", "api_key:revoke"]
    )
    bobs = mint(bob_client, name="bob-key", permissions=["model:read"])
    before = _state(bobs["id"])
    error = assert_error(_rotate(key_client(manager["key"]), bobs["id"]), 403, "PERMISSION_DENIED")
    assert "owner" in error["message"]
    _assert_untouched(bobs["id"], before, manager["prefix"])
    revoked = key_client(manager["key"]).delete(f"{ORG}/api-keys/{bobs['id']}")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert AuditRecord.objects.filter(
        action="api_key:revoke", target_id=bobs["id"], outcome="success"
    ).exists()


@pytest.mark.parametrize("actor", ["alice", "dave"])
def test_admin_signed_in_cannot_rotate_another_members_key(request, bob_client, actor):
    client = request.getfixturevalue(f"{actor}_client")
    bobs = mint(bob_client, name="bob-key", permissions=["model:read"])
    before = _state(bobs["id"])
    count = ApiKey.all_orgs.count()
    response = _rotate(client, bobs["id"])
    error = assert_error(response, 403, "PERMISSION_DENIED")
    assert "revoke it instead" in error["message"]
    assert "key" not in response.json()
    assert ApiKey.all_orgs.count() == count
    _assert_untouched(bobs["id"], before, actor)
    # Revoking stays possible with api_key:revoke.
    assert client.delete(f"{ORG}/api-keys/{bobs['id']}").status_code == 200


def test_rotation_keeps_the_keys_limits(bob_client):
    own = mint(bob_client, name="limited", permissions=["model:read"])
    ApiKey.all_orgs.filter(pk=own["id"]).update(requests_per_minute=5, monthly_token_quota=1000)
    response = _rotate(bob_client, own["id"])
    assert response.status_code == 201, response.content
    new = ApiKey.all_orgs.get(pk=response.json()["id"])
    assert (new.requests_per_minute, new.monthly_token_quota) == (5, 1000)


def test_key_of_another_org_cannot_touch_acme_keys(alice_client, charlie_client):
    acme_key = mint(alice_client, name="acme", permissions=["model:read"])
    globex_key = mint(
        charlie_client, org="globex", name="gx", permissions=["model:read", "api_key:revoke"]
    )
    before = _state(acme_key["id"])
    assert_error(_rotate(key_client(globex_key["key"]), acme_key["id"]), 404, "NOT_FOUND")
    rotate_in_globex = key_client(globex_key["key"]).post(
        f"/api/v1/orgs/globex/api-keys/{acme_key['id']}/rotate", {}, format="json"
    )
    assert_error(rotate_in_globex, 404, "NOT_FOUND")
    _assert_untouched(acme_key["id"], before, globex_key["prefix"])
