"""GET /access-rules/effective: "which models may this principal use?"
(?user=, ?service_account=, or the caller itself) and "who may use this model?"
(?model=), answering consistently in both directions."""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditRecord
from tests.conftest import assert_error
from tests.keys.conftest import DECISIONS, ENABLED, NOT_ENABLED, effective, key_client, mint

URL = "/api/v1/orgs/acme/access-rules/effective"


def test_user_parameter_lists_the_users_models(access_world, vera_client):
    assert effective(vera_client, user="frank") == {
        "user": "frank",
        "models": sorted(DECISIONS["frank"]),
    }


def test_service_account_parameter_by_slug_or_id(access_world, vera_client):
    prod_bot = access_world.service_accounts["prod-bot"]
    expected = {"service_account": "prod-bot", "models": sorted(DECISIONS["sa:prod-bot"])}
    assert effective(vera_client, service_account="prod-bot") == expected
    assert effective(vera_client, service_account=prod_bot["id"]) == expected


def test_model_parameter_lists_users_and_service_accounts(access_world, vera_client):
    assert effective(vera_client, model="openai-main/gpt-4o-mini") == {
        "model": "openai-main/gpt-4o-mini",
        "users": ["alice", "bob", "frank"],
        "service_accounts": ["prod-bot"],
    }


def test_both_directions_agree(access_world, alice_client):
    members = [
        m["user"]["username"]
        for m in alice_client.get("/api/v1/orgs/acme/members").json()["results"]
    ]
    accounts = [
        a["slug"] for a in alice_client.get("/api/v1/orgs/acme/service-accounts").json()["results"]
    ]
    assert sorted(members) == ["alice", "bob", "dave", "erin", "frank", "vera"]
    assert sorted(accounts) == ["off-bot", "prod-bot", "staging-bot"]
    forward = {("user", u, m) for u in members for m in effective(alice_client, user=u)["models"]}
    forward |= {
        ("sa", s, m) for s in accounts for m in effective(alice_client, service_account=s)["models"]
    }
    backward = set()
    for fqn in [*ENABLED, NOT_ENABLED]:
        who = effective(alice_client, model=fqn)
        backward |= {("user", u, fqn) for u in who["users"]} | {
            ("sa", s, fqn) for s in who["service_accounts"]
        }
    assert forward == backward
    # ...and both are the decision table, not merely equal to each other.
    table = {
        ("sa" if p.startswith("sa:") else "user", p.removeprefix("sa:"), m)
        for p, models in DECISIONS.items()
        if not p.startswith("key:")
        for m in models
    }
    assert forward == table and len(table) > 20


def test_without_parameters_the_caller_gets_their_own(access_world):
    for name in ("alice", "bob", "erin", "dave"):
        assert effective(access_world.client(name)) == {"models": sorted(DECISIONS[name])}, name


@pytest.mark.parametrize("key", sorted(k for k in DECISIONS if k.startswith("key:")))
def test_with_a_key_the_caller_gets_the_owners_models_narrowed_by_the_key(access_world, key):
    assert effective(access_world.client(key)) == {"models": sorted(DECISIONS[key])}


def test_a_key_of_a_disabled_service_account_is_refused(access_world, alice_client):
    staging_bot = access_world.service_accounts["staging-bot"]
    client = access_world.client("key:staging-bot-any")
    assert effective(client)["models"]
    response = alice_client.patch(
        f"/api/v1/orgs/acme/service-accounts/{staging_bot['id']}", {"disabled": True}, format="json"
    )
    assert response.status_code == 200, response.content
    assert_error(client.get(URL), 401, "AUTHENTICATION_FAILED")
    assert effective(alice_client, service_account="staging-bot")["models"] == []
    assert all(
        "staging-bot" not in effective(alice_client, model=m)["service_accounts"] for m in ENABLED
    )


@pytest.mark.parametrize(
    "params",
    [
        {"user": "nobody"},
        {"user": "charlie"},  # exists, but a member of another org only
        {"user": ""},
        {"service_account": "ghost-bot"},
        {"service_account": str(uuid.uuid4())},
    ],
    ids=["unknown-user", "other-org-user", "empty-user", "unknown-sa-slug", "unknown-sa-id"],
)
def test_unknown_principal_is_404(access_world, alice_client, params):
    error = assert_error(alice_client.get(URL, params), 404, "NOT_FOUND")
    assert "charlie" not in error["message"]


def test_another_orgs_service_account_is_404(access_world, charlie_client, alice_client):
    response = charlie_client.post(
        "/api/v1/orgs/globex/service-accounts",
        {"slug": "g-bot", "name": "G", "role": "member"},
        format="json",
    )
    assert response.status_code == 201, response.content
    for ref in ("g-bot", response.json()["id"]):
        assert_error(alice_client.get(URL, {"service_account": ref}), 404, "NOT_FOUND")


def test_a_model_nobody_may_use_and_a_pattern_are_answered_with_no_one(access_world, alice_client):
    for model in (NOT_ENABLED, "openai-main/*", "*", "env=prod", "no-such/model"):
        assert effective(alice_client, model=model) == {
            "model": model,
            "users": [],
            "service_accounts": [],
        }


def test_needs_model_read_and_authentication(access_world, dave_client, anon_client):
    no_read = mint(dave_client, permissions=["member:view"])
    error = assert_error(
        key_client(no_read["key"]).get(URL, {"user": "bob"}), 403, "PERMISSION_DENIED"
    )
    assert "model:read" in error["message"]
    denied = AuditRecord.objects.get(outcome="denied", actor_user=access_world.cast.dave)
    assert denied.action == "model:read" and denied.status_code == 403
    assert denied.actor_label == f"dave via {no_read['prefix']}"
    assert_error(anon_client.get(URL), 401, "AUTHENTICATION_FAILED")
    assert_error(anon_client.get(URL, {"model": "local/phi-3"}), 401, "AUTHENTICATION_FAILED")
