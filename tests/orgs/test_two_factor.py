"""TOTP 2FA through the API: setup, confirm, recovery codes, login with a code,
no replay, lockout after wrong codes, disable, regenerate recovery codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from django.db import connection
from rest_framework.test import APIClient

from audit.models import AuditRecord
from inferia import clock
from inferia.crypto import DecryptionError
from orgs.models import RecoveryCode, RefreshTokenRecord, TOTPDevice
from tests.conftest import (
    PASSWORD,
    assert_error,
    code_now,
    enable_totp,
    to_step_start,
    wrong_code,
)

SETUP = "/api/v1/auth/2fa/setup"
CONFIRM = "/api/v1/auth/2fa/confirm"
DISABLE = "/api/v1/auth/2fa/disable"
RECOVERY = "/api/v1/auth/2fa/recovery-codes"


def rfc6238(secret_b32: str, at: float, step: int = 30, digits: int = 6) -> str:
    """An authenticator app's code, written from RFC 6238 (independent of the product)."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, int(at // step).to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def test_rfc6238_helper_matches_the_rfc_test_vector():
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert rfc6238(secret, 59, digits=8) == "94287082"
    assert rfc6238(secret, 1111111109, digits=8) == "07081804"


def login(username: str, otp_code: str | None = None, password: str = PASSWORD):
    data = {"username": username, "password": password}
    if otp_code is not None:
        data["otp_code"] = otp_code
    return APIClient().post("/api/v1/auth/login", data, format="json")


def raw_rows(table: str) -> str:
    """Every column of every row, as stored (bypassing the ORM)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
        return repr(cursor.fetchall())


# --- setup --------------------------------------------------------------------------------


def test_setup_returns_an_authenticator_compatible_uri_and_svg_qr(cast, bob_client):
    response = bob_client.post(SETUP)

    assert response.status_code == 200, response.content
    assert "no-store" in response["Cache-Control"]
    body = response.json()
    assert set(body) == {"otpauth_uri", "qr_svg"}
    uri = urlsplit(body["otpauth_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert unquote(uri.path) == "/Inferia:bob"
    query = {key: values[0] for key, values in parse_qs(uri.query).items()}
    assert query["issuer"] == "Inferia"
    assert query["algorithm"] == "SHA1"
    assert query["digits"] == "6"
    assert query["period"] == "30"
    svg = body["qr_svg"].strip()
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<script" not in svg.lower()
    device = TOTPDevice.objects.get(user=cast.bob)
    assert device.confirmed is False
    assert (
        base64.b32decode(query["secret"] + "=" * (-len(query["secret"]) % 8))
        == device.seed_plaintext()
    )
    assert len(device.seed_plaintext()) >= 20  # 160 bits, as RFC 4226 recommends
    record = AuditRecord.objects.get(action="auth:2fa_setup")
    assert record.actor_user == cast.bob and record.outcome == "success"
    assert query["secret"] not in str(record.data)
    # Not enabled until confirmed: login still needs no code.
    assert login("bob").status_code == 200


def test_a_code_computed_by_an_authenticator_app_confirms(cast, bob_client):
    secret = parse_qs(urlsplit(bob_client.post(SETUP).json()["otpauth_uri"]).query)["secret"][0]

    response = bob_client.post(CONFIRM, {"otp_code": rfc6238(secret, clock.time())}, format="json")

    assert response.status_code == 200, response.content
    assert TOTPDevice.objects.get(user=cast.bob).confirmed is True


def test_seed_is_encrypted_at_rest(cast, bob_client):
    bob_client.post(SETUP)
    device = TOTPDevice.objects.get(user=cast.bob)
    seed = device.seed_plaintext()
    b32 = base64.b32encode(seed).decode()

    stored = raw_rows(TOTPDevice._meta.db_table)

    for form in (
        seed.hex(),
        seed.hex().upper(),
        b32,
        b32.rstrip("="),
        b32.lower().rstrip("="),
        base64.b64encode(seed).decode().rstrip("="),
        base64.urlsafe_b64encode(seed).decode().rstrip("="),
        repr(seed),
    ):
        assert form not in stored, form
    assert device.encrypted_seed and seed.hex() not in device.encrypted_seed


def test_an_encrypted_seed_moved_to_another_device_row_does_not_decrypt(
    cast, bob_client, vera_client
):
    bob_client.post(SETUP)
    vera_client.post(SETUP)
    bob_device = TOTPDevice.objects.get(user=cast.bob)
    vera_device = TOTPDevice.objects.get(user=cast.vera)
    bob_code = code_now(bob_device)

    TOTPDevice.objects.filter(pk=vera_device.pk).update(encrypted_seed=bob_device.encrypted_seed)
    vera_device.refresh_from_db()

    with pytest.raises(DecryptionError):
        vera_device.seed_plaintext()
    # Through the API the moved seed cannot be used either: fail closed, no detail leaked.
    response = vera_client.post(CONFIRM, {"otp_code": bob_code}, format="json")
    error = assert_error(response, 500, "INTERNAL_ERROR")
    assert bob_device.encrypted_seed not in error["message"]
    vera_device.refresh_from_db()
    assert vera_device.confirmed is False
    # The original row still decrypts.
    assert bob_client.post(CONFIRM, {"otp_code": bob_code}, format="json").status_code == 200


def test_setup_again_replaces_the_pending_device(cast, bob_client):
    bob_client.post(SETUP)
    first = TOTPDevice.objects.get(user=cast.bob)

    assert bob_client.post(SETUP).status_code == 200

    second = TOTPDevice.objects.get(user=cast.bob)
    assert second.pk != first.pk
    assert second.seed_plaintext() != first.seed_plaintext()
    assert not TOTPDevice.objects.filter(pk=first.pk).exists()
    assert (
        bob_client.post(CONFIRM, {"otp_code": code_now(second)}, format="json").status_code == 200
    )


def test_setup_when_already_enabled_is_a_conflict(cast, bob_client):
    device, _codes = enable_totp(bob_client, cast.bob)

    assert_error(bob_client.post(SETUP), 409, "CONFLICT")

    assert list(TOTPDevice.objects.filter(user=cast.bob)) == [device]
    assert TOTPDevice.objects.get(pk=device.pk).confirmed is True


def test_setup_needs_authentication(cast, anon_client):
    assert_error(anon_client.post(SETUP), 401, "AUTHENTICATION_FAILED")
    assert not TOTPDevice.objects.exists()


# --- confirm and recovery codes ---------------------------------------------------------------


def test_confirm_returns_ten_recovery_codes_once(cast, bob_client):
    bob_client.post(SETUP)
    device = TOTPDevice.objects.get(user=cast.bob)

    response = bob_client.post(CONFIRM, {"otp_code": code_now(device)}, format="json")

    assert response.status_code == 200, response.content
    assert "no-store" in response["Cache-Control"]
    codes = response.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(code.replace("-", "")) >= 10 for code in codes)
    device.refresh_from_db()
    assert device.confirmed is True
    assert RecoveryCode.objects.filter(user=cast.bob, used_at__isnull=True).count() == 10
    record = AuditRecord.objects.get(action="auth:2fa_enable")
    assert record.outcome == "success" and record.actor_user == cast.bob
    assert not any(code in str(record.data) for code in codes)
    # Shown once: nothing returns them again.
    assert_error(
        bob_client.post(CONFIRM, {"otp_code": code_now(device)}, format="json"), 409, "CONFLICT"
    )
    me = bob_client.get("/api/v1/auth/me")
    assert me.json()["user"]["two_factor_enabled"] is True
    assert not any(code in me.content.decode() for code in codes)


def test_recovery_codes_are_stored_hashed_only(cast, bob_client):
    _device, codes = enable_totp(bob_client, cast.bob)

    stored = raw_rows(RecoveryCode._meta.db_table)

    for code in codes:
        assert code not in stored
        assert code.replace("-", "") not in stored
        assert code.upper() not in stored


def test_confirm_with_a_wrong_code_keeps_2fa_off(cast, bob_client):
    bob_client.post(SETUP)
    device = TOTPDevice.objects.get(user=cast.bob)

    response = bob_client.post(CONFIRM, {"otp_code": wrong_code(device)}, format="json")

    assert_error(response, 401, "AUTHENTICATION_FAILED")
    device.refresh_from_db()
    assert device.confirmed is False
    assert not RecoveryCode.objects.exists()
    assert AuditRecord.objects.get(action="auth:2fa_enable").outcome == "failure"
    assert login("bob").status_code == 200


def test_confirm_input_errors(cast, bob_client):
    assert_error(bob_client.post(CONFIRM, {"otp_code": "123456"}, format="json"), 409, "CONFLICT")
    bob_client.post(SETUP)
    error = assert_error(bob_client.post(CONFIRM, {}, format="json"), 400, "VALIDATION_ERROR")
    assert "otp_code" in error["details"]
    assert TOTPDevice.objects.get(user=cast.bob).confirmed is False


# --- logging in with 2FA ------------------------------------------------------------------


def test_login_requires_the_code_once_2fa_is_on(cast, bob_client, clock_shift):
    device, _codes = enable_totp(bob_client, cast.bob)
    RefreshTokenRecord.objects.all().delete()

    error = assert_error(login("bob"), 401, "OTP_REQUIRED")
    assert error["message"]
    assert_error(login("bob", otp_code=""), 401, "OTP_REQUIRED")
    otp_required = AuditRecord.objects.filter(
        action="auth:login", outcome="denied", actor_user=cast.bob
    )
    assert [r.data["reason"] for r in otp_required] == ["otp_required", "otp_required"]
    assert set(otp_required.values_list("status_code", flat=True)) == {401}
    assert_error(login("bob", otp_code=wrong_code(device)), 401, "AUTHENTICATION_FAILED")
    assert_error(login("bob", otp_code="not-a-code"), 401, "AUTHENTICATION_FAILED")
    # A wrong password is still the plain credentials error, code or not.
    wrong_password = login("bob", otp_code=code_now(device), password="wrong-password")
    assert (
        assert_error(wrong_password, 401, "AUTHENTICATION_FAILED")["message"]
        == "Invalid username or password"
    )
    assert not RefreshTokenRecord.objects.exists()
    failures = AuditRecord.objects.filter(action="auth:login", outcome="failure", actor_label="bob")
    assert sorted(r.data["reason"] for r in failures) == ["bad_credentials", "bad_otp", "bad_otp"]

    clock_shift(30)
    response = login("bob", otp_code=code_now(device))

    assert response.status_code == 200, response.content
    assert response.json()["user"]["two_factor_enabled"] is True
    assert RefreshTokenRecord.objects.filter(user=cast.bob).count() == 1


def test_a_code_is_accepted_only_once(cast, bob_client, clock_shift):
    to_step_start()
    device, _codes = enable_totp(bob_client, cast.bob)
    # The code that confirmed the device cannot log in within the same step.
    assert_error(login("bob", otp_code=code_now(device)), 401, "AUTHENTICATION_FAILED")

    clock_shift(30)
    code = code_now(device)
    assert login("bob", otp_code=code).status_code == 200
    # Replayed in the same step: refused.
    assert_error(login("bob", otp_code=code), 401, "AUTHENTICATION_FAILED")
    # Still refused later, when it would be inside the drift window.
    clock_shift(30)
    assert_error(login("bob", otp_code=code), 401, "AUTHENTICATION_FAILED")
    # The next step's code works.
    assert login("bob", otp_code=code_now(device)).status_code == 200


def test_codes_of_the_previous_and_next_step_are_accepted(cast, bob_client, clock_shift):
    # RFC 6238 section 5.2: allow one step of clock drift either way, no more.
    to_step_start()
    device, _codes = enable_totp(bob_client, cast.bob)  # step s
    clock_shift(30)
    two_steps_old = code_now(device)  # step s+1
    clock_shift(90)
    one_step_ahead = code_now(device)  # step s+4
    clock_shift(-30)  # now step s+3

    assert_error(login("bob", otp_code=two_steps_old), 401, "AUTHENTICATION_FAILED")
    assert login("bob", otp_code=one_step_ahead).status_code == 200

    clock_shift(60)
    one_step_behind = code_now(device)  # step s+5
    clock_shift(30)  # now step s+6
    assert login("bob", otp_code=one_step_behind).status_code == 200


def test_a_recovery_code_logs_in_once(cast, bob_client):
    _device, codes = enable_totp(bob_client, cast.bob)

    response = login("bob", otp_code=codes[0])

    assert response.status_code == 200, response.content
    assert RecoveryCode.objects.filter(user=cast.bob, used_at__isnull=False).count() == 1
    assert_error(login("bob", otp_code=codes[0]), 401, "AUTHENTICATION_FAILED")
    # Another one works, also typed in capitals and without dashes.
    assert login("bob", otp_code=codes[1].upper().replace("-", "")).status_code == 200
    assert RecoveryCode.objects.filter(user=cast.bob, used_at__isnull=True).count() == 8


def test_another_users_recovery_code_does_not_work(cast, bob_client, vera_client):
    _device, bob_codes = enable_totp(bob_client, cast.bob)
    enable_totp(vera_client, cast.vera)
    assert_error(login("vera", otp_code=bob_codes[0]), 401, "AUTHENTICATION_FAILED")
    assert not RecoveryCode.objects.filter(used_at__isnull=False).exists()


# --- lockout --------------------------------------------------------------------------------


def test_wrong_codes_lock_the_device_even_for_the_right_code(
    cast, bob_client, settings, clock_shift
):
    settings.INFERIA_OTP_MAX_FAILURES = 3
    settings.INFERIA_OTP_LOCKOUT_SECONDS = 120
    to_step_start()
    device, codes = enable_totp(bob_client, cast.bob)
    issued = RefreshTokenRecord.objects.count()
    for _ in range(3):
        assert_error(login("bob", otp_code=wrong_code(device)), 401, "AUTHENTICATION_FAILED")
    clock_shift(30)

    response = login("bob", otp_code=code_now(device))

    assert_error(response, 429, "RATE_LIMITED")
    retry_after = int(response["Retry-After"])
    assert 60 <= retry_after <= 120
    # Recovery codes are locked out too, and nothing was consumed.
    assert_error(login("bob", otp_code=codes[0]), 429, "RATE_LIMITED")
    assert not RecoveryCode.objects.filter(used_at__isnull=False).exists()
    assert RefreshTokenRecord.objects.count() == issued
    denied = AuditRecord.objects.filter(action="auth:login", outcome="denied", status_code=429)
    assert [r.data["reason"] for r in denied.filter(actor_user=cast.bob)] == [
        "otp_locked",
        "otp_locked",
    ]

    clock_shift(retry_after)
    response = login("bob", otp_code=code_now(device))
    assert response.status_code == 200, response.content
    device.refresh_from_db()
    assert device.throttling_failure_count == 0


def test_default_lockout_is_five_wrong_codes_for_five_minutes(
    cast, bob_client, settings, clock_shift
):
    assert settings.INFERIA_OTP_MAX_FAILURES == 5
    assert settings.INFERIA_OTP_LOCKOUT_SECONDS == 300
    to_step_start()
    device, _codes = enable_totp(bob_client, cast.bob)
    # Through /2fa/disable, which the login throttle does not cover.
    for _ in range(5):
        response = bob_client.post(DISABLE, {"otp_code": wrong_code(device)}, format="json")
        assert_error(response, 401, "AUTHENTICATION_FAILED")
    clock_shift(30)

    response = bob_client.post(DISABLE, {"otp_code": code_now(device)}, format="json")

    assert_error(response, 429, "RATE_LIMITED")
    assert 240 <= int(response["Retry-After"]) <= 300
    assert TOTPDevice.objects.filter(user=cast.bob, confirmed=True).exists()
    locked = AuditRecord.objects.get(action="auth:2fa_disable", outcome="denied")
    assert locked.actor_user == cast.bob and locked.status_code == 429
    assert AuditRecord.objects.filter(action="auth:2fa_disable", outcome="failure").count() == 5
    clock_shift(300)
    assert (
        bob_client.post(DISABLE, {"otp_code": code_now(device)}, format="json").status_code == 204
    )


def test_four_wrong_codes_do_not_lock(cast, bob_client, clock_shift):
    to_step_start()
    device, _codes = enable_totp(bob_client, cast.bob)
    for _ in range(4):
        response = bob_client.post(RECOVERY, {"otp_code": wrong_code(device)}, format="json")
        assert_error(response, 401, "AUTHENTICATION_FAILED")
    clock_shift(30)
    assert (
        bob_client.post(RECOVERY, {"otp_code": code_now(device)}, format="json").status_code == 200
    )


# --- disable -----------------------------------------------------------------------------------


def test_disable_needs_a_current_code(cast, bob_client, clock_shift):
    to_step_start()
    device, codes = enable_totp(bob_client, cast.bob)

    error = assert_error(bob_client.post(DISABLE, {}, format="json"), 400, "VALIDATION_ERROR")
    assert "otp_code" in error["details"]
    assert_error(
        bob_client.post(DISABLE, {"otp_code": wrong_code(device)}, format="json"),
        401,
        "AUTHENTICATION_FAILED",
    )
    # A recovery code is not enough to turn 2FA off.
    assert_error(
        bob_client.post(DISABLE, {"otp_code": codes[0]}, format="json"),
        401,
        "AUTHENTICATION_FAILED",
    )
    # Nor is the code that was just used to confirm (no replay).
    assert_error(
        bob_client.post(DISABLE, {"otp_code": code_now(device)}, format="json"),
        401,
        "AUTHENTICATION_FAILED",
    )
    assert TOTPDevice.objects.filter(user=cast.bob, confirmed=True).count() == 1
    assert AuditRecord.objects.filter(action="auth:2fa_disable", outcome="failure").count() == 3

    clock_shift(30)
    response = bob_client.post(DISABLE, {"otp_code": code_now(device)}, format="json")

    assert response.status_code == 204, response.content
    assert not TOTPDevice.objects.filter(user=cast.bob).exists()
    assert not RecoveryCode.objects.filter(user=cast.bob).exists()
    assert AuditRecord.objects.filter(action="auth:2fa_disable", outcome="success").count() == 1
    assert login("bob").status_code == 200
    assert bob_client.get("/api/v1/auth/me").json()["user"]["two_factor_enabled"] is False


def test_disable_without_2fa_is_a_conflict(cast, bob_client, anon_client):
    assert_error(bob_client.post(DISABLE, {"otp_code": "123456"}, format="json"), 409, "CONFLICT")
    assert_error(
        anon_client.post(DISABLE, {"otp_code": "123456"}, format="json"),
        401,
        "AUTHENTICATION_FAILED",
    )


# --- regenerate recovery codes -----------------------------------------------------------------


def test_regenerating_recovery_codes_replaces_them_all(cast, bob_client, clock_shift):
    to_step_start()
    device, old_codes = enable_totp(bob_client, cast.bob)
    login("bob", otp_code=old_codes[0])  # one used, nine left
    clock_shift(30)

    response = bob_client.post(RECOVERY, {"otp_code": code_now(device)}, format="json")

    assert response.status_code == 200, response.content
    assert "no-store" in response["Cache-Control"]
    new_codes = response.json()["recovery_codes"]
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    assert RecoveryCode.objects.filter(user=cast.bob).count() == 10
    assert RecoveryCode.objects.filter(user=cast.bob, used_at__isnull=True).count() == 10
    assert_error(login("bob", otp_code=old_codes[1]), 401, "AUTHENTICATION_FAILED")
    assert login("bob", otp_code=new_codes[0]).status_code == 200
    record = AuditRecord.objects.get(action="auth:2fa_recovery_codes", outcome="success")
    assert record.actor_user == cast.bob


def test_regenerating_needs_a_current_totp_code(cast, bob_client):
    to_step_start()
    device, codes = enable_totp(bob_client, cast.bob)

    assert_error(
        bob_client.post(RECOVERY, {"otp_code": wrong_code(device)}, format="json"),
        401,
        "AUTHENTICATION_FAILED",
    )
    assert_error(
        bob_client.post(RECOVERY, {"otp_code": codes[0]}, format="json"),
        401,
        "AUTHENTICATION_FAILED",
    )
    assert_error(bob_client.post(RECOVERY, {}, format="json"), 400, "VALIDATION_ERROR")

    # The old codes still stand.
    assert RecoveryCode.objects.filter(user=cast.bob, used_at__isnull=True).count() == 10
    assert login("bob", otp_code=codes[0]).status_code == 200


def test_regenerating_without_2fa_is_a_conflict(cast, bob_client):
    assert_error(bob_client.post(RECOVERY, {"otp_code": "123456"}, format="json"), 409, "CONFLICT")
    assert not RecoveryCode.objects.exists()
