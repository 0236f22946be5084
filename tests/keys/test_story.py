"""Issue #3's story through the API: an admin registers openai-main with its
secret, grants openai-main/gpt-4o to a team, and a developer of that team mints a
scoped, expiring key; the secret is never seen again by anyone."""

from __future__ import annotations

import json

from audit.models import AuditRecord
from keys.models import ApiKey, ProviderAccount
from tests.conftest import client_for

UPSTREAM_SECRET = "sk-upstream-" + "Z" * 40


def test_admin_registers_account_grants_team_and_developer_mints_key(cast, dave_client, settings):
    acme = cast.acme
    acme.settings = {"allowed_private_hosts": ["127.0.0.1:9000"]}
    acme.save(update_fields=["settings"])

    created = dave_client.post(
        "/api/v1/orgs/acme/provider-accounts",
        {
            "name": "openai-main",
            "provider_type": "openai",
            "base_url": "http://127.0.0.1:9000/v1",
            "models": [
                {"name": "gpt-4o", "input_price_per_million": 2.5, "output_price_per_million": 10},
                "gpt-4o-mini",
            ],
            "tags": {"env": "prod"},
            "secret": UPSTREAM_SECRET,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    account = created.json()
    assert account["has_secret"] is True and account["secret_kind"] == "encrypted"
    assert "secret" not in account and UPSTREAM_SECRET not in created.content.decode()

    team = dave_client.post(
        "/api/v1/orgs/acme/teams", {"slug": "ml-platform", "name": "ML"}, format="json"
    )
    assert team.status_code == 201, team.content
    added = dave_client.post(
        f"/api/v1/orgs/acme/teams/{team.json()['id']}/members",
        {"user_id": str(cast.bob.pk)},
        format="json",
    )
    assert added.status_code == 201, added.content
    rules = dave_client.put(
        "/api/v1/orgs/acme/access-rules.yaml",
        "authz_rules:\n  - models: [openai-main/gpt-4o]\n    teams: [ml-platform]\n",
        content_type="application/yaml",
    )
    assert rules.status_code == 200, rules.content

    bob = client_for(cast.bob)
    effective = bob.get("/api/v1/orgs/acme/access-rules/effective")
    assert effective.json()["models"] == ["openai-main/gpt-4o"]
    minted = bob.post(
        "/api/v1/orgs/acme/api-keys",
        {
            "name": "notebook",
            "permissions": ["run_inference", "model:read"],
            "expires_in_days": 30,
            "models": ["openai-main/gpt-4o"],
        },
        format="json",
    )
    assert minted.status_code == 201, minted.content
    body = minted.json()
    assert body["key"].startswith(body["prefix"] + "_")
    assert body["permissions"] == ["inference:run", "model:read"]
    assert body["status"] == "active" and body["expires_at"]

    # The key works on the API within its scope and sees the model it may use.
    with_key = bob.__class__()
    with_key.credentials(HTTP_X_API_KEY=body["key"])
    assert with_key.get("/api/v1/orgs/acme/access-rules/effective").json()["models"] == [
        "openai-main/gpt-4o"
    ]
    assert with_key.get("/api/v1/orgs/acme/members").status_code == 403  # member:view not in scope

    # The upstream secret never comes back: not in any response, row, or audit record.
    for client in (dave_client, bob):
        listing = client.get("/api/v1/orgs/acme/provider-accounts")
        assert UPSTREAM_SECRET not in listing.content.decode()
    row = ProviderAccount.all_orgs.get(name="openai-main")
    assert UPSTREAM_SECRET not in row.encrypted_secret and UPSTREAM_SECRET not in repr(row)
    assert not any(
        UPSTREAM_SECRET in json.dumps(r.data) or body["key"] in json.dumps(r.data)
        for r in AuditRecord.objects.all()
    )
    # The API key is stored as a digest only, and its listing never shows it again.
    key_row = ApiKey.all_orgs.get(public_id=body["prefix"].split("_")[1])
    assert body["key"] not in (key_row.secret_digest, key_row.last_four)
    assert body["key"] not in bob.get("/api/v1/orgs/acme/api-keys").content.decode()
    actions = set(AuditRecord.objects.values_list("action", flat=True))
    assert {"provider_account:manage", "team:manage", "policy:manage", "api_key:create"} <= actions
