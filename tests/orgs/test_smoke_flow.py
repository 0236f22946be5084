"""The issue's story through the API: log in, turn on TOTP, create an org, invite."""

from __future__ import annotations

import re

from django.core import mail

from audit.models import AuditRecord
from orgs.models import Invitation, Membership, TOTPDevice
from tests.conftest import PASSWORD, code_now, make_user


def test_new_user_logs_in_enables_totp_creates_org_and_invites(
    db, anon_client, clock_shift, django_capture_on_commit_callbacks
):
    make_user("erin")
    response = anon_client.post(
        "/api/v1/auth/login", {"username": "erin", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")

    setup = anon_client.post("/api/v1/auth/2fa/setup").json()
    assert setup["otpauth_uri"].startswith("otpauth://totp/Inferia:erin?secret=")
    assert setup["qr_svg"].lstrip().startswith("<svg")
    device = TOTPDevice.objects.get(user__username="erin")
    confirm = anon_client.post(
        "/api/v1/auth/2fa/confirm", {"otp_code": code_now(device)}, format="json"
    )
    assert confirm.status_code == 200, confirm.content
    assert len(confirm.json()["recovery_codes"]) == 10

    # Logging in now needs the code.
    anon = anon_client.__class__()
    response = anon.post(
        "/api/v1/auth/login", {"username": "erin", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 401 and response.json()["error"]["code"] == "OTP_REQUIRED"
    clock_shift(30)
    response = anon.post(
        "/api/v1/auth/login",
        {"username": "erin", "password": PASSWORD, "otp_code": code_now(device)},
        format="json",
    )
    assert response.status_code == 200, response.content

    created = anon_client.post(
        "/api/v1/orgs", {"slug": "initech", "name": "Initech"}, format="json"
    )
    assert created.status_code == 201, created.content
    with django_capture_on_commit_callbacks(execute=True):
        invite = anon_client.post(
            "/api/v1/orgs/initech/invitations",
            {"email": "frank@example.com", "role": "member"},
            format="json",
        )
    assert invite.status_code == 201, invite.content
    assert len(mail.outbox) == 1
    token = re.search(r"/api/v1/invitations/([^/]+)/accept", mail.outbox[0].body).group(1)
    accepted = anon_client.__class__().post(
        f"/api/v1/invitations/{token}/accept",
        {"username": "frank", "password": "a-long-enough-passphrase"},
        format="json",
    )
    assert accepted.status_code == 201, accepted.content
    assert accepted.json()["role"]["slug"] == "member"
    assert Membership.all_orgs.filter(org__slug="initech", user__username="frank").exists()
    assert Invitation.all_orgs.get().status == "accepted"
    assert (
        AuditRecord.objects.filter(action="auth:invitation_accept", outcome="success").count() == 1
    )
