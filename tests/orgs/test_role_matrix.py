"""Every built-in role against every protected org endpoint and method.

Expectations are derived from ``orgs.access.BUILTIN_ROLES`` and each view's
``required_permissions`` (with the two service-level rules for ``ANY_MEMBER``
methods), cross-checked against a hard-coded table from CONTRACT section 4 so
the matrix cannot pass vacuously if both sides drift together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

import pytest

from audit.models import AuditRecord
from inferia import clock
from inferia.api import ANY_MEMBER, OrgAPIView
from orgs.access import BUILTIN_ROLES, PERMISSION_SET
from orgs.api import urls as orgs_urls
from orgs.models import Invitation, Membership, Role, Team, TeamMember
from tests.conftest import PASSWORD, add_member, assert_error, builtin_role, client_for, make_user

ROLES = ("owner", "admin", "member", "viewer")
OWNER_ONLY = "<owner>"  # ownership transfer: the service allows Owners only


@dataclass
class World:
    cast: object
    subject_membership: Membership
    bob_membership: Membership
    spare_role: Role
    team: Team
    invitation: Invitation


@dataclass(frozen=True)
class Case:
    url: str  # formatted with the World
    ok_status: int
    body: dict | None = None
    # For ANY_MEMBER methods: the permission the service demands (or OWNER_ONLY).
    service_permission: str | None = None


CASES: dict[tuple[str, str], Case] = {
    ("org-detail", "GET"): Case("/api/v1/orgs/acme", 200),
    ("org-detail", "PATCH"): Case("/api/v1/orgs/acme", 200, {"name": "Acme renamed"}),
    ("org-detail", "DELETE"): Case("/api/v1/orgs/acme", 204, {"password": PASSWORD}),
    ("org-cache", "GET"): Case("/api/v1/orgs/acme/cache", 200),
    ("org-cache", "PATCH"): Case("/api/v1/orgs/acme/cache", 200, {"ttl_seconds": 120}),
    ("org-cache", "PUT"): Case("/api/v1/orgs/acme/cache", 200, {"max_bytes": 4096}),
    ("org-cache", "DELETE"): Case("/api/v1/orgs/acme/cache", 200),
    ("org-transfer", "POST"): Case(
        "/api/v1/orgs/acme/transfer-ownership",
        200,
        {"member_id": "{bob}", "password": PASSWORD},
        OWNER_ONLY,
    ),
    ("member-list", "GET"): Case("/api/v1/orgs/acme/members", 200),
    ("member-detail", "GET"): Case("/api/v1/orgs/acme/members/{bob}", 200),
    ("member-detail", "PATCH"): Case("/api/v1/orgs/acme/members/{bob}", 200, {"role": "viewer"}),
    ("member-detail", "DELETE"): Case(
        "/api/v1/orgs/acme/members/{bob}", 204, None, "member:delete"
    ),
    ("role-list", "GET"): Case("/api/v1/orgs/acme/roles", 200),
    ("role-list", "POST"): Case(
        "/api/v1/orgs/acme/roles",
        201,
        {"slug": "fresh", "name": "Fresh", "permissions": ["org:view"]},
    ),
    ("role-detail", "GET"): Case("/api/v1/orgs/acme/roles/{role}", 200),
    ("role-detail", "PATCH"): Case(
        "/api/v1/orgs/acme/roles/{role}", 200, {"name": "Spare renamed"}
    ),
    ("role-detail", "DELETE"): Case("/api/v1/orgs/acme/roles/{role}", 204),
    ("team-list", "GET"): Case("/api/v1/orgs/acme/teams", 200),
    ("team-list", "POST"): Case(
        "/api/v1/orgs/acme/teams", 201, {"slug": "new-team", "name": "New team"}
    ),
    ("team-detail", "GET"): Case("/api/v1/orgs/acme/teams/{team}", 200),
    ("team-detail", "PATCH"): Case("/api/v1/orgs/acme/teams/{team}", 200, {"name": "Renamed team"}),
    ("team-detail", "DELETE"): Case("/api/v1/orgs/acme/teams/{team}", 204),
    ("team-member-list", "GET"): Case("/api/v1/orgs/acme/teams/{team}/members", 200),
    ("team-member-list", "POST"): Case(
        "/api/v1/orgs/acme/teams/{team}/members", 201, {"user_id": "{vera_user}"}
    ),
    ("team-member-detail", "DELETE"): Case(
        "/api/v1/orgs/acme/teams/{team}/members/{bob_user}", 204
    ),
    ("invitation-list", "GET"): Case("/api/v1/orgs/acme/invitations", 200),
    ("invitation-list", "POST"): Case(
        "/api/v1/orgs/acme/invitations", 201, {"email": "newcomer@example.com", "role": "viewer"}
    ),
    ("invitation-detail", "GET"): Case("/api/v1/orgs/acme/invitations/{invitation}", 200),
    ("invitation-detail", "DELETE"): Case("/api/v1/orgs/acme/invitations/{invitation}", 200),
    ("invitation-resend", "POST"): Case("/api/v1/orgs/acme/invitations/{invitation}/resend", 200),
}

# CONTRACT section 4, written out by hand for a sample of cells.
KNOWN: list[tuple[str, str, str, bool]] = [
    ("owner", "org-detail", "DELETE", True),
    ("owner", "org-transfer", "POST", True),
    ("admin", "org-detail", "DELETE", False),
    ("admin", "org-transfer", "POST", False),
    ("admin", "org-detail", "PATCH", True),
    ("admin", "org-cache", "PATCH", True),
    ("admin", "org-cache", "DELETE", True),
    ("member", "org-cache", "PATCH", False),
    ("member", "org-cache", "DELETE", False),
    ("viewer", "org-cache", "GET", True),
    ("admin", "role-list", "POST", True),
    ("admin", "invitation-list", "POST", True),
    ("admin", "member-detail", "DELETE", True),
    ("member", "org-detail", "PATCH", False),
    ("member", "team-list", "POST", False),
    ("member", "invitation-list", "POST", False),
    ("member", "member-detail", "DELETE", False),
    ("member", "member-list", "GET", True),
    ("viewer", "member-list", "GET", True),
    ("viewer", "org-detail", "GET", True),
    ("viewer", "role-detail", "PATCH", False),
    ("viewer", "team-member-list", "POST", False),
    ("viewer", "invitation-resend", "POST", False),
]


def declared_endpoints() -> dict[tuple[str, str], str]:
    """(url name, method) -> declared permission for every org endpoint in orgs/api/urls.py."""
    found = {}
    for pattern in orgs_urls.urlpatterns:
        view_class = getattr(pattern.callback, "cls", None)
        if view_class is not None and issubclass(view_class, OrgAPIView):
            for method, permission in view_class.required_permissions.items():
                found[(pattern.name, method)] = permission
    return found


def effective_requirement(key: tuple[str, str]) -> str:
    declared = declared_endpoints()[key]
    if declared == ANY_MEMBER:
        assert CASES[key].service_permission, f"{key} is ANY_MEMBER: say what the service demands"
        return CASES[key].service_permission
    return declared


def expected_allowed(role: str, key: tuple[str, str]) -> bool:
    requirement = effective_requirement(key)
    if requirement == OWNER_ONLY:
        return role == "owner"
    return requirement in BUILTIN_ROLES[role][1]


def test_the_matrix_covers_every_org_endpoint_and_method():
    declared = declared_endpoints()
    assert len(declared) >= 20
    assert set(declared) == set(CASES)
    for key, permission in declared.items():
        assert permission == ANY_MEMBER or permission in PERMISSION_SET, key


def test_derived_expectations_match_the_contract_table():
    for role, name, method, allowed in KNOWN:
        assert expected_allowed(role, (name, method)) is allowed, (role, name, method)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_has_both_outcomes_except_owner(role):
    outcomes = {expected_allowed(role, key) for key in CASES}
    assert outcomes == ({True} if role == "owner" else {True, False})


def test_reads_are_open_to_every_role_and_writes_are_not():
    for key in CASES:
        if key[1] == "GET":
            assert all(expected_allowed(role, key) for role in ROLES), key
        else:
            assert not expected_allowed("viewer", key), key


@pytest.fixture
def world(cast) -> World:
    def build(role: str) -> World:
        subject = make_user("sam")
        subject_membership = add_member(cast.acme, subject, role)
        spare = Role.objects.create(
            org=cast.acme, slug="spare", name="Spare", permissions=["org:view"]
        )
        team = Team.all_orgs.create(org=cast.acme, slug="ml", name="ML")
        TeamMember.all_orgs.create(org=cast.acme, team=team, user=cast.bob)
        invitation = Invitation.all_orgs.create(
            org=cast.acme,
            email="frank@example.com",
            role=builtin_role("member"),
            invited_by=Membership.all_orgs.get(org=cast.acme, user=cast.alice),
            token_digest=hashlib.sha256(b"matrix-token").hexdigest(),
            expires_at=clock.now() + timedelta(days=7),
        )
        return World(
            cast=cast,
            subject_membership=subject_membership,
            bob_membership=Membership.all_orgs.get(org=cast.acme, user=cast.bob),
            spare_role=spare,
            team=team,
            invitation=invitation,
        )

    return build


def fill(template, w: World):
    values = {
        "bob": w.bob_membership.pk,
        "bob_user": w.cast.bob.pk,
        "vera_user": w.cast.vera.pk,
        "role": w.spare_role.pk,
        "team": w.team.pk,
        "invitation": w.invitation.pk,
    }
    if isinstance(template, str):
        return template.format(**values)
    if isinstance(template, dict):
        return {key: fill(value, w) for key, value in template.items()}
    return template


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[1]} {k[0]}")
@pytest.mark.parametrize("role", ROLES)
def test_role_against_endpoint(world, role, key):
    w = world(role)
    case = CASES[key]
    subject = w.subject_membership.user
    client = client_for(subject)
    method = key[1].lower()
    kwargs = {"format": "json"}
    if case.body is not None:
        kwargs["data"] = fill(case.body, w)
    response = getattr(client, method)(fill(case.url, w), **kwargs)

    if expected_allowed(role, key):
        assert response.status_code == case.ok_status, (role, key, response.content[:400])
        if method != "get":
            assert AuditRecord.objects.filter(actor_user=subject, outcome="success").exists(), (
                role,
                key,
            )
        return

    error = assert_error(response, 403, "PERMISSION_DENIED")
    requirement = effective_requirement(key)
    if requirement != OWNER_ONLY:
        assert requirement in error["message"], error
    if declared_endpoints()[key] != ANY_MEMBER:
        # Refused by the permission class, which records the decision.
        denied = AuditRecord.objects.get(actor_user=subject, outcome="denied")
        assert (
            denied.action == requirement and denied.status_code == 403 and denied.org == w.cast.acme
        )
    assert not AuditRecord.objects.filter(actor_user=subject, outcome="success").exists()
    # Nothing the request aimed at changed.
    assert Membership.all_orgs.filter(pk=w.bob_membership.pk, role__slug="member").exists()
    assert Role.objects.filter(pk=w.spare_role.pk, name="Spare").exists()
    assert Team.all_orgs.filter(pk=w.team.pk, name="ML").exists()
    assert TeamMember.all_orgs.filter(team=w.team).count() == 1
    assert Invitation.all_orgs.get(pk=w.invitation.pk).status == "pending"
    w.cast.acme.refresh_from_db()
    assert w.cast.acme.name == "Acme"
