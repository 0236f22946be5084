"""enforce_sso: password login (API and dashboard, one service) refuses the members of
an enforcing org, Owners keep password + 2FA (break-glass); turning it on needs
sso:manage, an enabled provider and an Owner with 2FA. Every refusal is audited."""

from __future__ import annotations

from audit.models import AuditRecord
from tests.conftest import PASSWORD, assert_error, code_now, enable_totp
from tests.sso.conftest import make_oidc

LOGIN = "/api/v1/auth/login"


def _enforce(client, on=True):
    return client.patch("/api/v1/orgs/acme", {"settings": {"enforce_sso": on}}, format="json")


def test_turning_it_on_needs_a_provider_and_an_owner_with_2fa(cast, alice_client, bob_client):
    error = assert_error(_enforce(alice_client), 400, "VALIDATION_ERROR")
    assert "enforce_sso" in error["details"]
    make_oidc(cast)
    error = assert_error(_enforce(alice_client), 400, "VALIDATION_ERROR")
    assert "2FA" in str(error["details"]) or "two-factor" in str(error["details"])
    enable_totp(alice_client, cast.alice)
    assert_error(_enforce(bob_client), 403, "PERMISSION_DENIED")
    response = _enforce(alice_client)
    assert response.status_code == 200, response.content
    cast.acme.refresh_from_db()
    assert cast.acme.policy.enforce_sso is True


def _enforcing(cast, alice_client):
    make_oidc(cast)
    device, _codes = enable_totp(alice_client, cast.alice)
    assert _enforce(alice_client).status_code == 200
    return device


def test_members_password_login_refused_on_api_and_dashboard(
    cast, alice_client, anon_client, client
):
    _enforcing(cast, alice_client)
    error = assert_error(
        anon_client.post(LOGIN, {"username": "bob", "password": PASSWORD}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert error["details"] == {"sso_orgs": ["acme"]}
    record = AuditRecord.objects.filter(action="auth:login", outcome="denied").latest("seq")
    assert record.data["reason"] == "sso_enforced" and record.org_id == cast.acme.pk
    # A wrong password still answers 401: nothing about SSO leaks before the password.
    assert_error(
        anon_client.post(LOGIN, {"username": "bob", "password": "wrong"}, format="json"),
        401,
        "AUTHENTICATION_FAILED",
    )
    page = client.post("/login", {"step": "password", "username": "bob", "password": PASSWORD})
    assert page.status_code == 400 and b"/auth/sso/acme" in page.content
    assert "_auth_user_id" not in client.session
    # Charlie is not a member of Acme: untouched.
    ok = anon_client.post(LOGIN, {"username": "charlie", "password": PASSWORD}, format="json")
    assert ok.status_code == 200


def test_owner_break_glass_is_password_plus_2fa(cast, alice_client, anon_client, clock_shift):
    device = _enforcing(cast, alice_client)
    clock_shift(31)  # the enrolment's code is used: the next step's
    assert_error(
        anon_client.post(LOGIN, {"username": "alice", "password": PASSWORD}, format="json"),
        401,
        "OTP_REQUIRED",
    )
    response = anon_client.post(
        LOGIN,
        {"username": "alice", "password": PASSWORD, "otp_code": code_now(device)},
        format="json",
    )
    assert response.status_code == 200, response.content


def test_an_owner_without_2fa_is_refused_too(cast, alice_client, anon_client):
    from orgs.models import Membership, Role

    _enforcing(cast, alice_client)
    # dave becomes a second Owner, without 2FA
    Membership.all_orgs.filter(org=cast.acme, user=cast.dave).update(
        role=Role.objects.get(org__isnull=True, slug="owner")
    )
    error = assert_error(
        anon_client.post(LOGIN, {"username": "dave", "password": PASSWORD}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert error["details"] == {"sso_orgs": ["acme"]}
    record = AuditRecord.objects.filter(action="auth:login", outcome="denied").latest("seq")
    assert record.data["reason"] == "sso_enforced_owner_without_2fa"


def test_the_last_enabled_provider_of_an_enforcing_org_stays(cast, alice_client):
    _enforcing(cast, alice_client)
    from sso.models import IdentityProvider

    provider = IdentityProvider.all_orgs.get(org=cast.acme)
    url = f"/api/v1/orgs/acme/identity-providers/{provider.pk}"
    assert_error(alice_client.delete(url), 409, "CONFLICT")
    assert_error(alice_client.patch(url, {"is_enabled": False}, format="json"), 409, "CONFLICT")
