"""POST /api/v1/auth/login: the token pair, one error for every bad credential,
equal hashing work for unknown users, input errors, and brute-force throttling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from django.contrib.auth.hashers import MD5PasswordHasher
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditRecord
from orgs.models import RefreshTokenRecord, User
from tests.conftest import PASSWORD, assert_error, make_user, to_step_start

LOGIN = "/api/v1/auth/login"


def login(client: APIClient, username: str, password: str, **extra):
    return client.post(LOGIN, {"username": username, "password": password, **extra}, format="json")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- success ------------------------------------------------------------------------


def test_login_returns_bearer_pair_with_expiry_and_user(cast, anon_client, settings):
    before = timezone.now()

    response = login(anon_client, "alice", PASSWORD)

    assert response.status_code == 200, response.content
    assert "no-store" in response["Cache-Control"]
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_at", "user"}
    assert body["token_type"] == "Bearer"
    assert body["user"]["id"] == str(cast.alice.pk)
    assert body["user"]["username"] == "alice"
    assert body["user"]["two_factor_enabled"] is False
    assert "password" not in body["user"]
    # Access tokens are short-lived (default 15 min) and expires_at says when.
    lifetime = parse_time(body["expires_at"]) - before
    assert (
        timedelta(minutes=15) - timedelta(seconds=5) <= lifetime <= timedelta(minutes=15, seconds=5)
    )
    access = jwt.decode(body["access_token"], options={"verify_signature": False})
    refresh = jwt.decode(body["refresh_token"], options={"verify_signature": False})
    assert access["typ"] == "access" and refresh["typ"] == "refresh"
    assert access["sub"] == refresh["sub"] == str(cast.alice.pk)
    assert access["iss"] == settings.INFERIA_JWT_ISSUER
    assert access["aud"] == settings.INFERIA_JWT_AUDIENCE
    assert datetime.fromtimestamp(access["exp"], tz=UTC) == parse_time(body["expires_at"])
    refresh_lifetime = datetime.fromtimestamp(refresh["exp"], tz=UTC) - before
    # 7 days, cut to the absolute session lifetime (12 hours from the login).
    expected = min(timedelta(days=7), timedelta(hours=settings.INFERIA_SESSION_ABSOLUTE_HOURS))
    assert expected - timedelta(seconds=5) <= refresh_lifetime <= expected + timedelta(seconds=5)
    assert refresh["auth_time"] == access["auth_time"] and refresh["fam"] == access["fam"]

    # The access token works at once.
    anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    me = anon_client.get("/api/v1/auth/me")
    assert me.status_code == 200, me.content
    assert me.json()["user"]["username"] == "alice"

    # Server side: one refresh record, by jti only (never the token itself).
    record = RefreshTokenRecord.objects.get(user=cast.alice)
    assert record.jti == refresh["jti"]
    assert record.revoked_at is None and record.used_at is None
    cast.alice.refresh_from_db()
    assert cast.alice.last_login is not None and cast.alice.last_login >= before
    audit = AuditRecord.objects.get(action="auth:login", outcome="success")
    assert audit.actor_user == cast.alice
    assert audit.status_code == 200
    assert audit.client_ip == "127.0.0.1"
    assert body["access_token"] not in str(audit.data)


def test_username_is_trimmed_but_password_is_not(cast, anon_client):
    assert login(anon_client, "  alice ", PASSWORD).status_code == 200
    assert_error(login(anon_client, "alice", f" {PASSWORD}"), 401, "AUTHENTICATION_FAILED")


# --- one error for every bad credential -----------------------------------------------


def test_unknown_user_wrong_password_and_inactive_user_get_the_same_401(cast, anon_client):
    User.objects.filter(pk=cast.vera.pk).update(is_active=False)

    errors = [
        assert_error(login(anon_client, "nobody", PASSWORD), 401, "AUTHENTICATION_FAILED"),
        assert_error(login(anon_client, "alice", "wrong-password"), 401, "AUTHENTICATION_FAILED"),
        # vera's password is right, but she is deactivated.
        assert_error(login(anon_client, "vera", PASSWORD), 401, "AUTHENTICATION_FAILED"),
    ]

    assert errors[0] == errors[1] == errors[2]
    assert errors[0]["message"] == "Invalid username or password"
    failures = AuditRecord.objects.filter(action="auth:login", outcome="failure")
    assert sorted(failures.values_list("actor_label", flat=True)) == ["alice", "nobody", "vera"]
    assert set(failures.values_list("status_code", flat=True)) == {401}
    assert not RefreshTokenRecord.objects.exists()
    # The same request with the right password and an active account succeeds.
    assert login(anon_client, "alice", PASSWORD).status_code == 200


class CountingHasher(MD5PasswordHasher):
    """Counts every hash computation (verify and make_password both call encode)."""

    algorithm = "counting_md5"
    calls: list[str] = []

    def encode(self, password, salt):
        CountingHasher.calls.append(password)
        return super().encode(password, salt)


def test_unknown_user_costs_the_same_hashing_work_as_a_known_one(db, anon_client, settings):
    settings.PASSWORD_HASHERS = [f"{CountingHasher.__module__}.{CountingHasher.__qualname__}"]
    make_user("erin")
    inactive = make_user("ivan")
    User.objects.filter(pk=inactive.pk).update(is_active=False)
    work = {}
    for case, username, password in [
        ("unknown user", "nobody", "guess-1"),
        ("wrong password", "erin", "guess-2"),
        ("inactive user", "ivan", PASSWORD),
        ("right password", "erin", PASSWORD),
    ]:
        CountingHasher.calls.clear()
        response = login(anon_client, username, password)
        assert response.status_code == (200 if case == "right password" else 401), case
        work[case] = list(CountingHasher.calls)

    # Exactly one hash of the submitted password in every case: no shortcut for
    # unknown users that would let response times reveal which usernames exist.
    assert work == {
        "unknown user": ["guess-1"],
        "wrong password": ["guess-2"],
        "inactive user": [PASSWORD],
        "right password": [PASSWORD],
    }


# --- input errors -----------------------------------------------------------------------


def test_missing_fields_give_400_with_field_details(cast, anon_client):
    error = assert_error(anon_client.post(LOGIN, {}, format="json"), 400, "VALIDATION_ERROR")
    assert set(error["details"]) == {"username", "password"}
    assert all(error["details"][field] for field in ("username", "password"))

    error = assert_error(
        anon_client.post(LOGIN, {"username": "alice"}, format="json"), 400, "VALIDATION_ERROR"
    )
    assert set(error["details"]) == {"password"}
    # Input errors are not login attempts: nothing counted, nothing issued.
    assert not AuditRecord.objects.filter(action="auth:login", outcome="success").exists()
    assert not RefreshTokenRecord.objects.exists()


def test_malformed_json_gives_400(cast, anon_client):
    response = anon_client.post(
        LOGIN, data='{"username": "alice", "password": ', content_type="application/json"
    )
    assert_error(response, 400, "VALIDATION_ERROR")

    response = anon_client.post(LOGIN, data='["alice"]', content_type="application/json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"]["non_field_errors"]
    assert not RefreshTokenRecord.objects.exists()


def test_non_json_content_type_gives_415(cast, anon_client):
    response = anon_client.post(
        LOGIN,
        data=f"username=alice&password={PASSWORD}",
        content_type="application/x-www-form-urlencoded",
    )
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    response = anon_client.post(LOGIN, data="alice", content_type="text/plain")
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert not RefreshTokenRecord.objects.exists()


def test_login_only_accepts_post(cast, anon_client):
    assert_error(anon_client.get(LOGIN), 405, "METHOD_NOT_ALLOWED")


# --- throttling ------------------------------------------------------------------------


def test_failures_below_the_per_username_limit_do_not_lock_out(cast, anon_client, settings):
    to_step_start(settings.INFERIA_LOGIN_WINDOW_SECONDS)  # a whole window ahead
    limit = settings.INFERIA_LOGIN_MAX_FAILURES_PER_USER
    for _ in range(limit - 1):
        assert_error(login(anon_client, "alice", "wrong-password"), 401, "AUTHENTICATION_FAILED")
    assert login(anon_client, "alice", PASSWORD).status_code == 200


def test_per_username_throttle_refuses_even_the_right_password_until_the_window_ends(
    cast, anon_client, settings, clock_shift
):
    to_step_start(settings.INFERIA_LOGIN_WINDOW_SECONDS)  # a whole window ahead
    assert settings.INFERIA_LOGIN_MAX_FAILURES_PER_USER == 5  # the documented default
    for _ in range(5):
        assert_error(login(anon_client, "alice", "wrong-password"), 401, "AUTHENTICATION_FAILED")

    response = login(anon_client, "alice", PASSWORD)

    assert_error(response, 429, "RATE_LIMITED")
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= settings.INFERIA_LOGIN_WINDOW_SECONDS
    assert not RefreshTokenRecord.objects.filter(user=cast.alice).exists()
    # The username is throttled, not the client: bob logs in from the same address.
    assert login(anon_client, "bob", PASSWORD).status_code == 200
    # A different spelling of the same username counts against the same limit.
    assert_error(login(anon_client, "ALICE", PASSWORD), 429, "RATE_LIMITED")
    denied = AuditRecord.objects.filter(action="auth:login", outcome="denied")
    assert denied.count() == 2
    assert set(denied.values_list("status_code", flat=True)) == {429}
    assert set(denied.values_list("actor_label", flat=True)) == {"alice", "ALICE"}

    clock_shift(retry_after - 2)
    assert_error(login(anon_client, "alice", PASSWORD), 429, "RATE_LIMITED")
    clock_shift(2)
    assert login(anon_client, "alice", PASSWORD).status_code == 200


def test_per_ip_throttle_counts_failures_across_usernames(cast, settings, clock_shift):
    to_step_start(settings.INFERIA_LOGIN_WINDOW_SECONDS)  # a whole window ahead
    settings.INFERIA_LOGIN_MAX_FAILURES_PER_IP = 3
    attacker = APIClient(REMOTE_ADDR="203.0.113.7")
    for username in ("alice", "bob", "nobody"):
        assert_error(login(attacker, username, "wrong-password"), 401, "AUTHENTICATION_FAILED")

    response = login(attacker, "vera", PASSWORD)

    assert_error(response, 429, "RATE_LIMITED")
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= settings.INFERIA_LOGIN_WINDOW_SECONDS
    # A forged X-Forwarded-For from an untrusted peer does not change the address.
    response = attacker.post(
        LOGIN,
        {"username": "vera", "password": PASSWORD},
        format="json",
        HTTP_X_FORWARDED_FOR="198.51.100.99",
    )
    assert_error(response, 429, "RATE_LIMITED")
    # Another address is not affected, for the same user.
    assert login(APIClient(REMOTE_ADDR="198.51.100.2"), "vera", PASSWORD).status_code == 200
    denied = AuditRecord.objects.filter(action="auth:login", outcome="denied")
    assert denied.count() == 2
    assert set(denied.values_list("client_ip", flat=True)) == {"203.0.113.7"}
    assert RefreshTokenRecord.objects.filter(user=cast.vera).count() == 1  # the other address

    clock_shift(retry_after)
    assert login(attacker, "vera", PASSWORD).status_code == 200


def test_successful_logins_are_not_counted_as_failures(cast, anon_client, settings):
    settings.INFERIA_LOGIN_MAX_FAILURES_PER_USER = 2
    settings.INFERIA_LOGIN_MAX_FAILURES_PER_IP = 2
    for _ in range(5):
        assert login(anon_client, "alice", PASSWORD).status_code == 200
    assert RefreshTokenRecord.objects.filter(user=cast.alice).count() == 5


def test_login_is_503_in_the_envelope_when_the_throttle_store_is_unreachable(
    cast, anon_client, settings
):
    """The login throttle lives in Redis when REDIS_URL is set: unreachable, the login
    fails closed with the contract's 503, not a 500, and names no address."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = login(anon_client, "alice", PASSWORD)
    assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert "127.0.0.1" not in response.content.decode()
    assert not RefreshTokenRecord.objects.filter(user=cast.alice).exists()
