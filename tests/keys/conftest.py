from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from keys.models import AccessRule
from tests.conftest import add_member, client_for, make_user


def key_client(plaintext: str, *, header: str = "x-api-key") -> APIClient:
    client = APIClient()
    if header == "bearer":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    else:
        client.credentials(HTTP_X_API_KEY=plaintext)
    return client


def mint(client: APIClient, org: str = "acme", **body) -> dict:
    body.setdefault("name", "k")
    body.setdefault("permissions", ["model:read"])
    response = client.post(f"/api/v1/orgs/{org}/api-keys", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def service_account(cast):
    """An Acme service account 'ci-bot' with the Member role, created by alice."""
    response = client_for(cast.alice).post(
        "/api/v1/orgs/acme/service-accounts",
        {"slug": "ci-bot", "name": "CI bot", "role": "member"},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def rule_rows(org) -> list[tuple]:
    """The org's rules as stored: (position, patterns, users, teams, roles, service accounts)."""

    def names(field: str, column: str, rule: AccessRule) -> list[str]:
        through = getattr(AccessRule, field).through
        return sorted(through.objects.filter(accessrule_id=rule.pk).values_list(column, flat=True))

    return [
        (
            r.position,
            r.model_patterns,
            names("users", "user__username", r),
            names("teams", "team__slug", r),
            names("roles", "role__slug", r),
            names("service_accounts", "serviceaccount__slug", r),
        )
        for r in AccessRule.all_orgs.filter(org=org).order_by("position")
    ]


# --- model access: a catalog of provider accounts and a world of principals and rules ---------

PRIVATE_BASE_URL = "http://127.0.0.1:9000/v1"

# account -> (tags, enabled models). openai-main/gpt-5 is named by a rule but enabled nowhere.
CATALOG = {
    "openai-main": ({"env": "prod"}, ["gpt-4o", "gpt-4o-mini"]),
    "azure-prod": ({"env": "prod", "region": "eu"}, ["gpt-4o"]),
    "vllm-staging": ({"env": "staging"}, ["llama-3", "mistral"]),
    "local": ({}, ["phi-3"]),
}
ENABLED = sorted(
    f"{account}/{model}" for account, (_, models) in CATALOG.items() for model in models
)
NOT_ENABLED = "openai-main/gpt-5"


def allow_private_upstream(org) -> None:
    org.settings = {**org.settings, "allowed_private_hosts": ["127.0.0.1:9000"]}
    org.save(update_fields=["settings"])


def create_provider_account(
    client: APIClient, name: str, models: list[str], tags: dict | None = None, org: str = "acme"
) -> dict:
    response = client.post(
        f"/api/v1/orgs/{org}/provider-accounts",
        {
            "name": name,
            "provider_type": "openai_compatible",
            "base_url": PRIVATE_BASE_URL,
            "models": models,
            "tags": tags or {},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def create_team(client: APIClient, slug: str, members=(), org: str = "acme") -> dict:
    response = client.post(
        f"/api/v1/orgs/{org}/teams", {"slug": slug, "name": slug.title()}, format="json"
    )
    assert response.status_code == 201, response.content
    team = response.json()
    for user in members:
        added = client.post(
            f"/api/v1/orgs/{org}/teams/{team['id']}/members",
            {"user_id": str(user.pk)},
            format="json",
        )
        assert added.status_code == 201, added.content
    return team


def create_service_account(client: APIClient, slug: str, role: str, org: str = "acme") -> dict:
    response = client.post(
        f"/api/v1/orgs/{org}/service-accounts",
        {"slug": slug, "name": slug, "role": role},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def put_rules_yaml(
    client: APIClient, text: str, org: str = "acme", content_type: str = "application/yaml"
):
    return client.put(f"/api/v1/orgs/{org}/access-rules.yaml", text, content_type=content_type)


def effective(client: APIClient, org: str = "acme", **params) -> dict:
    response = client.get(f"/api/v1/orgs/{org}/access-rules/effective", params)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def catalog(cast, alice_client) -> dict[str, dict]:
    """Acme's provider accounts (CATALOG), created by alice through the API."""
    allow_private_upstream(cast.acme)
    return {
        name: create_provider_account(alice_client, name, models, tags)
        for name, (tags, models) in CATALOG.items()
    }


RULES_YAML = """\
authz_rules:
  - description: frank's own models, one of them enabled nowhere
    models: [openai-main/gpt-4o, openai-main/gpt-5]
    users: [frank]
  - models: [vllm-staging/llama-3, local/*]
    teams: [ml-platform]
  - models: [env=staging]
    roles: [viewer]
  - models: [env=prod]
    service_accounts: [prod-bot]
  - models: ['*']
    roles: [owner]
  - models: [openai-main/gpt-4o-mini]
    roles: [member]
  - models: ['*']
    service_accounts: [off-bot]
"""

# principal -> how it is asked about, and the exact models it may use. Users and
# service accounts are asked by name; keys through the key itself (no parameter).
LLAMA, MISTRAL, PHI = "vllm-staging/llama-3", "vllm-staging/mistral", "local/phi-3"
GPT4O, MINI, AZURE = "openai-main/gpt-4o", "openai-main/gpt-4o-mini", "azure-prod/gpt-4o"
DECISIONS: dict[str, set[str]] = {
    # users
    "alice": set(ENABLED),  # Owner role: '*', yet never the model enabled nowhere
    "bob": {LLAMA, PHI, MINI},  # team (exact FQN + account/*) and Member role
    "erin": {LLAMA, PHI, MISTRAL},  # team and Viewer role's tag selector env=staging
    "vera": {LLAMA, MISTRAL},  # Viewer role: env=staging only, never env=prod
    "frank": {GPT4O, MINI},  # exact FQNs by username, plus the Member role
    "dave": set(),  # Admin: every permission, but no rule names him: default deny
    # service accounts
    "sa:prod-bot": {GPT4O, MINI, AZURE},  # env=prod by name, plus its Member role
    "sa:staging-bot": {LLAMA, MISTRAL},  # its Viewer role's env=staging
    "sa:off-bot": set(),  # '*' by name, but disabled
    # API keys: the owner's models narrowed by the key's own restriction
    "key:bob-llama": {LLAMA},
    "key:frank-openai": {GPT4O, MINI},
    "key:frank-gpt5": set(),
    "key:alice-mixed": {AZURE, LLAMA, MISTRAL},
    "key:dave-any": set(),
    "key:prod-bot-llama": set(),  # a key cannot widen its owner's models
    "key:staging-bot-any": {LLAMA, MISTRAL},
}
# key name -> (owner: username or "sa:<slug>", model restriction)
KEYS = {
    "key:bob-llama": ("bob", [LLAMA]),
    "key:frank-openai": ("frank", ["openai-main/*"]),
    "key:frank-gpt5": ("frank", [NOT_ENABLED]),
    "key:alice-mixed": ("alice", [AZURE, "vllm-staging/*"]),
    "key:dave-any": ("dave", []),
    "key:prod-bot-llama": ("sa:prod-bot", [LLAMA]),
    "key:staging-bot-any": ("sa:staging-bot", []),
}


@dataclass
class AccessWorld:
    cast: object
    users: dict
    service_accounts: dict[str, dict]
    team: dict
    keys: dict[str, dict]

    def client(self, principal: str) -> APIClient:
        if principal.startswith("key:"):
            return key_client(self.keys[principal]["key"])
        return client_for(self.users[principal])


@pytest.fixture
def access_world(cast, alice_client, catalog) -> AccessWorld:
    """RULES_YAML applied over CATALOG; DECISIONS says what each principal may use."""
    erin, frank = make_user("erin"), make_user("frank")
    add_member(cast.acme, erin, "viewer")
    add_member(cast.acme, frank, "member")
    users = {
        "alice": cast.alice,
        "bob": cast.bob,
        "vera": cast.vera,
        "dave": cast.dave,
        "erin": erin,
        "frank": frank,
    }
    team = create_team(alice_client, "ml-platform", [cast.bob, erin])
    accounts = {
        slug: create_service_account(alice_client, slug, role)
        for slug, role in (("prod-bot", "member"), ("staging-bot", "viewer"), ("off-bot", "member"))
    }
    response = put_rules_yaml(alice_client, RULES_YAML)
    assert response.status_code == 200, response.content
    keys = {}
    for name, (owner, models) in KEYS.items():
        body = {"name": name, "permissions": ["model:read"], "models": models}
        if owner.startswith("sa:"):
            keys[name] = mint(alice_client, service_account=owner[3:], **body)
        else:
            keys[name] = mint(client_for(users[owner]), **body)
    disabled = alice_client.patch(
        f"/api/v1/orgs/acme/service-accounts/{accounts['off-bot']['id']}",
        {"disabled": True},
        format="json",
    )
    assert disabled.status_code == 200, disabled.content
    return AccessWorld(cast=cast, users=users, service_accounts=accounts, team=team, keys=keys)
