"""Role grants, membership removal, ownership transfer and 2FA changes need a
signed-in user (an access token or a dashboard session), never an API key:
even an Owner's key holding every permission gets 403 PERMISSION_DENIED."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from orgs.access import PERMISSIONS
from orgs.models import Invitation, Membership, Organization, Role, TeamMember
from tests.conftest import PASSWORD, assert_error
from tests.keys.conftest import create_service_account, create_team, key_client, mint

ORG = "/api/v1/orgs/acme"
HUMAN_ONLY = "needs a signed-in user"


def _snapshot(cast) -> tuple:
    return (
        sorted(
            Membership.all_orgs.filter(org=cast.acme).values_list(
                "user__username", "role__slug", "granted_by_membership"
            ),
            key=repr,
        ),
        Organization.objects.get(pk=cast.acme.pk).require_2fa,
        Invitation.all_orgs.filter(org=cast.acme).count(),
        TeamMember.all_orgs.filter(org=cast.acme).count(),
        sorted(Role.objects.filter(org=cast.acme).values_list("slug", "permissions"), key=repr),
    )


@pytest.fixture
def owner_key(cast, alice_client) -> str:
    """alice's key with every permission: the strongest key there is."""
    return mint(alice_client, name="everything", permissions=list(PERMISSIONS))["key"]


def _cases(cast, alice_client):
    bob = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
    team = create_team(alice_client, "ml")
    role = alice_client.post(
        f"{ORG}/roles", {"slug": "ops", "name": "Ops", "permissions": ["model:read"]}, format="json"
    ).json()
    sa = create_service_account(alice_client, "bot", "viewer")
    return {
        "role-grant": ("patch", f"{ORG}/members/{bob.pk}", {"role": "admin"}),
        "member-remove": ("delete", f"{ORG}/members/{bob.pk}", None),
        "transfer-ownership": (
            "post",
            f"{ORG}/transfer-ownership",
            {"member_id": str(bob.pk), "password": PASSWORD},
        ),
        "require-2fa": ("patch", ORG, {"require_2fa": True}),
        "invite-with-role": (
            "post",
            f"{ORG}/invitations",
            {"email": "eve@example.com", "role": "admin"},
        ),
        "team-member-add": (
            "post",
            f"{ORG}/teams/{team['id']}/members",
            {"user_id": str(cast.bob.pk)},
        ),
        "role-permissions": (
            "patch",
            f"{ORG}/roles/{role['id']}",
            {"permissions": ["model:read", "usage:view"]},
        ),
        "service-account-role": ("patch", f"{ORG}/service-accounts/{sa['id']}", {"role": "member"}),
    }


CASE_NAMES = [
    "role-grant",
    "member-remove",
    "transfer-ownership",
    "require-2fa",
    "invite-with-role",
    "team-member-add",
    "role-permissions",
    "service-account-role",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_api_key_cannot_change_who_holds_what(cast, alice_client, owner_key, case):
    method, url, body = _cases(cast, alice_client)[case]
    before = _snapshot(cast)
    successes = AuditRecord.objects.filter(outcome="success").count()
    kwargs = {"format": "json"} | ({"data": body} if body is not None else {})
    response = getattr(key_client(owner_key), method)(url, **kwargs)
    error = assert_error(response, 403, "PERMISSION_DENIED")
    assert HUMAN_ONLY in error["message"]
    assert _snapshot(cast) == before
    assert AuditRecord.objects.filter(outcome="success").count() == successes


def test_leaving_through_a_key_is_refused(cast, bob_client):
    key = mint(bob_client, name="bob", permissions=["model:read"])["key"]
    own = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
    error = assert_error(
        key_client(key).delete(f"{ORG}/members/{own.pk}"), 403, "PERMISSION_DENIED"
    )
    assert HUMAN_ONLY in error["message"]
    assert Membership.all_orgs.filter(pk=own.pk).exists()


@pytest.mark.parametrize("case", CASE_NAMES)
def test_the_same_calls_pass_for_the_signed_in_owner(cast, alice_client, case):
    """The refusal above is about the credential, not the request."""
    from tests.conftest import enable_totp

    if case == "require-2fa":
        enable_totp(alice_client, cast.alice)
    method, url, body = _cases(cast, alice_client)[case]
    kwargs = {"format": "json"} | ({"data": body} if body is not None else {})
    response = getattr(alice_client, method)(url, **kwargs)
    assert response.status_code in (200, 201, 204), (case, response.content)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/2fa/setup", None),
        ("/api/v1/auth/2fa/confirm", {"otp_code": "123456"}),
        ("/api/v1/auth/2fa/disable", {"otp_code": "123456"}),
        ("/api/v1/auth/2fa/recovery-codes", {"otp_code": "123456"}),
    ],
)
def test_api_key_cannot_change_two_factor_settings(cast, owner_key, path, body):
    response = key_client(owner_key).post(path, body, format="json")
    assert_error(response, 403, "PERMISSION_DENIED")
    assert not AuditRecord.objects.filter(action__startswith="auth:2fa", outcome="success").exists()
