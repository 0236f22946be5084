"""The Django admin is an edge like the API: its login has the same throttles, audit
records and (for every enrolled staff user, in every deployment) the second factor;
edits that change access go through audited services; tenant access rows are read-only."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AuditRecord
from orgs.models import Membership, Role, TOTPDevice, User
from orgs.services import two_factor
from tests.conftest import PASSWORD, client_for, code_now, make_user, to_step_start

LOGIN = "/admin/login/?next=/admin/"
ME = "/api/v1/auth/me"


@pytest.fixture
def root(db) -> User:
    user = make_user("root")
    User.objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
    user.refresh_from_db()
    return user


def admin_login(client: Client, username: str, password: str = PASSWORD, otp: str = ""):
    return client.post(LOGIN, {"username": username, "password": password, "otp_token": otp})


def enrol(user: User) -> TOTPDevice:
    to_step_start()
    two_factor.totp_setup(user=user)
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    two_factor.totp_confirm(user=user, otp_code=code_now(device))
    device.refresh_from_db()
    return device


def test_admin_login_success_is_audited_and_opens_the_admin(root):
    client = Client()
    response = admin_login(client, "root")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    record = AuditRecord.objects.get(action="auth:login", outcome="success")
    assert record.actor_user_id == root.pk and record.data == {"via": "admin"}


def test_admin_login_failures_are_audited_and_throttled_per_username(root, settings):
    settings.INFERIA_LOGIN_MAX_FAILURES_PER_USER = 3
    client = Client()
    for _ in range(3):
        response = admin_login(client, "root", password="wrong")
        assert response.status_code == 401
    # The right password is refused too, once the limit is reached.
    response = admin_login(client, "root")
    assert response.status_code == 429
    assert client.get("/admin/").status_code == 302
    failures = AuditRecord.objects.filter(action="auth:login", outcome="failure")
    assert failures.count() == 3
    assert {r.data["reason"] for r in failures} == {"bad_credentials"}
    assert AuditRecord.objects.filter(
        action="auth:login", outcome="denied", data__reason="throttled"
    ).exists()
    assert not AuditRecord.objects.filter(action="auth:login", outcome="success").exists()


def test_admin_login_failures_are_throttled_per_ip(root, settings):
    settings.INFERIA_LOGIN_MAX_FAILURES_PER_IP = 2
    make_user("someone")
    client = Client(REMOTE_ADDR="203.0.113.9")
    assert admin_login(client, "someone", password="wrong").status_code == 401
    assert admin_login(client, "nobody", password="wrong").status_code == 401
    assert admin_login(client, "root").status_code == 429
    assert client.get("/admin/").status_code == 302


def test_non_staff_cannot_log_in_to_the_admin(cast):
    client = Client()
    response = admin_login(client, "bob")
    assert response.status_code == 401
    assert client.get("/admin/").status_code == 302
    record = AuditRecord.objects.get(action="auth:login", outcome="failure")
    assert record.data == {"reason": "not_staff", "via": "admin"}


def test_enrolled_staff_need_the_code_at_the_admin_in_every_deployment(root, settings, clock_shift):
    assert settings.INFERIA_ADMIN_REQUIRES_OTP is False  # the development profile
    device = enrol(root)
    clock_shift(30)
    client = Client()
    response = admin_login(client, "root")
    assert response.status_code == 401
    assert client.get("/admin/").status_code == 302
    assert AuditRecord.objects.filter(
        action="auth:login", outcome="denied", data__reason="otp_required"
    ).exists()

    response = admin_login(client, "root", otp=code_now(device))
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_a_password_only_session_of_enrolled_staff_does_not_open_the_admin(root):
    enrol(root)
    client = Client()
    client.force_login(root, backend="django.contrib.auth.backends.ModelBackend")
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_production_profile_staff_without_2fa_must_enrol_first(root, settings):
    settings.INFERIA_ADMIN_REQUIRES_OTP = True
    client = Client()
    response = admin_login(client, "root")
    assert response.status_code == 403
    assert b"/account/2fa" in response.content
    assert client.get("/admin/").status_code == 302
    assert AuditRecord.objects.filter(
        action="auth:login", outcome="denied", data__reason="2fa_enrolment_required"
    ).exists()


# --- edits that change access ---------------------------------------------------------------


def _user_form(user: User, **overrides) -> dict:
    data = {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": user.email,
        "is_active": "on" if user.is_active else "",
        "is_staff": "on" if user.is_staff else "",
        "is_superuser": "on" if user.is_superuser else "",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value != ""}


def test_deactivating_a_user_in_admin_is_audited_and_ends_their_sessions(cast, admin_client):
    bob_api = client_for(cast.bob)
    response = admin_client.post(
        f"/admin/orgs/user/{cast.bob.pk}/change/", _user_form(cast.bob, is_active="")
    )
    assert response.status_code == 302, response.content[:2000]
    cast.bob.refresh_from_db()
    assert cast.bob.is_active is False
    assert bob_api.get(ME).status_code == 401
    record = AuditRecord.objects.get(action="auth:user_update", outcome="success")
    assert record.target_id == str(cast.bob.pk)
    assert record.actor_label == "admin:admin"
    assert record.data["changes"] == {"is_active": False}


def test_staff_who_are_not_superusers_cannot_grant_superuser(cast, client):
    staff = make_user("ops")
    User.objects.filter(pk=staff.pk).update(is_staff=True)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["change_user", "view_user"])
    )
    client.force_login(staff, backend="django.contrib.auth.backends.ModelBackend")
    response = client.post(
        f"/admin/orgs/user/{staff.pk}/change/", _user_form(staff, is_superuser="on")
    )
    assert response.status_code == 302  # the flags are read-only for them: ignored
    staff.refresh_from_db()
    assert staff.is_superuser is False
    record = AuditRecord.objects.get(action="auth:user_update", outcome="success")
    assert record.data["changes"] == {}


def test_the_user_service_refuses_staff_granting_superuser(cast):
    from inferia.errors import PermissionDenied
    from orgs.services import auth

    staff = make_user("ops")
    User.objects.filter(pk=staff.pk).update(is_staff=True)
    staff.refresh_from_db()
    cast.bob.is_superuser = True
    with pytest.raises(PermissionDenied):
        auth.user_admin_save(
            operator=staff, user=cast.bob, changed_fields=["is_superuser"], created=False
        )
    cast.bob.refresh_from_db()
    assert cast.bob.is_superuser is False
    record = AuditRecord.objects.get(action="auth:user_update", outcome="denied")
    assert record.data["reason"] == "superuser_required"


def test_setting_a_password_in_admin_ends_the_users_sessions_and_is_audited(cast, admin_client):
    bob_api = client_for(cast.bob)
    assert bob_api.get(ME).status_code == 200
    new = "a-brand-new-passphrase-77"
    response = admin_client.post(
        f"/admin/orgs/user/{cast.bob.pk}/password/",
        {"password1": new, "password2": new, "usable_password": "true"},
    )
    assert response.status_code == 302, response.content[:2000]
    cast.bob.refresh_from_db()
    assert cast.bob.check_password(new)
    assert bob_api.get(ME).status_code == 401
    record = AuditRecord.objects.get(action="auth:password_change", outcome="success")
    assert record.target_id == str(cast.bob.pk) and record.data["via"] == "admin"
    assert new not in str(record.data)


def test_memberships_and_roles_are_read_only_in_admin(cast, admin_client):
    membership = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
    owner = Role.objects.get(org__isnull=True, slug="owner")
    response = admin_client.post(
        f"/admin/orgs/membership/{membership.pk}/change/", {"role": owner.pk}
    )
    assert response.status_code == 403
    assert Membership.all_orgs.get(pk=membership.pk).role.slug == "member"
    response = admin_client.post(
        f"/admin/orgs/role/{owner.pk}/change/",
        {"slug": "owner", "name": "Owner", "permissions": "[]"},
    )
    assert response.status_code == 403
    assert Role.objects.get(pk=owner.pk).permissions == owner.permissions
    assert admin_client.get(f"/admin/orgs/membership/{membership.pk}/change/").status_code == 200


def test_org_policy_is_read_only_in_admin(cast, admin_client):
    response = admin_client.post(
        f"/admin/orgs/organization/{cast.acme.pk}/change/",
        {"slug": "acme", "name": "Acme", "settings": '{"audit_retention_days": 1}'},
    )
    assert response.status_code == 302
    cast.acme.refresh_from_db()
    assert "audit_retention_days" not in cast.acme.settings
