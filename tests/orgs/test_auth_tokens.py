"""Access and refresh tokens: use, rotation, reuse detection, forgery, expiry,
logout, and tokens dying at once on deactivation or removal from an org."""

from __future__ import annotations

import time

import jwt
import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from audit.models import AuditRecord
from orgs.models import Membership, RefreshTokenRecord
from orgs.services.auth import user_deactivate
from tests.conftest import PASSWORD, assert_error

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"


def login(username: str, password: str = PASSWORD) -> dict:
    response = APIClient().post(LOGIN, {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def refresh(token: str):
    return APIClient().post(REFRESH, {"refresh_token": token}, format="json")


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def sign(claims: dict, key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key or django_settings.INFERIA_JWT_SIGNING_KEY, algorithm=algorithm)


# --- access tokens ---------------------------------------------------------------------


def test_access_token_authorizes_me_and_org_endpoints(cast):
    tokens = login("bob")
    client = bearer(tokens["access_token"])
    assert client.get(ME).status_code == 200
    assert client.get("/api/v1/orgs/acme").status_code == 200
    # Without a token: 401 with the envelope and a Bearer challenge.
    response = APIClient().get(ME)
    assert_error(response, 401, "AUTHENTICATION_FAILED")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert_error(bearer("not-a-jwt").get(ME), 401, "AUTHENTICATION_FAILED")


def test_refresh_token_never_authorizes_an_api_call(cast):
    tokens = login("bob")
    client = bearer(tokens["refresh_token"])
    assert_error(client.get(ME), 401, "AUTHENTICATION_FAILED")
    assert_error(client.get("/api/v1/orgs/acme"), 401, "AUTHENTICATION_FAILED")
    # Same in the X-API-Key header.
    other = APIClient()
    other.credentials(HTTP_X_API_KEY=tokens["refresh_token"])
    assert_error(other.get(ME), 401, "AUTHENTICATION_FAILED")
    # The access token of the same login works (the refusal is about the type).
    assert bearer(tokens["access_token"]).get(ME).status_code == 200


def test_access_token_never_refreshes(cast):
    tokens = login("bob")
    assert_error(refresh(tokens["access_token"]), 401, "AUTHENTICATION_FAILED")
    assert RefreshTokenRecord.objects.filter(user=cast.bob).count() == 1
    assert refresh(tokens["refresh_token"]).status_code == 200


def test_re_signed_copy_of_a_real_token_is_accepted(cast):
    # The control for the forgery tests below: same claims, right key, works.
    claims = claims_of(login("bob")["access_token"])
    assert bearer(sign(claims)).get(ME).status_code == 200


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(
            lambda c: sign(c, key=django_settings.SECRET_KEY), id="signed-with-SECRET_KEY"
        ),
        pytest.param(
            lambda c: sign(c, key="some-other-key-of-enough-length-0123456789"), id="unknown-key"
        ),
        pytest.param(lambda c: sign({**c, "iss": "someone-else"}), id="wrong-issuer"),
        pytest.param(lambda c: sign({k: v for k, v in c.items() if k != "iss"}), id="no-issuer"),
        pytest.param(lambda c: sign({**c, "aud": "another-api"}), id="wrong-audience"),
        pytest.param(lambda c: sign({k: v for k, v in c.items() if k != "aud"}), id="no-audience"),
        pytest.param(lambda c: sign({**c, "typ": "refresh"}), id="refresh-type"),
        pytest.param(lambda c: sign({k: v for k, v in c.items() if k != "typ"}), id="no-type"),
        pytest.param(lambda c: sign({**c, "ver": c["ver"] + 1}), id="other-auth-version"),
        pytest.param(lambda c: sign(c, key=None, algorithm="HS512"), id="other-algorithm"),
        pytest.param(lambda c: jwt.encode(c, None, algorithm="none"), id="alg-none"),
        pytest.param(lambda c: sign({**c, "exp": int(time.time()) - 1}), id="expired"),
    ],
)
def test_forged_or_expired_access_token_is_refused(cast, forge):
    claims = claims_of(login("bob")["access_token"])

    response = bearer(forge(claims)).get(ME)

    assert_error(response, 401, "AUTHENTICATION_FAILED")


def test_token_signed_with_secret_key_cannot_refresh_either(cast):
    claims = claims_of(login("bob")["refresh_token"])
    assert_error(
        refresh(sign(claims, key=django_settings.SECRET_KEY)), 401, "AUTHENTICATION_FAILED"
    )
    assert_error(refresh(sign({**claims, "aud": "another-api"})), 401, "AUTHENTICATION_FAILED")
    assert_error(
        refresh(sign({**claims, "exp": int(time.time()) - 1})), 401, "AUTHENTICATION_FAILED"
    )
    # Untouched, the same token still refreshes.
    assert refresh(sign(claims)).status_code == 200


def test_signing_key_is_not_the_secret_key():
    assert django_settings.INFERIA_JWT_SIGNING_KEY
    assert django_settings.INFERIA_JWT_SIGNING_KEY != django_settings.SECRET_KEY
    assert django_settings.SIMPLE_JWT["SIGNING_KEY"] == django_settings.INFERIA_JWT_SIGNING_KEY


# --- refresh: rotation and reuse detection -----------------------------------------------


def test_refresh_returns_a_new_pair_and_the_old_refresh_token_dies(cast):
    first = login("bob")

    response = refresh(first["refresh_token"])

    assert response.status_code == 200, response.content
    assert "no-store" in response["Cache-Control"]
    second = response.json()
    assert second["token_type"] == "Bearer"
    assert second["user"]["username"] == "bob"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert bearer(second["access_token"]).get(ME).status_code == 200
    old = RefreshTokenRecord.objects.get(jti=claims_of(first["refresh_token"])["jti"])
    new = RefreshTokenRecord.objects.get(jti=claims_of(second["refresh_token"])["jti"])
    assert old.used_at is not None
    assert new.family == old.family and new.used_at is None and new.revoked_at is None

    assert_error(refresh(first["refresh_token"]), 401, "AUTHENTICATION_FAILED")


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(cast):
    first = login("bob")
    second = refresh(first["refresh_token"]).json()
    third = refresh(second["refresh_token"]).json()
    other_login = login("bob")

    # An attacker (or a confused client) replays the first, already rotated token.
    assert_error(refresh(first["refresh_token"]), 401, "AUTHENTICATION_FAILED")

    # The newest token of that family dies too ...
    assert_error(refresh(third["refresh_token"]), 401, "AUTHENTICATION_FAILED")
    family = RefreshTokenRecord.objects.get(jti=claims_of(first["refresh_token"])["jti"]).family
    assert RefreshTokenRecord.objects.filter(family=family).count() == 3
    assert not RefreshTokenRecord.objects.filter(family=family, revoked_at__isnull=True).exists()
    # ... but another login of the same user is a separate family and lives on.
    assert refresh(other_login["refresh_token"]).status_code == 200
    reuse = AuditRecord.objects.get(action="auth:refresh_reuse")
    assert reuse.outcome == "denied" and reuse.actor_user == cast.bob and reuse.status_code == 401


def test_refresh_input_errors(cast):
    assert_error(APIClient().post(REFRESH, {}, format="json"), 400, "VALIDATION_ERROR")
    assert_error(refresh("garbage"), 401, "AUTHENTICATION_FAILED")


# --- logout ----------------------------------------------------------------------------------


def test_logout_kills_the_refresh_token(cast):
    tokens = login("bob")
    rotated = refresh(tokens["refresh_token"]).json()

    response = APIClient().post(LOGOUT, {"refresh_token": rotated["refresh_token"]}, format="json")

    assert response.status_code == 204, response.content
    assert_error(refresh(rotated["refresh_token"]), 401, "AUTHENTICATION_FAILED")
    assert not RefreshTokenRecord.objects.filter(user=cast.bob, revoked_at__isnull=True).exists()
    logout = AuditRecord.objects.get(action="auth:logout")
    assert logout.outcome == "success" and logout.actor_user == cast.bob


def test_logout_of_one_session_leaves_the_others(cast):
    phone, laptop = login("bob"), login("bob")
    assert (
        APIClient()
        .post(LOGOUT, {"refresh_token": phone["refresh_token"]}, format="json")
        .status_code
        == 204
    )
    assert_error(refresh(phone["refresh_token"]), 401, "AUTHENTICATION_FAILED")
    assert refresh(laptop["refresh_token"]).status_code == 200


def test_logout_refuses_bad_tokens(cast):
    tokens = login("bob")
    client = APIClient()
    assert_error(client.post(LOGOUT, {}, format="json"), 400, "VALIDATION_ERROR")
    assert_error(
        client.post(LOGOUT, {"refresh_token": "garbage"}, format="json"),
        401,
        "AUTHENTICATION_FAILED",
    )
    response = client.post(LOGOUT, {"refresh_token": tokens["access_token"]}, format="json")
    assert_error(response, 401, "AUTHENTICATION_FAILED")
    # Nothing was revoked by the refused calls.
    assert refresh(tokens["refresh_token"]).status_code == 200


# --- tokens die at once -----------------------------------------------------------------------


def test_deactivated_user_loses_every_token_at_once(cast):
    first, second = login("bob"), login("bob")
    assert bearer(first["access_token"]).get(ME).status_code == 200

    user_deactivate(user=cast.bob)

    for tokens in (first, second):
        assert_error(bearer(tokens["access_token"]).get(ME), 401, "AUTHENTICATION_FAILED")
        assert_error(
            bearer(tokens["access_token"]).get("/api/v1/orgs/acme"), 401, "AUTHENTICATION_FAILED"
        )
        assert_error(refresh(tokens["refresh_token"]), 401, "AUTHENTICATION_FAILED")
    assert not RefreshTokenRecord.objects.filter(user=cast.bob, revoked_at__isnull=True).exists()
    response = APIClient().post(LOGIN, {"username": "bob", "password": PASSWORD}, format="json")
    assert (
        assert_error(response, 401, "AUTHENTICATION_FAILED")["message"]
        == "Invalid username or password"
    )
    record = AuditRecord.objects.get(action="auth:user_deactivate")
    assert record.target_id == str(cast.bob.pk)
    # Other users are untouched.
    assert bearer(login("vera")["access_token"]).get(ME).status_code == 200


def test_removed_member_gets_404_on_the_org_at_once(cast, alice_client, bob_client):
    assert bob_client.get("/api/v1/orgs/acme").status_code == 200
    membership = Membership.all_orgs.get(org=cast.acme, user=cast.bob)

    response = alice_client.delete(f"/api/v1/orgs/acme/members/{membership.pk}")

    assert response.status_code == 204, response.content
    assert_error(bob_client.get("/api/v1/orgs/acme"), 404, "NOT_FOUND")
    assert_error(bob_client.get("/api/v1/orgs/acme/members"), 404, "NOT_FOUND")
    # Same answer as an org that does not exist: nothing revealed.
    assert_error(bob_client.get("/api/v1/orgs/no-such-org"), 404, "NOT_FOUND")
    # The account itself still works; it just has no membership there.
    me = bob_client.get(ME)
    assert me.status_code == 200
    assert me.json()["memberships"] == []
    assert not Membership.all_orgs.filter(org=cast.acme, user=cast.bob).exists()
    assert (
        AuditRecord.objects.filter(
            action="member:delete", org=cast.acme, actor_user=cast.alice
        ).count()
        == 1
    )
