"""A key minted by a key is bounded by its parent: scopes, models, expiry and limits.
A signed-in user minting a key is not affected."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from audit.models import AuditRecord
from inferia import clock
from keys.models import ApiKey
from orgs.models import Membership
from tests.conftest import assert_error
from tests.keys.conftest import (
    CATALOG,
    allow_private_upstream,
    create_provider_account,
    create_service_account,
    effective,
    key_client,
    put_rules_yaml,
)

ORG = "/api/v1/orgs/acme"
PARENT_SCOPES = ["model:read", "api_key:create"]


def _mint(client, **body):
    body.setdefault("name", "child")
    body.setdefault("permissions", ["model:read"])
    return client.post(f"{ORG}/api-keys", body, format="json")


def _parent(bob_client, **body) -> dict:
    body.setdefault("name", "parent")
    body.setdefault("permissions", PARENT_SCOPES)
    response = _mint(bob_client, **body)
    assert response.status_code == 201, response.content
    return response.json()


def test_child_cannot_have_scopes_beyond_its_parent(bob_client):
    parent = _parent(bob_client)
    count = ApiKey.all_orgs.count()
    response = _mint(key_client(parent["key"]), permissions=["model:read", "inference:run"])
    error = assert_error(response, 403, "PERMISSION_DENIED")
    assert error["details"] == {"missing_permissions": ["inference:run"]}
    assert ApiKey.all_orgs.count() == count


def test_child_of_a_model_restricted_parent_gets_its_models(bob_client):
    parent = _parent(bob_client, models=["openai-main/gpt-4o"])
    response = _mint(key_client(parent["key"]))
    assert response.status_code == 201, response.content
    assert response.json()["models"] == ["openai-main/gpt-4o"]
    row = ApiKey.all_orgs.get(pk=response.json()["id"])
    assert row.model_patterns == ["openai-main/gpt-4o"]
    record = AuditRecord.objects.get(action="api_key:create", target_id=str(row.pk))
    assert record.data["parent"] == parent["prefix"]


@pytest.mark.parametrize(
    "models",
    [["azure-prod/gpt-4o"], ["openai-main/*"], ["openai-main/gpt-4o", "openai-main/gpt-5"]],
    ids=["other-account", "wider-wildcard", "one-more-model"],
)
def test_child_cannot_name_models_outside_its_parent(bob_client, models):
    parent = _parent(bob_client, models=["openai-main/gpt-4o"])
    count = ApiKey.all_orgs.count()
    error = assert_error(_mint(key_client(parent["key"]), models=models), 403, "PERMISSION_DENIED")
    assert "models" in error["details"]
    assert ApiKey.all_orgs.count() == count


def test_child_may_narrow_its_parents_models(bob_client):
    parent = _parent(bob_client, models=["openai-main/*"])
    response = _mint(key_client(parent["key"]), models=["openai-main/gpt-4o"])
    assert response.status_code == 201, response.content
    assert response.json()["models"] == ["openai-main/gpt-4o"]


def test_child_never_outlives_its_parent(bob_client):
    parent = _parent(bob_client, expires_in_days=2)
    parent_expiry = ApiKey.all_orgs.get(pk=parent["id"]).expires_at
    for body in ({}, {"expires_in_days": 30}):
        response = _mint(key_client(parent["key"]), **body)
        assert response.status_code == 201, response.content
        child = ApiKey.all_orgs.get(pk=response.json()["id"])
        assert child.expires_at == parent_expiry
        assert datetime.fromisoformat(response.json()["expires_at"]) == parent_expiry
    shorter = _mint(key_client(parent["key"]), expires_in_days=1)
    assert shorter.status_code == 201
    assert ApiKey.all_orgs.get(pk=shorter.json()["id"]).expires_at < parent_expiry


def test_child_of_a_key_in_its_grace_period_ends_with_it(bob_client):
    parent = _parent(bob_client)
    rotated = bob_client.post(
        f"{ORG}/api-keys/{parent['id']}/rotate", {"grace_seconds": 60}, format="json"
    )
    assert rotated.status_code == 201, rotated.content
    response = _mint(key_client(parent["key"]))
    assert response.status_code == 201, response.content
    child = ApiKey.all_orgs.get(pk=response.json()["id"])
    assert child.expires_at is not None and child.expires_at <= clock.now() + timedelta(seconds=60)


def test_unlimited_child_of_a_limited_parent_gets_the_parents_limits(bob_client):
    parent = _parent(bob_client)
    limits = {
        "requests_per_minute": 3,
        "tokens_per_minute": 100,
        "monthly_token_quota": 1000,
        "monthly_cost_quota": 2.5,
    }
    ApiKey.all_orgs.filter(pk=parent["id"]).update(**limits)
    response = _mint(key_client(parent["key"]))
    assert response.status_code == 201, response.content
    child = ApiKey.all_orgs.get(pk=response.json()["id"])
    assert {name: getattr(child, name) for name in limits} == limits


def test_grandchild_stays_within_the_first_key(bob_client):
    parent = _parent(bob_client, models=["openai-main/*"], expires_in_days=3)
    ApiKey.all_orgs.filter(pk=parent["id"]).update(requests_per_minute=7)
    child = _mint(key_client(parent["key"]), permissions=PARENT_SCOPES)
    assert child.status_code == 201, child.content
    grandchild = _mint(key_client(child.json()["key"]), expires_in_days=100)
    assert grandchild.status_code == 201, grandchild.content
    row = ApiKey.all_orgs.get(pk=grandchild.json()["id"])
    assert row.model_patterns == ["openai-main/*"]
    assert row.requests_per_minute == 7
    assert row.expires_at == ApiKey.all_orgs.get(pk=parent["id"]).expires_at


def test_signed_in_user_mints_without_a_parents_bounds(bob_client):
    _parent(bob_client, models=["openai-main/gpt-4o"], expires_in_days=1)
    response = _mint(bob_client, models=["azure-prod/*"], expires_in_days=90)
    assert response.status_code == 201, response.content
    row = ApiKey.all_orgs.get(pk=response.json()["id"])
    assert row.model_patterns == ["azure-prod/*"]
    assert row.expires_at > clock.now() + timedelta(days=89)
    assert row.requests_per_minute is None and row.monthly_token_quota is None
    unrestricted = _mint(bob_client)
    assert unrestricted.status_code == 201
    row = ApiKey.all_orgs.get(pk=unrestricted.json()["id"])
    assert row.model_patterns == [] and row.expires_at is None


# --- bounded at every use, not only when minted -----------------------------------------
# Keys' scopes, models and expiry are immutable through the services, so what changes
# under a child is its parent: revoked, expired, or its owner's permissions. Each holds
# for the child at once, through its parent chain (keys.principals.access_for_key).

INFERENCE_PARENT = ["model:read", "api_key:create", "api_key:view"]


def _child(parent_key: str, **body) -> dict:
    body.setdefault("permissions", ["model:read", "api_key:view"])
    response = _mint(key_client(parent_key), **body)
    assert response.status_code == 201, response.content
    return response.json()


def _lists_keys(plaintext: str):
    return key_client(plaintext).get(f"{ORG}/api-keys")


def test_child_is_refused_once_its_parent_is_revoked(bob_client):
    parent = _parent(bob_client, permissions=INFERENCE_PARENT)
    child = _child(parent["key"])
    assert _lists_keys(child["key"]).status_code == 200
    assert bob_client.delete(f"{ORG}/api-keys/{parent['id']}").status_code == 200
    error = assert_error(_lists_keys(child["key"]), 401, "AUTHENTICATION_FAILED")
    assert error["message"] == (
        f"API key {child['prefix']} is no longer valid: the key that created it is revoked"
    )
    assert parent["key"][12:] not in error["message"]
    # The child row itself is untouched: it is its parent that ends it.
    assert ApiKey.all_orgs.get(pk=child["id"]).revoked_at is None


def test_child_is_refused_once_its_parent_expires(bob_client):
    parent = _parent(bob_client, permissions=INFERENCE_PARENT)
    child = _child(parent["key"])
    assert ApiKey.all_orgs.get(pk=child["id"]).expires_at is None
    # The parent's expiry moves earlier (an operator's edit): the child ends with it.
    row = ApiKey.all_orgs.get(pk=parent["id"])
    row.expires_at = clock.now() + timedelta(hours=1)
    row.save(update_fields=["expires_at"])
    assert _lists_keys(child["key"]).status_code == 200
    clock.advance(2 * 3600)
    error = assert_error(_lists_keys(child["key"]), 401, "AUTHENTICATION_FAILED")
    assert error["message"] == (
        f"API key {child['prefix']} is no longer valid: the key that created it is expired"
    )


def test_grandchild_is_refused_once_the_first_key_is_revoked(bob_client):
    parent = _parent(bob_client, permissions=INFERENCE_PARENT)
    child = _child(parent["key"], permissions=INFERENCE_PARENT)
    grandchild = _child(child["key"])
    assert _lists_keys(grandchild["key"]).status_code == 200
    assert bob_client.delete(f"{ORG}/api-keys/{parent['id']}").status_code == 200
    for key in (child, grandchild):
        error = assert_error(_lists_keys(key["key"]), 401, "AUTHENTICATION_FAILED")
        assert error["message"].startswith(f"API key {key['prefix']} is no longer valid")


def test_child_loses_what_its_parents_owner_loses(cast, alice_client, dave_client):
    """A service account's key minted by an Admin's key: when the Admin becomes a
    Viewer, the child (whose owner, the service account, still holds the scope)
    loses what the Admin's key can no longer do."""
    create_service_account(alice_client, "ci-bot", "member")
    parent = _parent(
        dave_client, permissions=["model:read", "api_key:create", "service_account:manage"]
    )
    child = _child(
        parent["key"],
        permissions=["model:read", "api_key:create"],
        service_account="ci-bot",
    )
    assert ApiKey.all_orgs.get(pk=child["id"]).service_account_id is not None
    assert _mint(key_client(child["key"]), name="grandchild").status_code == 201
    dave = Membership.all_orgs.get(org=cast.acme, user=cast.dave)
    demoted = alice_client.patch(f"{ORG}/members/{dave.pk}", {"role": "viewer"}, format="json")
    assert demoted.status_code == 200, demoted.content
    error = assert_error(_mint(key_client(child["key"]), name="again"), 403, "PERMISSION_DENIED")
    assert "api_key:create" in error["message"]


def test_child_stays_within_its_parents_models_at_use(cast, alice_client, bob_client):
    """A child stored with models wider than its parent's (minted before minting was
    bounded) is held to its parent's models when used."""
    allow_private_upstream(cast.acme)
    for name, (tags, models) in CATALOG.items():
        create_provider_account(alice_client, name, models, tags)
    rules = "authz_rules:\n  - models: ['*']\n    users: [bob]\n"
    assert put_rules_yaml(alice_client, rules).status_code == 200
    parent = _parent(bob_client, models=["openai-main/*"])
    child = _child(parent["key"], permissions=["model:read"])
    ApiKey.all_orgs.filter(pk=child["id"]).update(model_patterns=["openai-main/*", "azure-prod/*"])
    assert effective(key_client(child["key"]))["models"] == [
        "openai-main/gpt-4o",
        "openai-main/gpt-4o-mini",
    ]


def test_rotating_a_parent_moves_its_children_to_the_replacement(bob_client):
    parent = _parent(bob_client, permissions=INFERENCE_PARENT)
    child = _child(parent["key"])
    rotated = bob_client.post(f"{ORG}/api-keys/{parent['id']}/rotate", {}, format="json")
    assert rotated.status_code == 201, rotated.content
    assert _lists_keys(child["key"]).status_code == 200
    assert str(ApiKey.all_orgs.get(pk=child["id"]).parent_id) == rotated.json()["id"]
    # Rotating the child keeps it under its parent.
    again = key_client(child["key"]).post(f"{ORG}/api-keys/{child['id']}/rotate", {}, format="json")
    assert again.status_code == 201, again.content
    assert str(ApiKey.all_orgs.get(pk=again.json()["id"]).parent_id) == rotated.json()["id"]


def test_parent_rows_go_only_with_their_children(cast, alice_client):
    """``ApiKey.parent`` is RESTRICT: a parent row can go only together with its
    children (here a service account deleted with all its keys), never leaving a
    child without the parent that bounds it."""
    account = create_service_account(alice_client, "ci-bot", "member")
    parent = _parent(
        alice_client, permissions=["model:read", "api_key:create"], service_account="ci-bot"
    )
    child = _child(parent["key"], permissions=["model:read"])
    assert str(ApiKey.all_orgs.get(pk=child["id"]).parent_id) == parent["id"]
    response = alice_client.delete(f"{ORG}/service-accounts/{account['id']}")
    assert response.status_code == 204, response.content
    assert not ApiKey.all_orgs.filter(pk__in=[parent["id"], child["id"]]).exists()
