"""The link of an invitation e-mail opens a page: join with a new account (signed in at
once) or with the signed-in account of the invited address; closed and unknown
invitations say so; the token never reaches the logs."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from orgs.models import Membership, User
from tests.conftest import client_for, make_user
from tests.dashboard.conftest import page_client

PASSWORD = "a-long-enough-passphrase"


@pytest.fixture
def invited(cast, django_capture_on_commit_callbacks):
    """alice invites an address; returns (page path, token) from the e-mail."""

    def _invite(email: str = "frank@example.com", role: str = "member") -> tuple[str, str]:
        with django_capture_on_commit_callbacks(execute=True):
            response = client_for(cast.alice).post(
                "/api/v1/orgs/acme/invitations", {"email": email, "role": role}, format="json"
            )
        assert response.status_code == 201, response.content
        match = re.search(r"https?://[^/\s]+(/invitations/([^/\s]+))\s", mail.outbox[-1].body)
        assert match, mail.outbox[-1].body
        return match.group(1), match.group(2)

    return _invite


def test_a_new_account_joins_from_the_page_and_is_signed_in(cast, invited):
    path, _token = invited()
    client = Client()
    page = client.get(path)
    assert page.status_code == 200
    assert b"Acme" in page.content and b"Member" in page.content
    refused = client.post(
        path, {"username": "frank", "password": PASSWORD, "password_again": "other"}
    )
    assert refused.status_code == 400
    assert not User.objects.filter(username="frank").exists()
    joined = client.post(
        path, {"username": "frank", "password": PASSWORD, "password_again": PASSWORD}
    )
    assert joined.status_code == 302 and joined["Location"] == "/orgs/acme/"
    frank = User.objects.get(username="frank")
    assert frank.email == "frank@example.com"
    assert Membership.all_orgs.get(org=cast.acme, user=frank).role.slug == "member"
    assert client.get("/orgs/acme/").status_code == 200  # signed in
    # Used once: the link now says so.
    again = Client().get(path)
    assert again.status_code == 409 and b"accepted" in again.content


def test_the_signed_in_owner_of_the_address_accepts(cast, invited):
    erin = make_user("erin")  # make_user gives erin@example.com
    path, _token = invited(email=erin.email)
    client = page_client(erin)
    assert b"Accept and join" in client.get(path).content
    joined = client.post(path)
    assert joined.status_code == 302
    assert Membership.all_orgs.filter(org=cast.acme, user=erin).exists()


def test_someone_else_signed_in_cannot_take_the_invitation(cast, invited):
    path, _token = invited(email="frank@example.com")
    refused = page_client(cast.charlie).post(path)
    assert refused.status_code == 400
    assert not Membership.all_orgs.filter(org=cast.acme, user=cast.charlie).exists()


def test_unknown_and_revoked_invitations(cast, invited):
    assert Client().get("/invitations/not-a-token").status_code == 404
    path, _token = invited()
    invitation_id = (
        client_for(cast.alice).get("/api/v1/orgs/acme/invitations").json()["results"][0]["id"]
    )
    assert client_for(cast.alice).delete(
        f"/api/v1/orgs/acme/invitations/{invitation_id}"
    ).status_code in (
        200,
        204,
    )
    closed = Client().post(
        path, {"username": "frank", "password": PASSWORD, "password_again": PASSWORD}
    )
    assert closed.status_code == 409 and b"revoked" in closed.content
    assert not User.objects.filter(username="frank").exists()


def test_the_token_stays_out_of_the_request_log(cast, invited, caplog):
    path, token = invited()
    with caplog.at_level("INFO", logger="inferia.request"):
        Client().get(path)
    assert caplog.records, "the request log wrote nothing"
    assert all(
        token not in record.getMessage() and token not in str(record.__dict__)
        for record in caplog.records
    )
