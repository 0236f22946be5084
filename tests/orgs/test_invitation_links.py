"""Links in invitation mails point where the server was reached (or INFERIA_PUBLIC_URL)."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from orgs.models import Invitation
from orgs.scoping import org_scope
from orgs.services import tenancy


def _links(message) -> list[str]:
    return re.findall(r"https?://\S+", message.body)


@pytest.fixture
def invite_via(django_capture_on_commit_callbacks):
    def _invite(client, host: str, email: str = "frank@example.com"):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                "/api/v1/orgs/acme/invitations",
                {"email": email, "role": "member"},
                format="json",
                HTTP_HOST=host,
            )
        return response

    return _invite


@pytest.mark.parametrize("host", ["127.0.0.1:8123", "localhost:9555"])
def test_link_follows_the_host_and_port_the_inviter_used(
    cast, alice_client, invite_via, host, settings
):
    settings.INFERIA_PUBLIC_URL = ""
    response = invite_via(alice_client, host)
    assert response.status_code == 201, response.content
    links = _links(mail.outbox[-1])
    assert links and all(link.startswith(f"http://{host}/") for link in links), links
    assert any(f"http://{host}/invitations/" in link for link in links)
    assert any(link.startswith(f"http://{host}/api/v1/invitations/") for link in links)


def test_resend_follows_the_port_of_the_resend_request(
    cast, alice_client, invite_via, settings, django_capture_on_commit_callbacks
):
    settings.INFERIA_PUBLIC_URL = ""
    response = invite_via(alice_client, "127.0.0.1:8123")
    with django_capture_on_commit_callbacks(execute=True):
        resent = alice_client.post(
            f"/api/v1/orgs/acme/invitations/{response.json()['id']}/resend",
            HTTP_HOST="127.0.0.1:9001",
        )
    assert resent.status_code == 200, resent.content
    assert len(mail.outbox) == 2
    assert all(link.startswith("http://127.0.0.1:9001/") for link in _links(mail.outbox[-1]))


def test_public_url_setting_wins_over_the_request_host(cast, alice_client, invite_via, settings):
    settings.INFERIA_PUBLIC_URL = "https://inferia.example.com"
    response = invite_via(alice_client, "127.0.0.1:8123")
    assert response.status_code == 201, response.content
    links = _links(mail.outbox[-1])
    assert links and all(link.startswith("https://inferia.example.com/") for link in links)


def test_a_host_outside_allowed_hosts_is_refused_and_sends_nothing(
    cast, alice_client, invite_via, settings
):
    settings.INFERIA_PUBLIC_URL = ""
    response = invite_via(alice_client, "evil.example.net:8000")
    assert response.status_code == 400
    assert mail.outbox == [] and not Invitation.all_orgs.exists()


def test_a_job_without_a_request_links_to_the_served_port(cast, alice_client, invite_via, settings):
    """A send without a request (a message queued before the upgrade, a command) uses the
    port that `manage.py serve` hands its worker ($PORT -> INFERIA_LOCAL_URL)."""
    settings.INFERIA_PUBLIC_URL = ""
    settings.INFERIA_LOCAL_URL = "http://127.0.0.1:8777"
    response = invite_via(alice_client, "127.0.0.1:8123")
    with org_scope(cast.acme):  # as the worker's OrgTask does
        assert tenancy.invitation_deliver(invitation_id=response.json()["id"], send_number=2)
    links = _links(mail.outbox[-1])
    assert links and all(link.startswith("http://127.0.0.1:8777/") for link in links)
