"""Provider accounts through the API: create every provider type, list, detail,
PATCH, DELETE; names unique per org; the secret (or its reference) never shown."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from keys.models import ProviderAccount
from tests.conftest import assert_error
from tests.keys.providers import PUBLIC_URL, SECRET, accounts_url, create_account

OUTPUT_FIELDS = {
    "id",
    "name",
    "provider_type",
    "base_url",
    "api_version",
    "deployments",
    "models",
    "tags",
    "has_secret",
    "secret_kind",
    "secret_updated_at",
    "created_at",
    "updated_at",
}
PRICED_MODELS = [
    {"name": "gpt-4o", "input_price_per_million": 2.5, "output_price_per_million": 10},
    "gpt-4o-mini",
]


@pytest.fixture
def account(alice_client, cast):
    return create_account(alice_client, models=PRICED_MODELS, tags={"env": "prod"}, secret=SECRET)


def _row(account_id) -> ProviderAccount:
    return ProviderAccount.all_orgs.get(pk=account_id)


# --- create ---------------------------------------------------------------------------------


def test_create_openai_account_with_priced_models_tags_and_secret(cast, dave_client):
    response = dave_client.post(
        accounts_url(),
        {
            "name": "openai-main",
            "provider_type": "openai",
            "base_url": PUBLIC_URL + "/",
            "models": PRICED_MODELS,
            "tags": {"env": "prod", "team": "ml"},
            "secret": SECRET,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == OUTPUT_FIELDS
    assert body["name"] == "openai-main" and body["provider_type"] == "openai"
    assert body["base_url"] == PUBLIC_URL  # trailing slash normalized away
    assert body["models"] == [
        {"name": "gpt-4o", "input_price_per_million": 2.5, "output_price_per_million": 10.0},
        {"name": "gpt-4o-mini"},
    ]
    assert body["tags"] == {"env": "prod", "team": "ml"}
    assert body["has_secret"] is True and body["secret_kind"] == "encrypted"
    assert body["secret_updated_at"] is not None
    assert SECRET not in response.content.decode()

    row = _row(body["id"])
    assert row.org_id == cast.acme.pk
    assert row.model_names == ["gpt-4o", "gpt-4o-mini"]
    assert row.enabled_models[0]["input_price_per_million"] == 2.5
    assert row.encrypted_secret and SECRET not in row.encrypted_secret
    audit = AuditRecord.objects.get(action="provider_account:manage", data__op="create")
    assert audit.org_id == cast.acme.pk and audit.actor_user_id == cast.dave.pk
    assert audit.target_id == body["id"] and audit.outcome == "success"
    assert audit.data["has_secret"] is True and audit.data["base_url"] == PUBLIC_URL


def test_create_azure_account_keeps_api_version_and_deployments(cast, alice_client):
    body = create_account(
        alice_client,
        name="azure-prod",
        provider_type="azure_openai",
        base_url="https://20.1.2.3",
        api_version="2024-10-21",
        deployments={"gpt-4o": "gpt4o-eastus", "gpt-4o-mini": "mini-eastus"},
        models=["gpt-4o", "gpt-4o-mini"],
        secret=SECRET,
    )
    assert body["provider_type"] == "azure_openai"
    assert body["api_version"] == "2024-10-21"
    assert body["deployments"] == {"gpt-4o": "gpt4o-eastus", "gpt-4o-mini": "mini-eastus"}
    row = _row(body["id"])
    assert (row.api_version, row.deployments) == ("2024-10-21", body["deployments"])
    detail = alice_client.get(accounts_url("acme", body["id"])).json()
    assert detail["deployments"] == body["deployments"] and detail["api_version"] == "2024-10-21"


def test_create_anthropic_account(alice_client):
    body = create_account(
        alice_client,
        name="anthropic-main",
        provider_type="anthropic",
        base_url="https://1.1.1.1/v1",
        models=[
            {
                "name": "claude-3-5-sonnet",
                "input_price_per_million": 3,
                "output_price_per_million": 15,
            }
        ],
        secret=SECRET,
    )
    assert body["provider_type"] == "anthropic"
    assert body["models"] == [
        {
            "name": "claude-3-5-sonnet",
            "input_price_per_million": 3.0,
            "output_price_per_million": 15.0,
        }
    ]
    assert _row(body["id"]).provider_type == "anthropic"


def test_create_openai_compatible_self_hosted_account_without_secret(cast, alice_client):
    cast.acme.settings = {"allowed_private_hosts": ["127.0.0.1:8000"]}
    cast.acme.save(update_fields=["settings"])
    body = create_account(
        alice_client,
        name="vllm-local",
        provider_type="openai_compatible",
        base_url="http://127.0.0.1:8000/v1",
        models=["llama-3.1-8b"],
        tags={"env": "staging"},
    )
    assert body["provider_type"] == "openai_compatible"
    assert body["base_url"] == "http://127.0.0.1:8000/v1"
    assert body["has_secret"] is False and body["secret_kind"] is None
    assert body["secret_updated_at"] is None
    assert _row(body["id"]).encrypted_secret == ""


def test_name_is_unique_per_org(cast, alice_client, charlie_client, account):
    duplicate = alice_client.post(
        accounts_url(),
        {"name": "openai-main", "provider_type": "anthropic", "base_url": PUBLIC_URL},
        format="json",
    )
    error = assert_error(duplicate, 409, "CONFLICT")
    assert "name" in error["details"]
    assert ProviderAccount.all_orgs.filter(org=cast.acme).count() == 1
    # Another organization may use the same name.
    other = create_account(charlie_client, org="globex", name="openai-main")
    assert _row(other["id"]).org_id == cast.globex.pk
    assert ProviderAccount.all_orgs.filter(name="openai-main").count() == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": None}, "name"),
        ({"provider_type": None}, "provider_type"),
        ({"base_url": None}, "base_url"),
        ({"name": "Not A Slug"}, "name"),
        ({"name": "x" * 51}, "name"),
        ({"provider_type": "bedrock"}, "provider_type"),
        ({"models": [{"name": "gpt-4o", "input_price_per_million": -1}]}, "models"),
        ({"models": [{"input_price_per_million": 1}]}, "models"),
        ({"models": ["gpt-4o", "gpt-4o"]}, "models"),
        ({"models": ["bad name"]}, "models"),
        ({"models": ["*"]}, "models"),
        ({"tags": ["env", "prod"]}, "tags"),
        ({"deployments": "gpt-4o"}, "deployments"),
    ],
)
def test_invalid_create_is_400_with_details(cast, alice_client, change, field):
    body = {"name": "openai-main", "provider_type": "openai", "base_url": PUBLIC_URL}
    body.update(change)
    body = {key: value for key, value in body.items() if value is not None}
    error = assert_error(
        alice_client.post(accounts_url(), body, format="json"), 400, "VALIDATION_ERROR"
    )
    assert field in error["details"], error
    assert not ProviderAccount.all_orgs.exists()


def test_malformed_json_is_400(alice_client, cast):
    response = alice_client.post(accounts_url(), '{"name": "x",', content_type="application/json")
    assert_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("who", ["vera", "bob"])
def test_create_without_manage_permission_is_403(cast, who, vera_client, bob_client):
    client = {"vera": vera_client, "bob": bob_client}[who]
    response = client.post(
        accounts_url(),
        {
            "name": "openai-main",
            "provider_type": "openai",
            "base_url": PUBLIC_URL,
            "secret": SECRET,
        },
        format="json",
    )
    assert_error(response, 403, "PERMISSION_DENIED")
    assert not ProviderAccount.all_orgs.exists()
    assert AuditRecord.objects.filter(action="provider_account:manage", outcome="denied").exists()


def test_create_in_another_org_is_404(cast, charlie_client, alice_client):
    response = charlie_client.post(
        accounts_url("acme"),
        {"name": "openai-main", "provider_type": "openai", "base_url": PUBLIC_URL},
        format="json",
    )
    assert_error(response, 404, "NOT_FOUND")
    response = alice_client.post(
        accounts_url("globex"),
        {"name": "openai-main", "provider_type": "openai", "base_url": PUBLIC_URL},
        format="json",
    )
    assert_error(response, 404, "NOT_FOUND")
    assert not ProviderAccount.all_orgs.exists()


def test_unauthenticated_is_401_everywhere(cast, anon_client, account):
    requests = [
        ("get", accounts_url(), None),
        ("post", accounts_url(), {"name": "x", "provider_type": "openai", "base_url": PUBLIC_URL}),
        ("get", accounts_url("acme", account["id"]), None),
        ("patch", accounts_url("acme", account["id"]), {"tags": {}}),
        ("delete", accounts_url("acme", account["id"]), None),
        ("put", accounts_url("acme", account["id"], "/secret"), {"secret": "x"}),
    ]
    for method, url, body in requests:
        response = getattr(anon_client, method)(url, body, format="json")
        assert_error(response, 401, "AUTHENTICATION_FAILED")
    assert ProviderAccount.all_orgs.count() == 1
    assert _row(account["id"]).tags == {"env": "prod"}


# --- list and detail --------------------------------------------------------------------------


def test_list_and_detail_show_secret_status_never_secret(
    cast, alice_client, vera_client, bob_client, account
):
    for client in (alice_client, vera_client, bob_client):  # provider_account:view is enough
        listing = client.get(accounts_url())
        assert listing.status_code == 200, listing.content
        results = listing.json()["results"]
        assert [item["name"] for item in results] == ["openai-main"]
        detail = client.get(accounts_url("acme", account["id"]))
        assert detail.status_code == 200
        for item in (results[0], detail.json()):
            assert set(item) == OUTPUT_FIELDS
            assert item["has_secret"] is True and item["secret_kind"] == "encrypted"
            assert item["secret_updated_at"] == account["secret_updated_at"]
        for response in (listing, detail):
            text = response.content.decode()
            assert SECRET not in text
            assert _row(account["id"]).encrypted_secret not in text


def test_reference_value_is_never_shown(cast, alice_client, settings, monkeypatch):
    settings.INFERIA_SECRET_REF_ALLOWLIST = ["env:INFERIA_UPSTREAM_"]
    monkeypatch.setenv("INFERIA_UPSTREAM_OPENAI_KEY", SECRET)
    body = create_account(alice_client, secret_ref="env:INFERIA_UPSTREAM_OPENAI_KEY")
    assert body["has_secret"] is True and body["secret_kind"] == "reference"
    for response in (
        alice_client.get(accounts_url()),
        alice_client.get(accounts_url("acme", body["id"])),
    ):
        text = response.content.decode()
        assert "INFERIA_UPSTREAM_OPENAI_KEY" not in text and SECRET not in text
        assert "secret_ref" not in text


def test_list_is_per_org(cast, alice_client, charlie_client, account):
    create_account(charlie_client, org="globex", name="globex-openai")
    acme_names = [item["name"] for item in alice_client.get(accounts_url()).json()["results"]]
    globex_names = [
        item["name"] for item in charlie_client.get(accounts_url("globex")).json()["results"]
    ]
    assert acme_names == ["openai-main"] and globex_names == ["globex-openai"]


def test_other_org_gets_404_for_list_and_detail(cast, charlie_client, account):
    assert_error(charlie_client.get(accounts_url("acme")), 404, "NOT_FOUND")
    assert_error(charlie_client.get(accounts_url("acme", account["id"])), 404, "NOT_FOUND")
    assert_error(charlie_client.get(accounts_url("globex", account["id"])), 404, "NOT_FOUND")


def test_unknown_id_is_404(alice_client, account):
    assert_error(
        alice_client.get(accounts_url("acme", "00000000-0000-0000-0000-000000000000")),
        404,
        "NOT_FOUND",
    )


# --- PATCH ------------------------------------------------------------------------------------


def test_patch_changes_fields_and_is_audited(cast, alice_client, clock_shift, account):
    clock_shift(5)
    response = alice_client.patch(
        accounts_url("acme", account["id"]),
        {
            "base_url": "https://8.8.4.4/v1",
            "tags": {"env": "staging"},
            "api_version": "2025-01-01",
            "deployments": {"gpt-4o": "dep-1"},
            "models": [
                {"name": "gpt-4.1", "input_price_per_million": 2, "output_price_per_million": 8}
            ],
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["base_url"] == "https://8.8.4.4/v1"
    assert body["tags"] == {"env": "staging"}
    assert body["api_version"] == "2025-01-01" and body["deployments"] == {"gpt-4o": "dep-1"}
    assert body["models"] == [
        {"name": "gpt-4.1", "input_price_per_million": 2.0, "output_price_per_million": 8.0}
    ]
    # The secret is untouched by a PATCH.
    assert body["has_secret"] is True and body["secret_updated_at"] == account["secret_updated_at"]
    row = _row(account["id"])
    assert row.base_url == "https://8.8.4.4/v1" and row.model_names == ["gpt-4.1"]
    audit = AuditRecord.objects.get(action="provider_account:manage", data__op="update")
    assert set(audit.data["changed"]) == {
        "base_url",
        "tags",
        "api_version",
        "deployments",
        "enabled_models",
    }
    assert SECRET not in response.content.decode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"models": ["gpt-4o", "gpt-4o"]}, "models"),
        ({"models": [{"name": "gpt-4o", "output_price_per_million": "cheap"}]}, "models"),
        ({"tags": "env=prod"}, "tags"),
        ({"base_url": "ftp://8.8.8.8/"}, "base_url"),
    ],
)
def test_invalid_patch_is_400_and_changes_nothing(alice_client, account, body, field):
    before = _row(account["id"])
    error = assert_error(
        alice_client.patch(accounts_url("acme", account["id"]), body, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert field in error["details"]
    after = _row(account["id"])
    assert (after.enabled_models, after.tags, after.base_url) == (
        before.enabled_models,
        before.tags,
        before.base_url,
    )


@pytest.mark.parametrize("who", ["vera", "bob"])
def test_patch_without_manage_permission_is_403(cast, who, vera_client, bob_client, account):
    client = {"vera": vera_client, "bob": bob_client}[who]
    response = client.patch(
        accounts_url("acme", account["id"]), {"tags": {"env": "hacked"}}, format="json"
    )
    assert_error(response, 403, "PERMISSION_DENIED")
    assert _row(account["id"]).tags == {"env": "prod"}


def test_patch_in_another_org_is_404(cast, charlie_client, account):
    for org in ("acme", "globex"):
        response = charlie_client.patch(
            accounts_url(org, account["id"]), {"tags": {"env": "x"}}, format="json"
        )
        assert_error(response, 404, "NOT_FOUND")
    assert _row(account["id"]).tags == {"env": "prod"}


# --- DELETE -----------------------------------------------------------------------------------


def test_delete_removes_the_account_and_is_audited(cast, alice_client, account):
    response = alice_client.delete(accounts_url("acme", account["id"]))
    assert response.status_code == 204, response.content
    assert not ProviderAccount.all_orgs.filter(pk=account["id"]).exists()
    assert_error(alice_client.get(accounts_url("acme", account["id"])), 404, "NOT_FOUND")
    audit = AuditRecord.objects.get(action="provider_account:manage", data__op="delete")
    assert audit.target_id == account["id"] and audit.data["name"] == "openai-main"
    # The name is free again.
    create_account(alice_client)


@pytest.mark.parametrize("who", ["vera", "bob"])
def test_delete_without_manage_permission_is_403(cast, who, vera_client, bob_client, account):
    client = {"vera": vera_client, "bob": bob_client}[who]
    assert_error(client.delete(accounts_url("acme", account["id"])), 403, "PERMISSION_DENIED")
    assert ProviderAccount.all_orgs.filter(pk=account["id"]).exists()


def test_delete_in_another_org_is_404(cast, charlie_client, account):
    for org in ("acme", "globex"):
        assert_error(charlie_client.delete(accounts_url(org, account["id"])), 404, "NOT_FOUND")
    assert ProviderAccount.all_orgs.filter(pk=account["id"]).exists()


def test_api_key_with_manage_scope_can_create_but_view_scope_cannot(cast, alice_client):
    from tests.keys.conftest import key_client, mint

    manager = key_client(
        mint(alice_client, permissions=["provider_account:manage", "provider_account:view"])["key"]
    )
    viewer = key_client(mint(alice_client, permissions=["provider_account:view"])["key"])
    body = {"name": "keyed", "provider_type": "openai", "base_url": PUBLIC_URL}
    assert_error(viewer.post(accounts_url(), body, format="json"), 403, "PERMISSION_DENIED")
    created = manager.post(accounts_url(), body, format="json")
    assert created.status_code == 201, created.content
    assert viewer.get(accounts_url()).json()["results"][0]["name"] == "keyed"
