"""Nothing of keys/ crosses organizations: service accounts, API keys, provider
accounts (their secret and grants) and access rules of acme answer 404 to
globex, whether through acme's URLs, globex's URLs with acme ids, or an acme
API key on globex URLs; and nothing changes."""

from __future__ import annotations

import uuid

import pytest
from guardian.models import GroupObjectPermission, UserObjectPermission

from audit.models import AuditRecord
from keys.models import ApiKey, ProviderAccount, ServiceAccount
from tests.conftest import assert_error
from tests.keys.conftest import (
    PRIVATE_BASE_URL,
    allow_private_upstream,
    create_provider_account,
    create_service_account,
    create_team,
    effective,
    key_client,
    mint,
    rule_rows,
)

SECRET = "sk-acme-upstream-" + "s" * 32


@pytest.fixture
def acme_objects(cast, alice_client, bob_client):
    """One object of every keys/ resource type in acme."""
    allow_private_upstream(cast.acme)
    account = create_provider_account(alice_client, "openai-main", ["gpt-4o"], {"env": "prod"})
    response = alice_client.put(
        f"/api/v1/orgs/acme/provider-accounts/{account['id']}/secret",
        {"secret": SECRET},
        format="json",
    )
    assert response.status_code == 200, response.content
    granted = alice_client.post(
        f"/api/v1/orgs/acme/provider-accounts/{account['id']}/grants",
        {"user": "vera"},
        format="json",
    )
    assert granted.status_code == 200, granted.content
    team = create_team(alice_client, "ml-platform", [cast.bob])
    sa = create_service_account(alice_client, "ci-bot", "member")
    rule = alice_client.post(
        "/api/v1/orgs/acme/access-rules",
        {"models": ["openai-main/*"], "teams": ["ml-platform"]},
        format="json",
    )
    assert rule.status_code == 201, rule.content
    key = mint(bob_client, name="bob-key")
    sa_key = mint(alice_client, name="bot-key", service_account="ci-bot")
    return {
        "sa": sa["id"],
        "key": key["id"],
        "sa_key": sa_key["id"],
        "account": account["id"],
        "rule": rule.json()["id"],
        "team": team["id"],
        "sa_slug": "ci-bot",
    }


def snapshot(cast) -> tuple:
    """Every keys/ row of every org, to prove a refused request changed nothing."""
    return (
        sorted(
            map(
                repr,
                ServiceAccount.all_orgs.values_list(
                    "org_id", "slug", "name", "role__slug", "disabled_at"
                ),
            )
        ),
        sorted(
            map(
                repr,
                ApiKey.all_orgs.values_list(
                    "org_id", "name", "revoked_at", "expires_at", "replaced_by"
                ),
            )
        ),
        sorted(
            map(
                repr,
                ProviderAccount.all_orgs.values_list(
                    "org_id",
                    "name",
                    "base_url",
                    "tags",
                    "enabled_models",
                    "encrypted_secret",
                    "secret_updated_at",
                ),
            )
        ),
        sorted(UserObjectPermission.objects.values_list("user__username", "object_pk")),
        GroupObjectPermission.objects.count(),
        rule_rows(cast.acme),
        rule_rows(cast.globex),
    )


# (method, path under /api/v1/orgs/{org}, body): every keys/ endpoint.
ENDPOINTS = [
    ("get", "/service-accounts", None),
    ("post", "/service-accounts", {"slug": "x-bot", "name": "X", "role": "member"}),
    ("get", "/service-accounts/{sa}", None),
    ("patch", "/service-accounts/{sa}", {"name": "Pwned", "disabled": True}),
    ("delete", "/service-accounts/{sa}", None),
    ("get", "/api-keys", None),
    ("post", "/api-keys", {"name": "x", "permissions": ["model:read"]}),
    ("get", "/api-keys/{key}", None),
    ("delete", "/api-keys/{key}", None),
    ("post", "/api-keys/{key}/rotate", {}),
    ("get", "/api-keys/{sa_key}", None),
    ("delete", "/api-keys/{sa_key}", None),
    ("post", "/api-keys/{sa_key}/rotate", {}),
    ("get", "/provider-accounts", None),
    (
        "post",
        "/provider-accounts",
        {
            "name": "x",
            "provider_type": "openai_compatible",
            "base_url": PRIVATE_BASE_URL,
            "models": ["m"],
        },
    ),
    ("get", "/provider-accounts/{account}", None),
    (
        "patch",
        "/provider-accounts/{account}",
        {"base_url": "http://127.0.0.1:9000/evil", "tags": {"pwned": "1"}},
    ),
    ("delete", "/provider-accounts/{account}", None),
    ("put", "/provider-accounts/{account}/secret", {"secret": "sk-attacker-" + "a" * 30}),
    ("get", "/provider-accounts/{account}/grants", None),
    ("post", "/provider-accounts/{account}/grants", {"user": "charlie"}),
    ("delete", "/provider-accounts/{account}/grants", {"user": "vera"}),
    ("get", "/access-rules", None),
    ("post", "/access-rules", {"models": ["*"], "users": ["charlie"]}),
    ("get", "/access-rules.yaml", None),
    ("put", "/access-rules.yaml", {"authz_rules": []}),
    ("get", "/access-rules/effective", None),
    ("get", "/access-rules/{rule}", None),
    ("delete", "/access-rules/{rule}", None),
]
WITH_ID = [e for e in ENDPOINTS if "{" in e[1]]


def _call(client, method, org, path, body, ids):
    kwargs = {"format": "json"}
    if body is not None:
        kwargs["data"] = body
    return getattr(client, method)(f"/api/v1/orgs/{org}" + path.format(**ids), **kwargs)


def _id(endpoint):
    return f"{endpoint[0]} {endpoint[1]}"


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=map(_id, ENDPOINTS))
def test_other_org_owner_gets_404_on_every_acme_url(
    cast, acme_objects, charlie_client, method, path, body
):
    before = snapshot(cast)
    error = assert_error(
        _call(charlie_client, method, "acme", path, body, acme_objects), 404, "NOT_FOUND"
    )
    unknown = _call(charlie_client, method, "no-such-org", path, body, acme_objects)
    assert assert_error(unknown, 404, "NOT_FOUND") == error  # nothing revealed
    assert snapshot(cast) == before
    assert not AuditRecord.objects.filter(actor_user=cast.charlie, org=cast.acme).exists()


@pytest.mark.parametrize(("method", "path", "body"), WITH_ID, ids=map(_id, WITH_ID))
def test_globex_url_with_an_acme_id_is_404_like_an_unknown_id(
    cast, acme_objects, charlie_client, method, path, body
):
    before = snapshot(cast)
    successes = AuditRecord.objects.filter(actor_user=cast.charlie, outcome="success").count()
    real = _call(charlie_client, method, "globex", path, body, acme_objects)
    assert_error(real, 404, "NOT_FOUND")
    fake = _call(
        charlie_client, method, "globex", path, body, {k: uuid.uuid4() for k in acme_objects}
    )
    assert real.json() == fake.json()
    assert snapshot(cast) == before
    assert (
        AuditRecord.objects.filter(actor_user=cast.charlie, outcome="success").count() == successes
    )
    assert SECRET not in real.content.decode()


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=map(_id, ENDPOINTS))
def test_an_acme_api_key_on_globex_urls_is_404(
    cast, acme_objects, alice_client, method, path, body
):
    broad = mint(
        alice_client,
        name="broad",
        permissions=[
            "model:read",
            "policy:manage",
            "api_key:create",
            "api_key:view",
            "api_key:revoke",
            "member:view",
            "service_account:manage",
            "provider_account:view",
            "provider_account:manage",
        ],
    )
    client = key_client(broad["key"])
    before = snapshot(cast)
    assert_error(_call(client, method, "globex", path, body, acme_objects), 404, "NOT_FOUND")
    assert snapshot(cast) == before
    assert not AuditRecord.objects.filter(org=cast.globex).exclude(action="org:create").exists()
    # The same key works at home.
    assert client.get("/api/v1/orgs/acme/access-rules").status_code == 200


def test_globex_lists_never_show_acme_rows(cast, acme_objects, charlie_client):
    allow_private_upstream(cast.globex)
    create_provider_account(charlie_client, "g-account", ["m"], org="globex")
    mint(charlie_client, org="globex", name="g-key")
    for path, name, expected in (
        ("service-accounts", "slug", []),
        ("api-keys", "name", ["g-key"]),
        ("provider-accounts", "name", ["g-account"]),
        ("access-rules", "models", []),
    ):
        response = charlie_client.get(f"/api/v1/orgs/globex/{path}")
        assert response.status_code == 200, response.content
        assert [row[name] for row in response.json()["results"]] == expected, path
    exported = charlie_client.get("/api/v1/orgs/globex/access-rules.yaml").content.decode()
    assert exported.strip() == "authz_rules: []"


def test_acme_names_in_globex_bodies_are_unknown(cast, acme_objects, charlie_client):
    allow_private_upstream(cast.globex)
    g_account = create_provider_account(charlie_client, "g-account", ["m"], org="globex")
    before = snapshot(cast)
    for ref in (acme_objects["sa_slug"], acme_objects["sa"]):
        error = assert_error(
            charlie_client.post(
                "/api/v1/orgs/globex/api-keys",
                {"name": "x", "permissions": ["model:read"], "service_account": ref},
                format="json",
            ),
            400,
            "VALIDATION_ERROR",
        )
        assert "service_account" in error["details"]
    for body, field in (({"user": "bob"}, "user"), ({"team": "ml-platform"}, "team")):
        error = assert_error(
            charlie_client.post(
                f"/api/v1/orgs/globex/provider-accounts/{g_account['id']}/grants",
                body,
                format="json",
            ),
            400,
            "VALIDATION_ERROR",
        )
        assert field in error["details"]
    for body, field in (
        ({"models": ["*"], "users": ["bob"]}, "users"),
        ({"models": ["*"], "teams": ["ml-platform"]}, "teams"),
        ({"models": ["*"], "service_accounts": ["ci-bot"]}, "service_accounts"),
    ):
        error = assert_error(
            charlie_client.post("/api/v1/orgs/globex/access-rules", body, format="json"),
            400,
            "VALIDATION_ERROR",
        )
        assert set(error["details"]) == {field}
    assert snapshot(cast) == before


def test_effective_access_does_not_reach_across(cast, acme_objects, charlie_client, alice_client):
    for params in (
        {"user": "bob"},
        {"service_account": "ci-bot"},
        {"service_account": acme_objects["sa"]},
    ):
        assert_error(
            charlie_client.get("/api/v1/orgs/globex/access-rules/effective", params),
            404,
            "NOT_FOUND",
        )
    assert effective(charlie_client, org="globex", model="openai-main/gpt-4o") == {
        "model": "openai-main/gpt-4o",
        "users": [],
        "service_accounts": [],
    }
    # At home the same question has an answer.
    assert effective(alice_client, model="openai-main/gpt-4o")["users"] == ["bob"]
    assert_error(
        alice_client.get("/api/v1/orgs/acme/access-rules/effective", {"user": "charlie"}),
        404,
        "NOT_FOUND",
    )


def test_the_acme_secret_never_shows_in_globex(cast, acme_objects, charlie_client):
    allow_private_upstream(cast.globex)
    g_account = create_provider_account(charlie_client, "g-account", ["m"], org="globex")
    for url in (
        "/api/v1/orgs/globex/provider-accounts",
        f"/api/v1/orgs/globex/provider-accounts/{g_account['id']}",
    ):
        response = charlie_client.get(url)
        assert response.status_code == 200 and SECRET not in response.content.decode()
    assert ProviderAccount.all_orgs.get(pk=g_account["id"]).has_secret is False
