"""POST /api/v1/auth/password: a change kills every token of the user at once."""

from __future__ import annotations

from rest_framework.test import APIClient

from audit.models import AuditRecord
from orgs.models import RefreshTokenRecord
from tests.conftest import PASSWORD, assert_error, to_step_start

LOGIN = "/api/v1/auth/login"
PASSWORD_URL = "/api/v1/auth/password"
NEW_PASSWORD = "a-new-and-long-passphrase"


def login(username: str, password: str = PASSWORD):
    return APIClient().post(LOGIN, {"username": username, "password": password}, format="json")


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def refresh(token: str):
    return APIClient().post("/api/v1/auth/refresh", {"refresh_token": token}, format="json")


def change(client: APIClient, current: str, new: str):
    return client.post(
        PASSWORD_URL, {"current_password": current, "new_password": new}, format="json"
    )


def test_password_change_kills_every_token_and_returns_a_fresh_pair(cast):
    laptop, phone = login("bob").json(), login("bob").json()
    rotated = refresh(phone["refresh_token"]).json()

    response = change(bearer(laptop["access_token"]), PASSWORD, NEW_PASSWORD)

    assert response.status_code == 200, response.content
    assert "no-store" in response["Cache-Control"]
    fresh = response.json()
    assert fresh["token_type"] == "Bearer" and fresh["user"]["username"] == "bob"
    # Every earlier access and refresh token of bob is dead, whichever session.
    for access in (laptop["access_token"], phone["access_token"], rotated["access_token"]):
        assert_error(bearer(access).get("/api/v1/auth/me"), 401, "AUTHENTICATION_FAILED")
    for token in (laptop["refresh_token"], rotated["refresh_token"]):
        assert_error(refresh(token), 401, "AUTHENTICATION_FAILED")
    alive = RefreshTokenRecord.objects.filter(user=cast.bob, revoked_at__isnull=True)
    assert list(alive.values_list("pk", flat=True)) == [
        RefreshTokenRecord.objects.filter(user=cast.bob).latest("created_at").pk
    ]
    # The fresh pair works, for API calls and for refreshing.
    assert bearer(fresh["access_token"]).get("/api/v1/orgs/acme").status_code == 200
    assert refresh(fresh["refresh_token"]).status_code == 200
    # Only the new password logs in.
    assert_error(login("bob"), 401, "AUTHENTICATION_FAILED")
    assert login("bob", NEW_PASSWORD).status_code == 200
    record = AuditRecord.objects.get(action="auth:password_change")
    assert record.outcome == "success" and record.actor_user == cast.bob
    assert NEW_PASSWORD not in str(record.data) and PASSWORD not in str(record.data)


def test_other_users_keep_their_tokens(cast, bob_client, vera_client):
    assert change(bob_client, PASSWORD, NEW_PASSWORD).status_code == 200
    assert vera_client.get("/api/v1/auth/me").status_code == 200


def test_wrong_current_password_changes_nothing(cast):
    tokens = login("bob").json()
    client = bearer(tokens["access_token"])

    response = change(client, "not-my-password", NEW_PASSWORD)

    assert_error(response, 401, "AUTHENTICATION_FAILED")
    cast.bob.refresh_from_db()
    assert cast.bob.check_password(PASSWORD)
    assert client.get("/api/v1/auth/me").status_code == 200
    assert refresh(tokens["refresh_token"]).status_code == 200
    record = AuditRecord.objects.get(action="auth:password_change")
    assert record.outcome == "failure" and record.actor_user == cast.bob


def test_weak_new_password_is_400_with_details_and_changes_nothing(cast):
    tokens = login("bob").json()
    client = bearer(tokens["access_token"])

    for weak in ("short", "1234567890123", "password123", "bob-example"):
        error = assert_error(change(client, PASSWORD, weak), 400, "VALIDATION_ERROR")
        assert error["details"]["new_password"], weak

    cast.bob.refresh_from_db()
    assert cast.bob.check_password(PASSWORD)
    assert client.get("/api/v1/auth/me").status_code == 200
    assert refresh(tokens["refresh_token"]).status_code == 200
    assert not AuditRecord.objects.filter(action="auth:password_change", outcome="success").exists()


def test_missing_fields_and_anonymous_callers(cast, bob_client):
    error = assert_error(bob_client.post(PASSWORD_URL, {}, format="json"), 400, "VALIDATION_ERROR")
    assert set(error["details"]) == {"current_password", "new_password"}
    assert_error(change(APIClient(), PASSWORD, NEW_PASSWORD), 401, "AUTHENTICATION_FAILED")
    cast.bob.refresh_from_db()
    assert cast.bob.check_password(PASSWORD)


def test_current_password_guesses_are_throttled_like_login(cast, bob_client, settings, clock_shift):
    to_step_start(settings.INFERIA_LOGIN_WINDOW_SECONDS)  # a whole window ahead
    # A stolen access token must not give an unthrottled password oracle.
    settings.INFERIA_LOGIN_MAX_FAILURES_PER_USER = 3
    for _ in range(3):
        assert_error(change(bob_client, "guess", NEW_PASSWORD), 401, "AUTHENTICATION_FAILED")

    response = change(bob_client, PASSWORD, NEW_PASSWORD)

    assert_error(response, 429, "RATE_LIMITED")
    cast.bob.refresh_from_db()
    assert cast.bob.check_password(PASSWORD)
    assert_error(login("bob"), 429, "RATE_LIMITED")
    denied = AuditRecord.objects.get(action="auth:password_change", outcome="denied")
    assert denied.actor_user == cast.bob and denied.status_code == 429

    clock_shift(int(response["Retry-After"]))
    assert change(bob_client, PASSWORD, NEW_PASSWORD).status_code == 200
