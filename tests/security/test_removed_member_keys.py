"""A removed member's personal keys are revoked with the membership (audited) and
stay dead if the person is invited again and re-joins."""

from __future__ import annotations

from django.core import mail

from audit.models import AuditRecord
from keys.models import ApiKey
from orgs.models import Membership
from tests.conftest import assert_error, client_for, invitation_token
from tests.keys.conftest import key_client, mint

ORG = "/api/v1/orgs/acme"


def _reinvite_and_join(cast, alice_client, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        invited = alice_client.post(
            f"{ORG}/invitations", {"email": cast.bob.email, "role": "member"}, format="json"
        )
    assert invited.status_code == 201, invited.content
    token = invitation_token(mail.outbox[-1])
    accepted = client_for(cast.bob).post(f"/api/v1/invitations/{token}/accept", {}, format="json")
    assert accepted.status_code == 201, accepted.content


def test_removed_members_keys_are_revoked_and_stay_dead_after_rejoining(
    cast, alice_client, bob_client, django_capture_on_commit_callbacks
):
    keys = [mint(bob_client, name=f"k{i}", permissions=["model:read"]) for i in range(2)]
    alices = mint(alice_client, name="alice-key", permissions=["model:read"])
    membership = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
    assert alice_client.delete(f"{ORG}/members/{membership.pk}").status_code == 204

    for key in keys:
        row = ApiKey.all_orgs.get(pk=key["id"])
        assert row.revoked_at is not None and row.status == "revoked"
        record = AuditRecord.objects.get(action="api_key:revoke", target_id=key["id"])
        assert record.outcome == "success" and record.actor_user == cast.alice
        assert record.data["reason"] == "member_removed"
    assert ApiKey.all_orgs.get(pk=alices["id"]).revoked_at is None

    _reinvite_and_join(cast, alice_client, django_capture_on_commit_callbacks)
    assert client_for(cast.bob).get(f"{ORG}/members").status_code == 200  # bob is back
    for key in keys:
        error = assert_error(
            key_client(key["key"]).get(f"{ORG}/access-rules"), 401, "AUTHENTICATION_FAILED"
        )
        assert error["message"] == f"API key {key['prefix']} is revoked"


def test_a_member_who_leaves_loses_their_keys(cast, bob_client):
    key = mint(bob_client, name="k", permissions=["model:read"])
    own = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
    assert bob_client.delete(f"{ORG}/members/{own.pk}").status_code == 204
    assert ApiKey.all_orgs.get(pk=key["id"]).revoked_at is not None
    assert AuditRecord.objects.get(action="api_key:revoke", target_id=key["id"]).actor_user == (
        cast.bob
    )


def test_service_account_keys_survive_their_makers_removal(cast, alice_client, dave_client):
    made = dave_client.post(
        f"{ORG}/service-accounts", {"slug": "bot", "name": "Bot", "role": "viewer"}, format="json"
    )
    assert made.status_code == 201, made.content
    sa_key = mint(dave_client, name="bot-key", service_account="bot", permissions=["model:read"])
    dave = Membership.all_orgs.get(org=cast.acme, user=cast.dave)
    assert alice_client.delete(f"{ORG}/members/{dave.pk}").status_code == 204
    assert ApiKey.all_orgs.get(pk=sa_key["id"]).revoked_at is None
    assert key_client(sa_key["key"]).get(f"{ORG}/access-rules").status_code == 200


def test_refused_removal_revokes_nothing(cast, dave_client, alice_client):
    key = mint(alice_client, name="k", permissions=["model:read"])
    alice = Membership.all_orgs.get(org=cast.acme, user=cast.alice)
    # An Admin cannot remove the Owner: nothing changes, the Owner's keys included.
    assert_error(dave_client.delete(f"{ORG}/members/{alice.pk}"), 403, "PERMISSION_DENIED")
    assert ApiKey.all_orgs.get(pk=key["id"]).revoked_at is None
    assert not AuditRecord.objects.filter(action="api_key:revoke").exists()


def test_other_orgs_keys_of_the_same_person_survive(cast, charlie_client, alice_client):
    from tests.conftest import add_member

    add_member(cast.globex, cast.bob, "member")
    globex_key = mint(client_for(cast.bob), org="globex", name="gx", permissions=["model:read"])
    membership = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
    assert alice_client.delete(f"{ORG}/members/{membership.pk}").status_code == 204
    assert ApiKey.all_orgs.get(pk=globex_key["id"]).revoked_at is None
    assert key_client(globex_key["key"]).get("/api/v1/orgs/globex/access-rules").status_code == 200
