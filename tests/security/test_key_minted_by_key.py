"""A key minted by a key is bounded by its parent: scopes, models, expiry and limits.
A signed-in user minting a key is not affected."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from audit.models import AuditRecord
from inferia import clock
from keys.models import ApiKey
from tests.conftest import assert_error
from tests.keys.conftest import key_client

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
