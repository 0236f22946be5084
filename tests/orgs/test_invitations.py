"""Invitations: create (mail sent by the task), list, revoke, resend, accept once."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from django.conf import settings
from django.core import mail
from django.db import connection
from rest_framework.test import APIClient

from audit.models import AuditRecord
from orgs.models import Invitation, Membership, Role, User
from tests.conftest import assert_error, client_for, invitation_token, make_user

NEW_PASSWORD = "a-long-enough-passphrase"
INVITATION_FIELDS = {
    "id",
    "email",
    "role",
    "status",
    "invited_by",
    "created_at",
    "expires_at",
    "sent_at",
    "send_count",
    "accepted_at",
    "revoked_at",
}


@pytest.fixture
def invite(django_capture_on_commit_callbacks):
    """POST an invitation with on-commit tasks run; returns (response, token or None)."""

    def _invite(client, email="frank@example.com", role="member", org="acme"):
        sent_before = len(mail.outbox)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                f"/api/v1/orgs/{org}/invitations", {"email": email, "role": role}, format="json"
            )
        token = invitation_token(mail.outbox[-1]) if len(mail.outbox) > sent_before else None
        return response, token

    return _invite


@pytest.fixture
def resend(django_capture_on_commit_callbacks):
    def _resend(client, invitation_id, org="acme"):
        sent_before = len(mail.outbox)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(f"/api/v1/orgs/{org}/invitations/{invitation_id}/resend")
        token = invitation_token(mail.outbox[-1]) if len(mail.outbox) > sent_before else None
        return response, token

    return _resend


def accept(token, client=None, **credentials):
    return (client or APIClient()).post(
        f"/api/v1/invitations/{token}/accept", credentials, format="json"
    )


def accept_new(token, username="frank"):
    return accept(token, username=username, password=NEW_PASSWORD)


def acme_membership(cast, username):
    return (
        Membership.all_orgs.select_related("role")
        .filter(org=cast.acme, user__username=username)
        .first()
    )


# --- create ---------------------------------------------------------------------------------


def test_admin_invites_and_the_mail_carries_the_only_copy_of_the_token(cast, dave_client, invite):
    response, token = invite(dave_client)
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == INVITATION_FIELDS
    assert body["email"] == "frank@example.com" and body["role"]["slug"] == "member"
    assert body["status"] == "pending" and body["invited_by"] == "dave"

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["frank@example.com"]
    assert "Acme" in message.subject
    assert token and len(token) >= 32

    invitation = Invitation.all_orgs.get(pk=body["id"])
    assert invitation.org == cast.acme and invitation.role.slug == "member"
    assert invitation.invited_by == acme_membership(cast, "dave")
    assert invitation.send_count == 1 and invitation.sent_at is not None
    assert invitation.token_digest == hashlib.sha256(token.encode()).hexdigest()
    # The plaintext token is nowhere in the row, nor in the audit trail.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {Invitation._meta.db_table}")  # noqa: S608 - fixed table name
        rows = cursor.fetchall()
    assert len(rows) == 1 and token not in repr(rows)
    # Neither the token nor its digest is ever shown by the API.
    listing = dave_client.get("/api/v1/orgs/acme/invitations").content.decode()
    detail = dave_client.get(f"/api/v1/orgs/acme/invitations/{invitation.pk}").content.decode()
    for text in (response.content.decode(), listing, detail):
        assert token not in text and invitation.token_digest not in text
    assert not any(token in repr(r.data) for r in AuditRecord.objects.all())

    record = AuditRecord.objects.get(action="member:invite", org=cast.acme)
    assert record.outcome == "success" and record.actor_user == cast.dave
    assert record.target_id == str(invitation.pk) and record.data["role"] == "member"
    assert "frank@example.com" not in repr(record.data)  # e-mail addresses are redacted


def test_invitation_expires_after_the_configured_days(cast, alice_client, invite):
    response, _ = invite(alice_client)
    invitation = Invitation.all_orgs.get(pk=response.json()["id"])
    lifetime = invitation.expires_at - invitation.created_at
    assert abs(lifetime.total_seconds() - settings.INFERIA_INVITATION_DAYS * 86400) < 60


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-email", "role": "member"}, "email"),
        ({"role": "member"}, "email"),
        ({"email": "frank@example.com"}, "role"),
        ({"email": "frank@example.com", "role": "wizard"}, "role"),
        ({"email": "frank@example.com", "role": str(uuid.uuid4())}, "role"),
    ],
)
def test_create_invalid_input_is_400(cast, alice_client, payload, field):
    with_capture = alice_client.post("/api/v1/orgs/acme/invitations", payload, format="json")
    error = assert_error(with_capture, 400, "VALIDATION_ERROR")
    assert field in error["details"]
    assert not Invitation.all_orgs.exists()
    assert not AuditRecord.objects.filter(action="member:invite", outcome="success").exists()


def test_inviting_an_existing_member_is_409(cast, alice_client, invite):
    response, token = invite(alice_client, email="BOB@example.com")
    assert "email" in assert_error(response, 409, "CONFLICT")["details"]
    assert token is None and not Invitation.all_orgs.exists()


def test_second_pending_invitation_for_the_same_email_is_409(cast, alice_client, invite):
    assert invite(alice_client)[0].status_code == 201
    response, token = invite(alice_client, email="Frank@Example.com", role="viewer")
    assert_error(response, 409, "CONFLICT")
    assert token is None
    assert Invitation.all_orgs.count() == 1 and len(mail.outbox) == 1


@pytest.mark.parametrize("who", ["bob", "vera"])
def test_create_needs_member_invite(cast, invite, who):
    response, token = invite(client_for(getattr(cast, who)))
    error = assert_error(response, 403, "PERMISSION_DENIED")
    assert "member:invite" in error["message"]
    assert token is None and mail.outbox == []
    assert not Invitation.all_orgs.exists()
    assert AuditRecord.objects.filter(
        action="member:invite", outcome="denied", actor_user=getattr(cast, who)
    ).exists()


def test_admin_cannot_invite_an_owner(cast, dave_client, invite):
    response, token = invite(dave_client, role="owner")
    assert_error(response, 403, "PERMISSION_DENIED")
    assert token is None and not Invitation.all_orgs.exists()


def test_owner_invites_an_owner(cast, alice_client, invite):
    response, token = invite(alice_client, role="owner")
    assert response.status_code == 201, response.content
    accepted = accept_new(token)
    assert accepted.status_code == 201, accepted.content
    frank = acme_membership(cast, "frank")
    assert frank.role.slug == "owner" and frank.granted_by_membership is None


def test_admin_cannot_invite_with_a_role_holding_billing_manage(cast, dave_client, invite):
    Role.objects.create(
        org=cast.acme, slug="finance", name="Finance", permissions=["billing:manage"]
    )
    response, token = invite(dave_client, role="finance")
    assert assert_error(response, 403, "PERMISSION_DENIED")["details"] == {
        "missing_permissions": ["billing:manage"]
    }
    assert token is None and not Invitation.all_orgs.exists()


def test_create_other_org_404_and_unauthenticated_401(cast, charlie_client, anon_client, invite):
    assert_error(invite(charlie_client)[0], 404, "NOT_FOUND")
    assert_error(invite(anon_client)[0], 401, "AUTHENTICATION_FAILED")
    assert not Invitation.all_orgs.exists() and mail.outbox == []


def test_invite_with_another_orgs_role_is_400(cast, alice_client, invite):
    globex_role = Role.objects.create(org=cast.globex, slug="g", name="G", permissions=["org:view"])
    response, _ = invite(alice_client, role=str(globex_role.pk))
    assert "role" in assert_error(response, 400, "VALIDATION_ERROR")["details"]
    assert not Invitation.all_orgs.exists()


# --- list, detail, revoke -------------------------------------------------------------------------


def test_members_list_and_read_invitations_of_their_org_only(
    cast, alice_client, charlie_client, invite
):
    invite(alice_client, email="frank@example.com")
    invite(alice_client, email="gina@example.com", role="viewer")
    invite(charlie_client, email="hank@example.com", org="globex")
    vera_client = client_for(cast.vera)
    body = vera_client.get("/api/v1/orgs/acme/invitations").json()
    assert body["count"] == 2
    assert {i["email"] for i in body["results"]} == {"frank@example.com", "gina@example.com"}
    assert all(set(i) == INVITATION_FIELDS for i in body["results"])
    first = body["results"][0]
    detail = vera_client.get(f"/api/v1/orgs/acme/invitations/{first['id']}")
    assert detail.status_code == 200 and detail.json()["email"] == first["email"]
    assert_error(vera_client.get(f"/api/v1/orgs/acme/invitations/{uuid.uuid4()}"), 404, "NOT_FOUND")
    assert_error(charlie_client.get("/api/v1/orgs/acme/invitations"), 404, "NOT_FOUND")
    assert_error(APIClient().get("/api/v1/orgs/acme/invitations"), 401, "AUTHENTICATION_FAILED")


def test_revoke(cast, dave_client, invite):
    response, token = invite(dave_client)
    invitation_id = response.json()["id"]
    revoked = dave_client.delete(f"/api/v1/orgs/acme/invitations/{invitation_id}")
    assert revoked.status_code == 200, revoked.content
    assert revoked.json()["status"] == "revoked"
    invitation = Invitation.all_orgs.get(pk=invitation_id)
    assert invitation.revoked_at is not None and invitation.status == "revoked"
    record = AuditRecord.objects.get(action="member:invite", data__op="revoke")
    assert record.actor_user == cast.dave and record.target_id == invitation_id
    # The link is dead; revoking twice is a conflict.
    assert_error(accept_new(token), 409, "CONFLICT")
    assert not User.objects.filter(username="frank").exists()
    assert_error(
        dave_client.delete(f"/api/v1/orgs/acme/invitations/{invitation_id}"), 409, "CONFLICT"
    )


def test_revoke_needs_member_invite_and_is_404_across_orgs(cast, alice_client, invite):
    invitation_id = invite(alice_client)[0].json()["id"]
    assert_error(
        client_for(cast.bob).delete(f"/api/v1/orgs/acme/invitations/{invitation_id}"),
        403,
        "PERMISSION_DENIED",
    )
    charlie = client_for(cast.charlie)
    assert_error(
        charlie.delete(f"/api/v1/orgs/globex/invitations/{invitation_id}"), 404, "NOT_FOUND"
    )
    assert_error(charlie.delete(f"/api/v1/orgs/acme/invitations/{invitation_id}"), 404, "NOT_FOUND")
    assert_error(
        APIClient().delete(f"/api/v1/orgs/acme/invitations/{invitation_id}"),
        401,
        "AUTHENTICATION_FAILED",
    )
    assert Invitation.all_orgs.get(pk=invitation_id).status == "pending"


# --- resend ----------------------------------------------------------------------------------------


def test_resend_sends_a_new_link_and_kills_the_old_one(cast, alice_client, invite, resend):
    response, old_token = invite(alice_client)
    invitation_id = response.json()["id"]
    resent, new_token = resend(alice_client, invitation_id)
    assert resent.status_code == 200, resent.content
    assert resent.json()["status"] == "pending"
    assert len(mail.outbox) == 2 and new_token and new_token != old_token
    invitation = Invitation.all_orgs.get(pk=invitation_id)
    assert invitation.send_count == 2  # the worker sent it after the response
    assert invitation.token_digest == hashlib.sha256(new_token.encode()).hexdigest()
    assert AuditRecord.objects.filter(action="member:invite", data__op="resend").count() == 1

    assert_error(accept_new(old_token), 404, "NOT_FOUND")
    assert not User.objects.filter(username="frank").exists()
    assert accept_new(new_token).status_code == 201


def test_resend_revives_an_expired_invitation(cast, alice_client, invite, resend, clock_shift):
    response, old_token = invite(alice_client)
    clock_shift((settings.INFERIA_INVITATION_DAYS + 1) * 86400)
    alice_client = client_for(cast.alice)  # days later alice's login is over: a new one
    assert (
        alice_client.get(f"/api/v1/orgs/acme/invitations/{response.json()['id']}").json()["status"]
        == "expired"
    )
    resent, new_token = resend(alice_client, response.json()["id"])
    assert resent.status_code == 200 and resent.json()["status"] == "pending"
    assert accept_new(new_token).status_code == 201


def test_resend_of_a_revoked_or_accepted_invitation_is_409(cast, alice_client, invite, resend):
    revoked_id = invite(alice_client, email="gina@example.com")[0].json()["id"]
    alice_client.delete(f"/api/v1/orgs/acme/invitations/{revoked_id}")
    response, token = resend(alice_client, revoked_id)
    assert_error(response, 409, "CONFLICT")
    assert token is None

    response, token = invite(alice_client)
    accept_new(token)
    response, token = resend(alice_client, response.json()["id"])
    assert_error(response, 409, "CONFLICT")
    assert token is None


def test_resend_needs_member_invite_and_is_404_across_orgs(cast, alice_client, invite, resend):
    invitation_id = invite(alice_client)[0].json()["id"]
    assert_error(resend(client_for(cast.vera), invitation_id)[0], 403, "PERMISSION_DENIED")
    assert_error(resend(client_for(cast.charlie), invitation_id, org="globex")[0], 404, "NOT_FOUND")
    assert_error(resend(APIClient(), invitation_id)[0], 401, "AUTHENTICATION_FAILED")
    assert Invitation.all_orgs.get(pk=invitation_id).send_count == 1 and len(mail.outbox) == 1


# --- accept ------------------------------------------------------------------------------------------


def test_accept_once_with_a_new_account(cast, dave_client, invite):
    response, token = invite(dave_client, role="viewer")
    accepted = accept_new(token)
    assert accepted.status_code == 201, accepted.content
    assert accepted.json()["role"]["slug"] == "viewer"
    frank = User.objects.get(username="frank")
    assert frank.email == "frank@example.com" and frank.check_password(NEW_PASSWORD)
    membership = acme_membership(cast, "frank")
    assert membership.role.slug == "viewer"
    assert membership.granted_by_membership == acme_membership(cast, "dave")
    invitation = Invitation.all_orgs.get(pk=response.json()["id"])
    assert invitation.status == "accepted" and invitation.accepted_by == frank
    record = AuditRecord.objects.get(action="auth:invitation_accept")
    assert record.outcome == "success" and record.actor_user == frank and record.org == cast.acme
    assert record.target_id == str(membership.pk)
    assert client_for(frank).get("/api/v1/orgs/acme").status_code == 200

    second = accept(token, username="frank2", password=NEW_PASSWORD)
    assert_error(second, 409, "CONFLICT")
    assert not User.objects.filter(username="frank2").exists()
    assert Membership.all_orgs.filter(org=cast.acme).count() == 5
    assert AuditRecord.objects.filter(action="auth:invitation_accept").count() == 1


def test_expired_token_is_refused(cast, alice_client, invite, clock_shift):
    _, token = invite(alice_client)
    clock_shift(settings.INFERIA_INVITATION_DAYS * 86400 + 60)
    error = assert_error(accept_new(token), 409, "CONFLICT")
    assert "expired" in error["message"]
    assert not User.objects.filter(username="frank").exists()
    assert not acme_membership(cast, "frank")


def test_token_still_valid_just_before_expiry(cast, alice_client, invite, clock_shift):
    _, token = invite(alice_client)
    clock_shift(settings.INFERIA_INVITATION_DAYS * 86400 - 60)
    assert accept_new(token).status_code == 201


def test_unknown_token_is_404(cast):
    assert_error(accept_new("no-such-token"), 404, "NOT_FOUND")
    assert not User.objects.filter(username="frank").exists()


def test_accept_without_login_or_credentials_is_401(cast, alice_client, invite):
    _, token = invite(alice_client)
    assert_error(accept(token), 401, "AUTHENTICATION_FAILED")
    assert_error(accept(token, username="frank"), 401, "AUTHENTICATION_FAILED")
    assert Invitation.all_orgs.get().status == "pending"


def test_accept_with_a_weak_password_is_400(cast, alice_client, invite):
    _, token = invite(alice_client)
    error = assert_error(accept(token, username="frank", password="frank"), 400, "VALIDATION_ERROR")
    assert "password" in error["details"]
    assert not User.objects.filter(username="frank").exists()
    assert accept_new(token).status_code == 201  # the link still works


def test_accept_with_a_taken_username_is_409(cast, alice_client, invite):
    _, token = invite(alice_client)
    error = assert_error(accept(token, username="bob", password=NEW_PASSWORD), 409, "CONFLICT")
    assert "username" in error["details"]
    assert Invitation.all_orgs.get().status == "pending"


def test_logged_in_user_with_another_email_is_403(cast, alice_client, invite):
    _, token = invite(alice_client)
    response = accept(token, client=client_for(cast.charlie))
    assert_error(response, 403, "PERMISSION_DENIED")
    assert not Membership.all_orgs.filter(org=cast.acme, user=cast.charlie).exists()
    assert Invitation.all_orgs.get().status == "pending"


def test_existing_user_with_the_matching_email_accepts_while_logged_in(cast, alice_client, invite):
    frank = make_user("frank", email="Frank@Example.com")
    _, token = invite(alice_client, email="frank@example.com")
    response = accept(token, client=client_for(frank))
    assert response.status_code == 201, response.content
    assert User.objects.filter(email__iexact="frank@example.com").count() == 1
    membership = acme_membership(cast, "frank")
    assert membership.user == frank and membership.role.slug == "member"
    assert Invitation.all_orgs.get().accepted_by == frank
    assert [o["slug"] for o in client_for(frank).get("/api/v1/orgs").json()["results"]] == ["acme"]


def test_inviter_who_lost_member_invite_invalidates_the_invitation(
    cast, alice_client, dave_client, invite
):
    _, token = invite(dave_client)
    dave = acme_membership(cast, "dave")
    assert (
        alice_client.patch(
            f"/api/v1/orgs/acme/members/{dave.pk}", {"role": "member"}, format="json"
        ).status_code
        == 200
    )
    assert_error(accept_new(token), 409, "CONFLICT")
    assert not User.objects.filter(username="frank").exists()
    assert Invitation.all_orgs.get().status == "pending"


def test_inviter_who_lost_permissions_of_the_role_invalidates_the_invitation(
    cast, alice_client, dave_client, invite
):
    _, token = invite(dave_client, role="admin")
    # dave keeps member:invite but no longer holds everything an Admin holds.
    Role.objects.create(
        org=cast.acme,
        slug="recruiter",
        name="Recruiter",
        permissions=["member:invite", "member:view"],
    )
    dave = acme_membership(cast, "dave")
    assert (
        alice_client.patch(
            f"/api/v1/orgs/acme/members/{dave.pk}", {"role": "recruiter"}, format="json"
        ).status_code
        == 200
    )
    assert_error(accept_new(token), 409, "CONFLICT")
    assert not acme_membership(cast, "frank")


def test_inviter_who_left_invalidates_the_invitation(cast, dave_client, invite):
    _, token = invite(dave_client)
    assert (
        dave_client.delete(
            f"/api/v1/orgs/acme/members/{acme_membership(cast, 'dave').pk}"
        ).status_code
        == 204
    )
    assert_error(accept_new(token), 409, "CONFLICT")
    assert not acme_membership(cast, "frank")


def test_invitation_accepted_after_the_inviter_was_demoted_again_is_bounded(
    cast, alice_client, dave_client, invite
):
    """Accepted while dave could grant it; dave's later demotion shrinks frank too."""
    _, token = invite(dave_client, role="admin")
    assert accept_new(token).status_code == 201
    dave = acme_membership(cast, "dave")
    alice_client.patch(f"/api/v1/orgs/acme/members/{dave.pk}", {"role": "viewer"}, format="json")
    frank_client = client_for(User.objects.get(username="frank"))
    assert_error(
        frank_client.post("/api/v1/orgs/acme/teams", {"slug": "t", "name": "T"}, format="json"),
        403,
        "PERMISSION_DENIED",
    )


def test_member_of_the_org_cannot_accept_again(cast, alice_client, invite):
    """A member whose e-mail was invited before joining by another path gets 409."""
    frank = make_user("frank")
    _, token = invite(alice_client)
    from tests.conftest import add_member

    add_member(cast.acme, frank, "viewer")
    assert_error(accept(token, client=client_for(frank)), 409, "CONFLICT")
    assert acme_membership(cast, "frank").role.slug == "viewer"


def test_the_send_task_is_safe_to_run_twice(cast, alice_client, invite):
    from orgs import tasks

    response, token = invite(alice_client)
    invitation = Invitation.all_orgs.get(pk=response.json()["id"])
    # A redelivered message for the same send changes nothing and mails nobody.
    assert tasks.invitation_send(str(cast.acme.pk), str(invitation.pk), 1) is False
    assert len(mail.outbox) == 1
    invitation.refresh_from_db()
    assert invitation.token_digest == hashlib.sha256(token.encode()).hexdigest()
    assert accept_new(token).status_code == 201


@pytest.mark.parametrize("username", ["has space", "slash/name", "semi;colon", "x" * 151])
def test_accept_with_an_invalid_username_is_400(cast, alice_client, invite, username):
    _, token = invite(alice_client)
    error = assert_error(
        accept(token, username=username, password=NEW_PASSWORD), 400, "VALIDATION_ERROR"
    )
    assert "username" in error["details"]
    assert not User.objects.filter(username=username).exists()
    assert Invitation.all_orgs.get().status == "pending"
