"""Every built-in role against every endpoint and method of keys/api/urls.py.

Expectations are derived from ``orgs.access.BUILTIN_ROLES`` and each view's
``required_permissions``; for ``ANY_MEMBER`` methods the case says what the
service demands when acting on someone else's object. A hand-written table
from CONTRACT section 4 is checked against the derivation so the matrix cannot
pass vacuously if both drift together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from guardian.models import GroupObjectPermission, UserObjectPermission

from audit.models import AuditRecord
from inferia.api import ANY_MEMBER, OrgAPIView
from keys.api import urls as keys_urls
from keys.models import ApiKey, ProviderAccount, ServiceAccount
from orgs.access import BUILTIN_ROLES, PERMISSION_SET
from orgs.models import Membership
from tests.conftest import add_member, assert_error, client_for, make_user
from tests.keys.conftest import (
    PRIVATE_BASE_URL,
    allow_private_upstream,
    create_provider_account,
    mint,
    rule_rows,
)

ROLES = ("owner", "admin", "member", "viewer")
EVERYONE = "<any member>"  # ANY_MEMBER with no further rule in the service


@dataclass(frozen=True)
class Case:
    url: str
    ok_status: int
    body: dict | None = None
    # For ANY_MEMBER methods: what the service demands on another member's object.
    service_permission: str | None = None
    # How a refusal looks: the key list hides others' keys without api_key:view.
    denied: tuple[int, str] = field(default=(403, "PERMISSION_DENIED"))


ORG = "/api/v1/orgs/acme"
CASES: dict[tuple[str, str], Case] = {
    ("service-account-list", "GET"): Case(f"{ORG}/service-accounts", 200),
    ("service-account-list", "POST"): Case(
        f"{ORG}/service-accounts", 201, {"slug": "new-bot", "name": "New", "role": "viewer"}
    ),
    ("service-account-detail", "GET"): Case(f"{ORG}/service-accounts/{{sa}}", 200),
    ("service-account-detail", "PATCH"): Case(
        f"{ORG}/service-accounts/{{sa}}", 200, {"name": "Renamed"}
    ),
    ("service-account-detail", "DELETE"): Case(f"{ORG}/service-accounts/{{sa}}", 204),
    ("api-key-list", "GET"): Case(f"{ORG}/api-keys", 200, service_permission=EVERYONE),
    ("api-key-list", "POST"): Case(
        f"{ORG}/api-keys", 201, {"name": "k", "permissions": ["model:read"]}
    ),
    ("api-key-detail", "GET"): Case(
        f"{ORG}/api-keys/{{key}}", 200, service_permission="api_key:view", denied=(404, "NOT_FOUND")
    ),
    ("api-key-detail", "DELETE"): Case(
        f"{ORG}/api-keys/{{key}}", 200, service_permission="api_key:revoke"
    ),
    # Someone else's personal key is never rotated (its owner would not get the
    # secret): the matrix rotates a service account's key instead.
    ("api-key-rotate", "POST"): Case(
        f"{ORG}/api-keys/{{sa_key}}/rotate", 201, {}, service_permission="api_key:revoke"
    ),
    ("provider-account-list", "GET"): Case(f"{ORG}/provider-accounts", 200),
    ("provider-account-list", "POST"): Case(
        f"{ORG}/provider-accounts",
        201,
        {
            "name": "new-acct",
            "provider_type": "openai_compatible",
            "base_url": PRIVATE_BASE_URL,
            "models": ["m"],
        },
    ),
    ("provider-account-detail", "GET"): Case(f"{ORG}/provider-accounts/{{account}}", 200),
    ("provider-account-detail", "PATCH"): Case(
        f"{ORG}/provider-accounts/{{account}}",
        200,
        {"tags": {"env": "changed"}},
        service_permission="provider_account:manage",
    ),
    ("provider-account-detail", "DELETE"): Case(
        f"{ORG}/provider-accounts/{{account}}", 204, service_permission="provider_account:manage"
    ),
    ("provider-account-secret", "PUT"): Case(
        f"{ORG}/provider-accounts/{{account}}/secret",
        200,
        {"secret": "sk-matrix-" + "q" * 30},
        service_permission="provider_account:manage",
    ),
    ("provider-account-grants", "GET"): Case(f"{ORG}/provider-accounts/{{account}}/grants", 200),
    ("provider-account-grants", "POST"): Case(
        f"{ORG}/provider-accounts/{{account}}/grants", 200, {"user": "bob"}
    ),
    ("provider-account-grants", "DELETE"): Case(
        f"{ORG}/provider-accounts/{{account}}/grants", 200, {"user": "vera"}
    ),
    ("access-rule-list", "GET"): Case(f"{ORG}/access-rules", 200),
    ("access-rule-list", "POST"): Case(
        f"{ORG}/access-rules", 201, {"models": ["local/*"], "roles": ["viewer"]}
    ),
    ("access-rules-yaml", "GET"): Case(f"{ORG}/access-rules.yaml", 200),
    ("access-rules-yaml", "PUT"): Case(
        f"{ORG}/access-rules.yaml", 200, {"authz_rules": [{"models": ["*"], "roles": ["owner"]}]}
    ),
    ("effective-access", "GET"): Case(f"{ORG}/access-rules/effective", 200),
    ("access-rule-detail", "GET"): Case(f"{ORG}/access-rules/{{rule}}", 200),
    ("access-rule-detail", "DELETE"): Case(f"{ORG}/access-rules/{{rule}}", 204),
}

# CONTRACT section 4, written out by hand for a sample of cells.
KNOWN: list[tuple[str, str, str, bool]] = [
    ("owner", "service-account-list", "POST", True),
    ("admin", "service-account-list", "POST", True),
    ("admin", "service-account-detail", "DELETE", True),
    ("admin", "api-key-detail", "DELETE", True),
    ("admin", "provider-account-secret", "PUT", True),
    ("admin", "access-rules-yaml", "PUT", True),
    ("member", "service-account-list", "POST", False),
    ("member", "service-account-list", "GET", True),
    ("member", "api-key-list", "POST", True),
    ("member", "api-key-detail", "DELETE", False),
    ("member", "api-key-rotate", "POST", False),
    ("member", "provider-account-detail", "PATCH", False),
    ("member", "provider-account-grants", "POST", False),
    ("member", "access-rule-list", "POST", False),
    ("member", "effective-access", "GET", True),
    ("viewer", "api-key-list", "POST", False),
    ("viewer", "api-key-list", "GET", True),
    ("viewer", "api-key-detail", "GET", True),
    ("viewer", "provider-account-list", "GET", True),
    ("viewer", "provider-account-secret", "PUT", False),
    ("viewer", "access-rule-detail", "DELETE", False),
    ("viewer", "access-rules-yaml", "GET", True),
]


def declared_endpoints() -> dict[tuple[str, str], str]:
    """(url name, method) -> declared permission for every endpoint in keys/api/urls.py."""
    found = {}
    for pattern in keys_urls.urlpatterns:
        view_class = pattern.callback.cls
        assert issubclass(view_class, OrgAPIView), pattern.name
        for method, permission in view_class.required_permissions.items():
            found[(pattern.name, method)] = permission
    return found


def effective_requirement(key: tuple[str, str]) -> str:
    declared = declared_endpoints()[key]
    if declared == ANY_MEMBER:
        assert CASES[key].service_permission, f"{key} is ANY_MEMBER: say what the service demands"
        return CASES[key].service_permission
    assert CASES[key].service_permission is None, (
        f"{key} declares {declared}; no service rule expected"
    )
    return declared


def expected_allowed(role: str, key: tuple[str, str]) -> bool:
    requirement = effective_requirement(key)
    return requirement == EVERYONE or requirement in BUILTIN_ROLES[role][1]


def test_the_matrix_covers_every_keys_endpoint_and_method():
    declared = declared_endpoints()
    assert len(declared) == 26
    assert set(declared) == set(CASES)
    for key, permission in declared.items():
        assert permission == ANY_MEMBER or permission in PERMISSION_SET, key


def test_derived_expectations_match_the_contract_table():
    for role, name, method, allowed in KNOWN:
        assert expected_allowed(role, (name, method)) is allowed, (role, name, method)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_has_both_outcomes_except_owner_and_admin(role):
    outcomes = {expected_allowed(role, key) for key in CASES}
    # Admin lacks only org:delete and billing:manage, which no keys endpoint asks for.
    assert outcomes == ({True} if role in ("owner", "admin") else {True, False})


def test_reads_are_open_to_every_role_and_writes_are_not():
    for key in CASES:
        if key[1] == "GET":
            assert all(expected_allowed(role, key) for role in ROLES), key
        elif key != ("api-key-list", "POST"):
            assert not expected_allowed("member", key), key
        assert key[1] == "GET" or not expected_allowed("viewer", key), key


@dataclass
class World:
    cast: object
    subject: object
    ids: dict


@pytest.fixture
def world(cast, alice_client, dave_client):
    def build(role: str) -> World:
        allow_private_upstream(cast.acme)
        subject = make_user("sam")
        add_member(cast.acme, subject, role)
        account = create_provider_account(alice_client, "openai-main", ["gpt-4o"], {"env": "prod"})
        granted = alice_client.post(
            f"{ORG}/provider-accounts/{account['id']}/grants", {"user": "vera"}, format="json"
        )
        assert granted.status_code == 200, granted.content
        sa = alice_client.post(
            f"{ORG}/service-accounts",
            {"slug": "bot", "name": "Bot", "role": "viewer"},
            format="json",
        )
        assert sa.status_code == 201, sa.content
        rule = alice_client.post(
            f"{ORG}/access-rules", {"models": ["openai-main/*"], "roles": ["member"]}, format="json"
        )
        assert rule.status_code == 201, rule.content
        key = mint(dave_client, name="dave-key")  # someone else's key
        sa_key = mint(alice_client, name="bot-key", service_account="bot")
        return World(
            cast=cast,
            subject=subject,
            ids={
                "sa": sa.json()["id"],
                "account": account["id"],
                "rule": rule.json()["id"],
                "key": key["id"],
                "sa_key": sa_key["id"],
            },
        )

    return build


def snapshot(cast) -> tuple:
    """Every keys/ row of acme, to prove a refused request changed nothing."""
    return (
        sorted(
            ServiceAccount.all_orgs.filter(org=cast.acme).values_list(
                "slug", "name", "role__slug", "disabled_at"
            ),
            key=repr,
        ),
        sorted(
            ApiKey.all_orgs.filter(org=cast.acme).values_list("name", "revoked_at", "expires_at"),
            key=repr,
        ),
        sorted(
            ProviderAccount.all_orgs.filter(org=cast.acme).values_list(
                "name", "tags", "encrypted_secret", "secret_updated_at"
            ),
            key=repr,
        ),
        sorted(UserObjectPermission.objects.values_list("user__username", "object_pk")),
        GroupObjectPermission.objects.count(),
        rule_rows(cast.acme),
    )


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[1]} {k[0]}")
@pytest.mark.parametrize("role", ROLES)
def test_role_against_endpoint(world, role, key):
    w = world(role)
    case = CASES[key]
    client = client_for(w.subject)
    kwargs = {"format": "json"}
    if case.body is not None:
        kwargs["data"] = case.body
    before = snapshot(w.cast)
    response = getattr(client, key[1].lower())(case.url.format(**w.ids), **kwargs)

    if expected_allowed(role, key):
        assert response.status_code == case.ok_status, (role, key, response.content[:400])
        if key[1] != "GET":
            assert AuditRecord.objects.filter(actor_user=w.subject, outcome="success").exists(), (
                role,
                key,
            )
            assert snapshot(w.cast) != before, (role, key)
        return

    status, code = case.denied
    error = assert_error(response, status, code)
    requirement = effective_requirement(key)
    if status == 403:
        assert requirement in error["message"], error
    if declared_endpoints()[key] != ANY_MEMBER:
        # Refused by the permission class, which records the decision.
        denied = AuditRecord.objects.get(actor_user=w.subject, outcome="denied")
        assert (
            denied.action == requirement and denied.status_code == 403 and denied.org == w.cast.acme
        )
    assert not AuditRecord.objects.filter(actor_user=w.subject, outcome="success").exists()
    assert snapshot(w.cast) == before


# --- everyone may view, revoke and rotate their own keys -----------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_role_manages_its_own_keys(cast, alice_client, role):
    sam = make_user("sam")
    membership = add_member(cast.acme, sam, "member")
    client = client_for(sam)
    own = mint(client, name="own")
    second = mint(client, name="second")
    if role != "member":  # the key outlives the role that minted it (within the new role's bounds)
        changed = alice_client.patch(
            f"{ORG}/members/{membership.pk}", {"role": role}, format="json"
        )
        assert changed.status_code == 200, changed.content
    assert Membership.all_orgs.get(pk=membership.pk).role.slug == role
    assert {k["name"] for k in client.get(f"{ORG}/api-keys").json()["results"]} >= {"own", "second"}
    assert client.get(f"{ORG}/api-keys/{own['id']}").status_code == 200
    rotated = client.post(f"{ORG}/api-keys/{own['id']}/rotate", {}, format="json")
    assert rotated.status_code == 201, rotated.content
    revoked = client.delete(f"{ORG}/api-keys/{second['id']}")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert ApiKey.all_orgs.get(pk=second["id"]).revoked_at is not None
    assert ApiKey.all_orgs.get(pk=own["id"]).revoked_at is not None  # rotated without grace
    actions = set(
        AuditRecord.objects.filter(actor_user=sam, outcome="success").values_list(
            "action", flat=True
        )
    )
    assert {"api_key:create", "api_key:rotate", "api_key:revoke"} <= actions
