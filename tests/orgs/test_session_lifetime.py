"""Sessions (API refresh families and dashboard sessions) end: absolutely
INFERIA_SESSION_ABSOLUTE_HOURS after the login however often they refresh, at
logout (the access token too, at the API and the gateway), and when the user's
second factor changes (every *other* session; the acting one stays usable)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditRecord
from inferia.errors import AuthenticationFailed
from orgs.models import RefreshTokenRecord, TOTPDevice
from tests.conftest import PASSWORD, assert_error, code_now, enable_totp, to_step_start

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"
HOUR = 3600


def api_login(username: str, otp_code: str | None = None) -> dict:
    body = {"username": username, "password": PASSWORD}
    if otp_code:
        body["otp_code"] = otp_code
    response = APIClient().post(LOGIN, body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def refresh(token: str):
    return APIClient().post(REFRESH, {"refresh_token": token}, format="json")


def dashboard_login(username: str) -> Client:
    client = Client()
    response = client.post("/login", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]
    assert client.get("/").status_code == 200
    return client


def test_refresh_session_ends_absolute_hours_after_login_however_often_refreshed(cast, clock_shift):
    assert settings.INFERIA_SESSION_ABSOLUTE_HOURS == 12
    tokens = api_login("bob")
    # Refreshed every 3 hours (well inside the 7-day refresh lifetime): fine until hour 12.
    for _ in range(3):
        clock_shift(3 * HOUR)
        response = refresh(tokens["refresh_token"])
        assert response.status_code == 200, response.content
        tokens = response.json()
    clock_shift(3 * HOUR - 60)  # 11 h 59 min after the login
    response = refresh(tokens["refresh_token"])
    assert response.status_code == 200, response.content
    tokens = response.json()
    assert bearer(tokens["access_token"]).get(ME).status_code == 200

    clock_shift(61)  # 12 hours after the login: over, however fresh the tokens are
    assert_error(bearer(tokens["access_token"]).get(ME), 401, "AUTHENTICATION_FAILED")
    assert_error(refresh(tokens["refresh_token"]), 401, "AUTHENTICATION_FAILED")

    assert not RefreshTokenRecord.objects.filter(user=cast.bob, revoked_at__isnull=True).exists()
    denied = AuditRecord.objects.get(action="auth:refresh", outcome="denied")
    assert denied.actor_user_id == cast.bob.pk
    assert denied.data == {"reason": "session_lifetime"}
    # A new login starts a new 12 hours.
    assert bearer(api_login("bob")["access_token"]).get(ME).status_code == 200


@pytest.mark.django_db
def test_session_lifetime_setting_is_configurable(cast, clock_shift, settings):
    settings.INFERIA_SESSION_ABSOLUTE_HOURS = 1
    tokens = api_login("bob")
    clock_shift(HOUR + 1)
    assert_error(refresh(tokens["refresh_token"]), 401, "AUTHENTICATION_FAILED")


def test_dashboard_session_ends_absolute_hours_after_login(cast, clock_shift):
    client = dashboard_login("bob")
    clock_shift(12 * HOUR - 60)
    assert client.get("/").status_code == 200
    clock_shift(61)
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login")
    assert "_auth_user_id" not in client.session


def test_logout_kills_the_access_token_of_that_login_only(cast):
    first = api_login("bob")
    second = api_login("bob")
    response = APIClient().post(LOGOUT, {"refresh_token": first["refresh_token"]}, format="json")
    assert response.status_code == 204

    assert_error(bearer(first["access_token"]).get(ME), 401, "AUTHENTICATION_FAILED")
    assert_error(refresh(first["refresh_token"]), 401, "AUTHENTICATION_FAILED")
    assert bearer(second["access_token"]).get(ME).status_code == 200
    assert AuditRecord.objects.filter(
        action="auth:logout", outcome="success", actor_user=cast.bob
    ).exists()


def test_logged_out_access_token_is_refused_by_the_gateway_too(cast):
    from gateway import principals

    tokens = api_login("bob")
    assert principals.build(tokens["access_token"], "acme", verify_only=True).user_id == cast.bob.pk
    APIClient().post(LOGOUT, {"refresh_token": tokens["refresh_token"]}, format="json")
    with pytest.raises(AuthenticationFailed):
        principals.build(tokens["access_token"], "acme", verify_only=True)


def test_dashboard_logout_ends_the_session_family(cast):
    client = dashboard_login("bob")
    family = client.session["inferia_fam"]
    assert client.post("/logout").status_code == 302
    assert not RefreshTokenRecord.objects.filter(family=family, revoked_at__isnull=True).exists()


def test_enabling_2fa_ends_every_other_session_and_keeps_the_acting_one(cast):
    to_step_start()
    acting, other = api_login("bob"), api_login("bob")
    page = dashboard_login("bob")
    acting_client = bearer(acting["access_token"])

    enable_totp(acting_client, cast.bob)

    # The acting login goes on: its access token works and its refresh token rotates.
    assert acting_client.get(ME).status_code == 200
    assert refresh(acting["refresh_token"]).status_code == 200
    # Every other one is over: API access and refresh tokens, and the dashboard.
    assert_error(bearer(other["access_token"]).get(ME), 401, "AUTHENTICATION_FAILED")
    assert_error(refresh(other["refresh_token"]), 401, "AUTHENTICATION_FAILED")
    response = page.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login")
    record = AuditRecord.objects.get(action="auth:2fa_enable", outcome="success")
    assert record.data == {"other_sessions_ended": 2}


def test_disabling_2fa_ends_every_other_session_and_keeps_the_acting_one(cast, clock_shift):
    to_step_start()
    enable_totp(bearer(api_login("bob")["access_token"]), cast.bob)
    device = TOTPDevice.objects.get(user=cast.bob)
    clock_shift(30)
    other = api_login("bob", otp_code=code_now(device))
    clock_shift(30)
    acting = api_login("bob", otp_code=code_now(device))
    clock_shift(30)

    # Disabled from a dashboard session: that session stays, both API logins end.
    page = Client()
    page.force_login(cast.bob, backend="django.contrib.auth.backends.ModelBackend")
    response = page.post("/account/2fa", {"op": "disable", "otp_code": code_now(device)})
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=cast.bob).exists()

    assert page.get("/").status_code == 200
    for tokens in (other, acting):
        assert_error(bearer(tokens["access_token"]).get(ME), 401, "AUTHENTICATION_FAILED")
        assert_error(refresh(tokens["refresh_token"]), 401, "AUTHENTICATION_FAILED")
    record = AuditRecord.objects.get(action="auth:2fa_disable", outcome="success")
    assert record.data["other_sessions_ended"] >= 3  # the enrolment login and both above


def test_password_change_in_the_dashboard_keeps_that_session(cast):
    page = dashboard_login("bob")
    response = page.post(
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": "another-long-passphrase-42",
            "new_password_again": "another-long-passphrase-42",
        },
    )
    assert response.status_code == 302
    assert page.get("/").status_code == 200
