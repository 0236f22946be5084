"""Deleting an org and transferring ownership ask for a fresh TOTP code when the
user has 2FA, and for the password otherwise."""

from __future__ import annotations

import uuid

from rest_framework.test import APIClient

from audit.models import AuditRecord
from orgs.models import Membership, Organization
from tests.conftest import (
    PASSWORD,
    assert_error,
    code_now,
    enable_totp,
    to_step_start,
    wrong_code,
)

ACME = "/api/v1/orgs/acme"
TRANSFER = "/api/v1/orgs/acme/transfer-ownership"


def delete_org(client: APIClient, **data):
    return client.delete(ACME, data, format="json")


def membership(org, user) -> Membership:
    return Membership.all_orgs.select_related("role").get(org=org, user=user)


def transfer(client: APIClient, member_id, **data):
    return client.post(TRANSFER, {"member_id": str(member_id), **data}, format="json")


def acme_exists() -> bool:
    return Organization.objects.filter(slug="acme").exists()


# --- DELETE /orgs/{org} ----------------------------------------------------------------------


def test_delete_with_2fa_needs_a_fresh_code(cast, alice_client, bob_client, clock_shift):
    to_step_start()
    device, recovery_codes = enable_totp(alice_client, cast.alice)
    acme_id = cast.acme.pk

    assert_error(delete_org(alice_client), 401, "OTP_REQUIRED")
    # The password does not replace the code once 2FA is on.
    assert_error(delete_org(alice_client, password=PASSWORD), 401, "OTP_REQUIRED")
    assert_error(
        delete_org(alice_client, otp_code=wrong_code(device)), 401, "AUTHENTICATION_FAILED"
    )
    # Neither a recovery code nor the code already used this step (to confirm).
    assert_error(delete_org(alice_client, otp_code=recovery_codes[0]), 401, "AUTHENTICATION_FAILED")
    assert_error(delete_org(alice_client, otp_code=code_now(device)), 401, "AUTHENTICATION_FAILED")
    assert acme_exists()
    failures = AuditRecord.objects.filter(
        action="auth:reverify", outcome="failure", actor_user=cast.alice
    )
    assert failures.count() == 3
    missing = AuditRecord.objects.filter(
        action="auth:reverify", outcome="denied", actor_user=cast.alice
    )
    assert [r.data["reason"] for r in missing] == ["otp_required", "otp_required"]
    assert not AuditRecord.objects.filter(action="org:delete", outcome="success").exists()

    clock_shift(30)
    response = delete_org(alice_client, otp_code=code_now(device))

    assert response.status_code == 204, response.content
    assert not acme_exists()
    assert not Membership.all_orgs.filter(org_id=acme_id).exists()
    record = AuditRecord.objects.get(action="org:delete")
    assert record.outcome == "success" and record.actor_user == cast.alice
    assert record.target_id == str(acme_id) and record.data["slug"] == "acme"
    assert_error(bob_client.get(ACME), 404, "NOT_FOUND")
    assert Organization.objects.filter(slug="globex").exists()


def test_delete_without_2fa_needs_the_password(cast, alice_client):
    error = assert_error(delete_org(alice_client), 400, "VALIDATION_ERROR")
    assert error["details"]["password"]
    assert_error(delete_org(alice_client, password=""), 400, "VALIDATION_ERROR")
    assert_error(delete_org(alice_client, password="not-my-password"), 401, "AUTHENTICATION_FAILED")
    # A made-up code does not replace the password when there is no device.
    assert_error(delete_org(alice_client, otp_code="123456"), 400, "VALIDATION_ERROR")
    assert acme_exists()
    assert AuditRecord.objects.filter(action="auth:reverify", outcome="failure").count() == 1

    response = delete_org(alice_client, password=PASSWORD)

    assert response.status_code == 204, response.content
    assert not acme_exists()
    record = AuditRecord.objects.get(action="org:delete", outcome="success")
    assert record.actor_user == cast.alice
    assert PASSWORD not in str(record.data)


def test_delete_needs_org_delete_whatever_the_confirmation(
    cast, bob_client, dave_client, charlie_client
):
    # dave is an Admin: everything but org:delete and billing:manage.
    assert_error(delete_org(dave_client, password=PASSWORD), 403, "PERMISSION_DENIED")
    assert_error(delete_org(bob_client, password=PASSWORD), 403, "PERMISSION_DENIED")
    assert_error(delete_org(charlie_client, password=PASSWORD), 404, "NOT_FOUND")
    assert_error(delete_org(APIClient(), password=PASSWORD), 401, "AUTHENTICATION_FAILED")
    assert acme_exists()
    denied = AuditRecord.objects.filter(action="org:delete", outcome="denied", status_code=403)
    assert sorted(denied.values_list("actor_label", flat=True)) == ["bob", "dave"]


def test_password_confirmation_is_throttled_like_login(cast, alice_client, settings, clock_shift):
    to_step_start(settings.INFERIA_LOGIN_WINDOW_SECONDS)  # a whole window ahead
    # Holding alice's access token must not give an unthrottled password oracle.
    limit = settings.INFERIA_LOGIN_MAX_FAILURES_PER_USER
    for _ in range(limit):
        assert_error(delete_org(alice_client, password="guess"), 401, "AUTHENTICATION_FAILED")

    response = delete_org(alice_client, password=PASSWORD)

    assert_error(response, 429, "RATE_LIMITED")
    retry_after = int(response["Retry-After"])
    assert acme_exists()
    # The guesses count for login too: the same username is throttled there.
    login = APIClient().post(
        "/api/v1/auth/login", {"username": "alice", "password": PASSWORD}, format="json"
    )
    assert_error(login, 429, "RATE_LIMITED")
    denied = AuditRecord.objects.filter(outcome="denied", status_code=429, actor_label="alice")
    assert set(denied.values_list("action", flat=True)) == {"auth:reverify", "auth:login"}

    clock_shift(retry_after)
    assert delete_org(alice_client, password=PASSWORD).status_code == 204
    assert not acme_exists()


# --- POST /orgs/{org}/transfer-ownership -------------------------------------------------------


def test_transfer_ownership_with_password(cast, alice_client):
    bob = membership(cast.acme, cast.bob)

    response = transfer(alice_client, bob.pk, password=PASSWORD)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == str(bob.pk) and body["role"]["slug"] == "owner"
    assert membership(cast.acme, cast.bob).role.slug == "owner"
    assert membership(cast.acme, cast.alice).role.slug == "admin"
    record = AuditRecord.objects.get(action="org:transfer_ownership")
    assert record.outcome == "success" and record.org == cast.acme
    assert record.actor_user == cast.alice and record.target_id == str(bob.pk)
    assert PASSWORD not in str(record.data)
    # The former owner is an Admin now: no org:delete, no second transfer.
    assert_error(delete_org(alice_client, password=PASSWORD), 403, "PERMISSION_DENIED")
    assert_error(transfer(alice_client, bob.pk, password=PASSWORD), 403, "PERMISSION_DENIED")


def test_transfer_without_2fa_needs_the_right_password(cast, alice_client):
    bob = membership(cast.acme, cast.bob)

    error = assert_error(transfer(alice_client, bob.pk), 400, "VALIDATION_ERROR")
    assert error["details"]["password"]
    assert_error(
        transfer(alice_client, bob.pk, password="not-my-password"), 401, "AUTHENTICATION_FAILED"
    )

    assert membership(cast.acme, cast.bob).role.slug == "member"
    assert membership(cast.acme, cast.alice).role.slug == "owner"
    assert not AuditRecord.objects.filter(
        action="org:transfer_ownership", outcome="success"
    ).exists()
    assert AuditRecord.objects.filter(action="auth:reverify", outcome="failure").count() == 1


def test_transfer_with_2fa_needs_a_fresh_code(cast, alice_client, clock_shift):
    to_step_start()
    device, _codes = enable_totp(alice_client, cast.alice)
    vera = membership(cast.acme, cast.vera)

    assert_error(transfer(alice_client, vera.pk), 401, "OTP_REQUIRED")
    assert_error(transfer(alice_client, vera.pk, password=PASSWORD), 401, "OTP_REQUIRED")
    assert_error(
        transfer(alice_client, vera.pk, otp_code=wrong_code(device)), 401, "AUTHENTICATION_FAILED"
    )
    assert membership(cast.acme, cast.vera).role.slug == "viewer"
    assert membership(cast.acme, cast.alice).role.slug == "owner"

    clock_shift(30)
    code = code_now(device)
    response = transfer(alice_client, vera.pk, otp_code=code)

    assert response.status_code == 200, response.content
    assert membership(cast.acme, cast.vera).role.slug == "owner"
    assert membership(cast.acme, cast.alice).role.slug == "admin"
    assert (
        AuditRecord.objects.filter(action="org:transfer_ownership", outcome="success").count() == 1
    )


def test_only_an_owner_may_transfer(cast, bob_client, dave_client):
    vera = membership(cast.acme, cast.vera)
    assert_error(transfer(dave_client, vera.pk, password=PASSWORD), 403, "PERMISSION_DENIED")
    assert_error(transfer(bob_client, vera.pk, password=PASSWORD), 403, "PERMISSION_DENIED")
    assert membership(cast.acme, cast.vera).role.slug == "viewer"
    assert [
        m.user.username for m in Membership.all_orgs.filter(org=cast.acme, role__slug="owner")
    ] == ["alice"]


def test_transfer_target_must_be_a_member_of_this_org(cast, alice_client, charlie_client):
    charlie_in_globex = membership(cast.globex, cast.charlie)
    assert_error(transfer(alice_client, charlie_in_globex.pk, password=PASSWORD), 404, "NOT_FOUND")
    assert_error(transfer(alice_client, uuid.uuid4(), password=PASSWORD), 404, "NOT_FOUND")
    error = assert_error(
        alice_client.post(TRANSFER, {"password": PASSWORD}, format="json"), 400, "VALIDATION_ERROR"
    )
    assert "member_id" in error["details"]
    assert_error(
        transfer(alice_client, membership(cast.acme, cast.alice).pk, password=PASSWORD),
        400,
        "VALIDATION_ERROR",
    )
    # charlie cannot even see that acme exists.
    bob = membership(cast.acme, cast.bob)
    assert_error(transfer(charlie_client, bob.pk, password=PASSWORD), 404, "NOT_FOUND")
    assert membership(cast.globex, cast.charlie).role.slug == "owner"
    assert membership(cast.acme, cast.alice).role.slug == "owner"
    assert not AuditRecord.objects.filter(
        action="org:transfer_ownership", outcome="success"
    ).exists()


def test_the_actors_2fa_decides_not_the_targets(cast, alice_client, bob_client):
    enable_totp(bob_client, cast.bob)
    bob = membership(cast.acme, cast.bob)
    response = transfer(alice_client, bob.pk, password=PASSWORD)
    assert response.status_code == 200, response.content
    assert membership(cast.acme, cast.bob).role.slug == "owner"


def test_a_locked_device_refuses_sensitive_actions_even_with_the_right_code(
    cast, alice_client, settings, clock_shift
):
    settings.INFERIA_OTP_MAX_FAILURES = 2
    settings.INFERIA_OTP_LOCKOUT_SECONDS = 90
    to_step_start()
    device, _codes = enable_totp(alice_client, cast.alice)
    for _ in range(2):
        assert_error(
            delete_org(alice_client, otp_code=wrong_code(device)), 401, "AUTHENTICATION_FAILED"
        )
    clock_shift(30)

    response = delete_org(alice_client, otp_code=code_now(device))

    assert_error(response, 429, "RATE_LIMITED")
    bob = membership(cast.acme, cast.bob)
    assert_error(transfer(alice_client, bob.pk, otp_code=code_now(device)), 429, "RATE_LIMITED")
    assert acme_exists()
    assert membership(cast.acme, cast.alice).role.slug == "owner"
    locked = AuditRecord.objects.filter(action="auth:reverify", outcome="denied", status_code=429)
    assert [r.data["reason"] for r in locked.filter(actor_user=cast.alice)] == [
        "otp_locked",
        "otp_locked",
    ]

    clock_shift(int(response["Retry-After"]))
    assert transfer(alice_client, bob.pk, otp_code=code_now(device)).status_code == 200
    assert membership(cast.acme, cast.bob).role.slug == "owner"
