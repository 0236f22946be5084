"""Object-level grants: an admin lets a team manage only the staging account."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from tests.conftest import assert_error


@pytest.fixture
def accounts(cast, alice_client):
    cast.acme.settings = {"allowed_private_hosts": ["127.0.0.1"]}
    cast.acme.save(update_fields=["settings"])
    ids = {}
    for name in ("staging", "prod"):
        response = alice_client.post(
            "/api/v1/orgs/acme/provider-accounts",
            {
                "name": name,
                "provider_type": "openai_compatible",
                "base_url": "http://127.0.0.1:8001/v1",
                "models": ["llama"],
            },
            format="json",
        )
        assert response.status_code == 201, response.content
        ids[name] = response.json()["id"]
    team = alice_client.post(
        "/api/v1/orgs/acme/teams", {"slug": "ops", "name": "Ops"}, format="json"
    ).json()
    alice_client.post(
        f"/api/v1/orgs/acme/teams/{team['id']}/members",
        {"user_id": str(cast.vera.pk)},
        format="json",
    )
    return ids


def test_team_grant_lets_members_manage_only_that_account(
    cast, alice_client, vera_client, accounts
):
    staging, prod = accounts["staging"], accounts["prod"]
    before = vera_client.patch(
        f"/api/v1/orgs/acme/provider-accounts/{staging}",
        {"tags": {"env": "staging"}},
        format="json",
    )
    assert_error(before, 403, "PERMISSION_DENIED")

    granted = alice_client.post(
        f"/api/v1/orgs/acme/provider-accounts/{staging}/grants", {"team": "ops"}, format="json"
    )
    assert granted.status_code == 200, granted.content
    assert granted.json() == {"teams": ["ops"], "users": []}

    allowed = vera_client.patch(
        f"/api/v1/orgs/acme/provider-accounts/{staging}",
        {"tags": {"env": "staging"}},
        format="json",
    )
    assert allowed.status_code == 200, allowed.content
    assert allowed.json()["tags"] == {"env": "staging"}
    assert_error(
        vera_client.patch(
            f"/api/v1/orgs/acme/provider-accounts/{prod}", {"tags": {"x": "y"}}, format="json"
        ),
        403,
        "PERMISSION_DENIED",
    )
    # The grant does not let vera create accounts or grant others.
    assert_error(
        vera_client.post(
            f"/api/v1/orgs/acme/provider-accounts/{staging}/grants", {"user": "bob"}, format="json"
        ),
        403,
        "PERMISSION_DENIED",
    )
    assert (
        AuditRecord.objects.filter(action="provider_account:manage", data__op="grant").count() == 1
    )


def test_leaving_the_team_or_revoking_ends_the_grant(cast, alice_client, vera_client, accounts):
    staging = accounts["staging"]
    alice_client.post(
        f"/api/v1/orgs/acme/provider-accounts/{staging}/grants", {"team": "ops"}, format="json"
    )
    team_id = alice_client.get("/api/v1/orgs/acme/teams").json()["results"][0]["id"]
    removed = alice_client.delete(f"/api/v1/orgs/acme/teams/{team_id}/members/{cast.vera.pk}")
    assert removed.status_code == 204
    assert_error(
        vera_client.patch(
            f"/api/v1/orgs/acme/provider-accounts/{staging}", {"tags": {}}, format="json"
        ),
        403,
        "PERMISSION_DENIED",
    )
    alice_client.post(
        f"/api/v1/orgs/acme/provider-accounts/{staging}/grants", {"user": "vera"}, format="json"
    )
    assert (
        vera_client.patch(
            f"/api/v1/orgs/acme/provider-accounts/{staging}", {"tags": {}}, format="json"
        ).status_code
        == 200
    )
    revoked = alice_client.delete(
        f"/api/v1/orgs/acme/provider-accounts/{staging}/grants", {"user": "vera"}, format="json"
    )
    assert revoked.json() == {"teams": ["ops"], "users": []}  # the team grant stays
    assert_error(
        vera_client.patch(
            f"/api/v1/orgs/acme/provider-accounts/{staging}", {"tags": {}}, format="json"
        ),
        403,
        "PERMISSION_DENIED",
    )


def test_grant_on_another_orgs_account_is_404(cast, charlie_client, accounts):
    response = charlie_client.post(
        f"/api/v1/orgs/globex/provider-accounts/{accounts['staging']}/grants",
        {"team": "ops"},
        format="json",
    )
    assert_error(response, 404, "NOT_FOUND")


@pytest.mark.parametrize("how", ["removed", "left"])
def test_a_users_grant_ends_with_their_membership(cast, alice_client, vera_client, accounts, how):
    from orgs.models import Membership
    from tests.conftest import add_member

    staging = accounts["staging"]
    alice_client.post(
        f"/api/v1/orgs/acme/provider-accounts/{staging}/grants", {"user": "vera"}, format="json"
    )
    vera = Membership.all_orgs.get(org=cast.acme, user=cast.vera)
    client = alice_client if how == "removed" else vera_client
    assert client.delete(f"/api/v1/orgs/acme/members/{vera.pk}").status_code == 204
    assert alice_client.get(f"/api/v1/orgs/acme/provider-accounts/{staging}/grants").json() == {
        "teams": [],
        "users": [],
    }
    add_member(cast.acme, cast.vera, "viewer")  # rejoining revives nothing
    assert_error(
        vera_client.patch(
            f"/api/v1/orgs/acme/provider-accounts/{staging}", {"tags": {}}, format="json"
        ),
        403,
        "PERMISSION_DENIED",
    )
