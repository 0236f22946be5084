"""The OAuth 2.0 device authorization grant (RFC 8628) from outside: a client asks for
codes, a signed-in person approves on /device, the client polls for its tokens.

Every answer of the token endpoint in the RFC's shape (pending, slow_down, denied,
expired, reuse, wrong client), user-code guessing throttled, the approval bound to the
person who gave it, the org's 2FA policy at approval, and the tokens' revocation.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditRecord
from inferia import clock
from orgs.models import DeviceAuthorization, User
from orgs.services import auth, device
from tests.conftest import PASSWORD, assert_error, enable_totp

CODE_URL = "/api/v1/auth/device/code"
TOKEN_URL = "/api/v1/auth/device/token"
CLIENT_ID = "inferia-cli"


def _form(client: APIClient, url: str, data: dict, **extra):
    return client.post(
        url, urlencode(data, doseq=True), content_type="application/x-www-form-urlencoded", **extra
    )


def start(**params) -> dict:
    params.setdefault("client_id", CLIENT_ID)
    response = _form(APIClient(), CODE_URL, params)
    assert response.status_code == 200, response.content
    return response.json()


def poll(device_code: str, client_id: str = CLIENT_ID):
    return _form(
        APIClient(),
        TOKEN_URL,
        {"grant_type": device.GRANT_TYPE, "device_code": device_code, "client_id": client_id},
    )


def assert_oauth_error(response, error: str, status: int = 400) -> dict:
    """RFC 6749 section 5.2: ``{"error": code, "error_description": text}``, never cached."""
    assert response.status_code == status, (response.status_code, response.content[:300])
    body = response.json()
    assert body["error"] == error, body
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert set(body) <= {"error", "error_description", "interval"}
    assert "no-store" in response["Cache-Control"]
    return body


def page_for(user: User) -> Client:
    page = Client()
    page.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return page


def decide(page: Client, user_code: str, decision: str = "approve"):
    return page.post("/device", {"step": "decide", "user_code": user_code, "decision": decision})


def audit_actions(target: DeviceAuthorization) -> list[tuple[str, str, str]]:
    return [
        (r.action, r.outcome, r.actor_label)
        for r in AuditRecord.objects.filter(target_id=str(target.pk)).order_by("created_at", "id")
    ]


def row(started: dict) -> DeviceAuthorization:
    code = device.normalize_user_code(started["user_code"])
    assert code is not None
    from orgs.models import token_digest

    return DeviceAuthorization.objects.get(user_code_digest=token_digest(code))


# --- asking for codes --------------------------------------------------------------------


def test_code_request_answers_the_rfc_fields_and_stores_digests_only(db):
    response = _form(APIClient(), CODE_URL, {"client_id": CLIENT_ID})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.json()
    assert set(body) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert len(body["device_code"]) >= 43  # 32 random bytes
    user_code = body["user_code"]
    assert len(user_code) == 9 and user_code[4] == "-"
    assert set(user_code.replace("-", "")) <= set(device.USER_CODE_ALPHABET)
    assert body["verification_uri"] == "http://testserver/device"
    assert body["verification_uri_complete"] == f"http://testserver/device?user_code={user_code}"
    assert (body["expires_in"], body["interval"]) == (600, 5)

    stored = row(body)
    columns = " ".join(str(getattr(stored, f.attname)) for f in stored._meta.fields)
    assert body["device_code"] not in columns
    assert user_code.replace("-", "") not in columns and user_code not in columns
    assert stored.status == "pending" and stored.user is None
    [record] = AuditRecord.objects.filter(action="auth:device_code")
    assert (record.outcome, record.actor_label, record.target_id) == (
        "success",
        "client:inferia-cli",
        str(stored.pk),
    )


def test_unknown_client_is_invalid_client_and_audited(db):
    response = _form(APIClient(), CODE_URL, {"client_id": "evil-tool"})
    assert_oauth_error(response, "invalid_client", 401)
    assert not DeviceAuthorization.objects.exists()
    assert AuditRecord.objects.get(action="auth:device_code").outcome == "failure"


def test_code_request_takes_json_ignores_unknown_parameters_and_refuses_repeats(db):
    response = APIClient().post(
        CODE_URL, {"client_id": CLIENT_ID, "scope": "everything", "x": "1"}, format="json"
    )
    assert response.status_code == 200, response.content
    repeated = _form(APIClient(), CODE_URL, {"client_id": [CLIENT_ID, CLIENT_ID]})
    assert_oauth_error(repeated, "invalid_request")
    assert_oauth_error(_form(APIClient(), CODE_URL, {}), "invalid_request")
    assert_oauth_error(
        _form(APIClient(), CODE_URL, {"client_id": CLIENT_ID, "org": "No!"}), "invalid_request"
    )


def test_code_requests_are_limited_per_address(db, settings):
    settings.INFERIA_DEVICE_MAX_CODES_PER_IP = 3
    for _ in range(3):
        start()
    response = _form(APIClient(), CODE_URL, {"client_id": CLIENT_ID})
    assert_error(response, 429, "RATE_LIMITED")
    assert int(response["Retry-After"]) > 0
    assert DeviceAuthorization.objects.count() == 3


# --- polling: every answer ---------------------------------------------------------------


def test_pending_then_slow_down_when_polled_too_fast(db):
    started = start()
    assert_oauth_error(poll(started["device_code"]), "authorization_pending")
    # Sooner than the interval: slow_down, and the interval grows by 5 s for good.
    body = assert_oauth_error(poll(started["device_code"]), "slow_down")
    assert body["interval"] == 10
    clock.advance(6)  # enough for the old interval, not the new one
    assert assert_oauth_error(poll(started["device_code"]), "slow_down")["interval"] == 15
    clock.advance(15)
    assert_oauth_error(poll(started["device_code"]), "authorization_pending")
    assert row(started).interval_seconds == 15
    # Polling is not a decision: only the code request is in the audit log so far.
    assert [a for a, _o, _l in audit_actions(row(started))] == ["auth:device_code"]


def test_approved_grant_yields_the_approvers_pair_exactly_once(cast):
    started = start()
    response = decide(page_for(cast.bob), started["user_code"])
    assert response.status_code == 200
    assert b"Device connected" in response.content

    answer = poll(started["device_code"])
    assert answer.status_code == 200, answer.content
    assert "no-store" in answer["Cache-Control"]
    tokens = answer.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["user"]["username"] == "bob"
    assert 0 < tokens["expires_in"] <= settings.INFERIA_ACCESS_TOKEN_SECONDS
    me = APIClient()
    me.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert me.get("/api/v1/auth/me").json()["user"]["username"] == "bob"

    grant = row(started)
    assert (grant.status, grant.user, grant.family is not None) == ("consumed", cast.bob, True)
    assert audit_actions(grant) == [
        ("auth:device_code", "success", "client:inferia-cli"),
        ("auth:device_approve", "success", "bob"),
        ("auth:device_token", "success", "bob"),
    ]

    # Single use: presenting the code again is invalid_grant, and ends the login it started.
    clock.advance(10)
    assert_oauth_error(poll(started["device_code"]), "invalid_grant")
    refreshed = APIClient().post(
        "/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json"
    )
    assert_error(refreshed, 401, "AUTHENTICATION_FAILED")
    assert me.get("/api/v1/auth/me").status_code == 401
    reuse = AuditRecord.objects.filter(action="auth:device_token", outcome="denied").get()
    assert (reuse.actor_user, reuse.data["reason"]) == (cast.bob, "reused")


def test_denied_grant_answers_access_denied(cast):
    started = start()
    response = decide(page_for(cast.bob), started["user_code"], "deny")
    assert response.status_code == 200 and b"Sign-in denied" in response.content
    assert_oauth_error(poll(started["device_code"]), "access_denied")
    assert row(started).status == "denied"
    actions = audit_actions(row(started))
    assert ("auth:device_deny", "success", "bob") in actions
    assert ("auth:device_token", "failure", "bob") in actions


def test_expired_code_answers_expired_token_and_cannot_be_approved(cast):
    started = start()
    clock.advance(settings.INFERIA_DEVICE_CODE_SECONDS + 1)
    assert_oauth_error(poll(started["device_code"]), "expired_token")
    response = decide(page_for(cast.bob), started["user_code"])
    assert response.status_code == 404
    assert row(started).status == "pending" and row(started).user is None


def test_approved_but_expired_before_the_poll_is_expired_token(cast):
    started = start()
    decide(page_for(cast.bob), started["user_code"])
    clock.advance(settings.INFERIA_DEVICE_CODE_SECONDS + 1)
    assert_oauth_error(poll(started["device_code"]), "expired_token")


def test_another_client_cannot_exchange_the_code(cast, settings):
    settings.INFERIA_DEVICE_CLIENTS = {CLIENT_ID: "Inferia CLI", "other-tool": "Other tool"}
    started = start()
    decide(page_for(cast.bob), started["user_code"])
    assert_oauth_error(poll(started["device_code"], "other-tool"), "invalid_grant")
    assert_oauth_error(poll(started["device_code"], "no-such-client"), "invalid_client", 401)
    # The rightful client still gets its tokens.
    assert poll(started["device_code"]).status_code == 200
    reasons = {
        r.data["reason"]
        for r in AuditRecord.objects.filter(action="auth:device_token").exclude(outcome="success")
    }
    assert {"wrong_client", "unknown_client"} <= reasons


def test_malformed_polls(db):
    started = start()
    body = {"grant_type": "password", "device_code": started["device_code"], "client_id": CLIENT_ID}
    assert_oauth_error(_form(APIClient(), TOKEN_URL, body), "unsupported_grant_type")
    body = {"grant_type": device.GRANT_TYPE, "client_id": CLIENT_ID}
    assert_oauth_error(_form(APIClient(), TOKEN_URL, body), "invalid_request")
    assert_oauth_error(poll("not-a-device-code"), "invalid_grant")
    assert_oauth_error(
        APIClient().post(TOKEN_URL, "{not json", content_type="application/json"),
        "invalid_request",
    )


# --- the /device page -----------------------------------------------------------------------


def test_page_needs_a_signed_in_person_and_keeps_the_code_through_login(db):
    response = Client().get("/device?user_code=BCDF-GHJK")
    assert response.status_code == 302
    assert response["Location"] == "/login?" + urlencode({"next": "/device?user_code=BCDF-GHJK"})


def test_page_shows_the_client_before_anything_is_granted(cast):
    started = start(org="acme")
    page = page_for(cast.bob)
    prefilled = page.get(f"/device?user_code={started['user_code']}")
    assert started["user_code"].encode() in prefilled.content
    confirm = page.post("/device", {"step": "lookup", "user_code": started["user_code"].lower()})
    assert confirm.status_code == 200
    assert b"Inferia CLI" in confirm.content and b"acme" in confirm.content
    assert started["user_code"].encode() in confirm.content
    assert row(started).status == "pending"  # looking is not approving


def test_decisions_need_the_csrf_token(cast):
    started = start()
    page = Client(enforce_csrf_checks=True)
    page.force_login(cast.bob, backend="django.contrib.auth.backends.ModelBackend")
    response = decide(page, started["user_code"])
    assert response.status_code == 403
    assert row(started).status == "pending"


def test_wrong_codes_are_throttled_per_person(cast, settings):
    settings.INFERIA_DEVICE_MAX_FAILURES_PER_USER = 5
    started = start()
    bob = page_for(cast.bob)
    for guess in ("BBBB-BBBB", "CCCC-CCCC", "hello", "DDDD-DDDD", "FFFF-FFFF"):
        assert decide(bob, guess).status_code == 404
    # Past the limit even the right code is refused, and nothing was approved.
    refused = decide(bob, started["user_code"])
    assert refused.status_code == 429
    assert row(started).status == "pending"
    failures = AuditRecord.objects.filter(action="auth:device_verify", actor_user=cast.bob)
    assert failures.filter(outcome="failure").count() == 5
    assert failures.filter(outcome="denied", status_code=429).count() == 1
    # Another person is not locked out by bob's guesses.
    assert decide(page_for(cast.dave), started["user_code"]).status_code == 200
    assert row(started).user == cast.dave


def test_wrong_codes_are_throttled_per_address(cast, settings):
    settings.INFERIA_DEVICE_MAX_FAILURES_PER_IP = 3
    for user in (cast.bob, cast.dave, cast.vera):
        assert decide(page_for(user), "BBBB-BBBB").status_code == 404
    assert decide(page_for(cast.alice), "BBBB-BBBB").status_code == 429


def test_an_answered_code_is_nobody_elses_to_answer(cast):
    started = start()
    assert decide(page_for(cast.bob), started["user_code"]).status_code == 200
    # Alice cannot take it over, nor deny it afterwards: the code is spent.
    assert decide(page_for(cast.alice), started["user_code"]).status_code == 404
    assert decide(page_for(cast.alice), started["user_code"], "deny").status_code == 404
    assert decide(page_for(cast.bob), started["user_code"], "deny").status_code == 404
    assert row(started).user == cast.bob and row(started).status == "approved"
    tokens = poll(started["device_code"]).json()
    assert tokens["user"]["username"] == "bob"


def test_the_named_org_must_be_the_approvers(cast):
    started = start(org="globex")
    response = decide(page_for(cast.bob), started["user_code"])
    assert response.status_code == 403
    assert b"not a member" in response.content
    assert row(started).status == "pending"
    record = AuditRecord.objects.get(action="auth:device_approve")
    assert (record.outcome, record.actor_user, record.data["reason"]) == (
        "denied",
        cast.bob,
        "not_a_member",
    )
    # Its Owner may approve it.
    assert decide(page_for(cast.charlie), started["user_code"]).status_code == 200


def test_the_orgs_2fa_policy_applies_at_approval(cast):
    cast.acme.require_2fa = True
    cast.acme.save(update_fields=["require_2fa"])
    started = start(org="acme")
    response = decide(page_for(cast.bob), started["user_code"])
    assert response.status_code == 302
    assert response["Location"].startswith("/account/2fa?")
    assert row(started).status == "pending"
    assert AuditRecord.objects.get(action="auth:device_approve").data["reason"] == "2fa_required"
    # With an authenticator bob may approve.
    from tests.conftest import client_for

    enable_totp(client_for(cast.bob), cast.bob)
    assert decide(page_for(cast.bob), started["user_code"]).status_code == 200


def test_decision_must_be_approve_or_deny(cast):
    started = start()
    response = decide(page_for(cast.bob), started["user_code"], "maybe")
    assert response.status_code == 400
    assert row(started).status == "pending"


# --- the tokens: the user's own access, and revocation --------------------------------------


def _device_tokens(user: User, **params) -> dict:
    started = start(**params)
    assert decide(page_for(user), started["user_code"]).status_code == 200
    response = poll(started["device_code"])
    assert response.status_code == 200, response.content
    return response.json()


def _bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_device_tokens_carry_the_users_permissions_never_more(cast):
    tokens = _device_tokens(cast.vera)  # a Viewer
    vera = _bearer(tokens["access_token"])
    assert vera.get("/api/v1/orgs/acme/members").status_code == 200
    assert_error(
        vera.post(
            "/api/v1/orgs/acme/api-keys",
            {"name": "k", "permissions": ["model:read"]},
            format="json",
        ),
        403,
        "PERMISSION_DENIED",
    )
    assert_error(vera.get("/api/v1/orgs/globex/members"), 404, "NOT_FOUND")


def test_refresh_rotates_and_logout_kills_the_device_login(cast):
    tokens = _device_tokens(cast.bob)
    rotated = APIClient().post(
        "/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json"
    )
    assert rotated.status_code == 200
    new = rotated.json()
    again = APIClient().post(
        "/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json"
    )
    assert_error(again, 401, "AUTHENTICATION_FAILED")  # rotation: reuse ends the login
    assert _bearer(new["access_token"]).get("/api/v1/auth/me").status_code == 401

    tokens = _device_tokens(cast.bob)
    logout = APIClient().post(
        "/api/v1/auth/logout", {"refresh_token": tokens["refresh_token"]}, format="json"
    )
    assert logout.status_code == 204
    assert _bearer(tokens["access_token"]).get("/api/v1/auth/me").status_code == 401
    refreshed = APIClient().post(
        "/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json"
    )
    assert_error(refreshed, 401, "AUTHENTICATION_FAILED")


@pytest.mark.parametrize("how", ["password_change", "deactivation"])
def test_password_change_and_deactivation_kill_the_device_login(cast, how):
    tokens = _device_tokens(cast.bob)
    if how == "password_change":
        auth.password_change(
            user=cast.bob, current_password=PASSWORD, new_password="another-long-passphrase-7"
        )
    else:
        auth.user_deactivate(user=cast.bob)
    refreshed = APIClient().post(
        "/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json"
    )
    assert_error(refreshed, 401, "AUTHENTICATION_FAILED")
    assert _bearer(tokens["access_token"]).get("/api/v1/auth/me").status_code == 401


def test_codes_and_tokens_never_reach_the_audit_log(cast):
    started = start()
    decide(page_for(cast.bob), started["user_code"])
    tokens = poll(started["device_code"]).json()
    text = " ".join(
        str((r.actor_label, r.target_id, r.data, r.user_agent)) for r in AuditRecord.objects.all()
    )
    for secret in (
        started["device_code"],
        started["user_code"],
        started["user_code"].replace("-", ""),
        tokens["access_token"],
        tokens["refresh_token"],
    ):
        assert secret not in text


def test_purge_deletes_long_expired_requests_only(db):
    old, fresh = start(), start()
    DeviceAuthorization.objects.filter(pk=row(old).pk).update(
        expires_at=clock.now() - timedelta(days=2)
    )
    assert device.device_authorization_purge() == 1
    assert DeviceAuthorization.objects.filter(pk=row(fresh).pk).exists()
