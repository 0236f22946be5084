"""Nothing crosses organizations: another org's resources answer 404, never 403."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import pytest

from audit.models import AuditRecord
from inferia import clock
from orgs.models import Invitation, Membership, Role, Team, TeamMember
from tests.conftest import PASSWORD, assert_error, builtin_role


@pytest.fixture
def acme_objects(cast):
    """One object of every acme resource type, plus globex counterparts for mixed URLs."""
    role = Role.objects.create(org=cast.acme, slug="ops", name="Ops", permissions=["org:view"])
    team = Team.all_orgs.create(org=cast.acme, slug="ml", name="ML")
    TeamMember.all_orgs.create(org=cast.acme, team=team, user=cast.bob)
    invitation = Invitation.all_orgs.create(
        org=cast.acme,
        email="frank@example.com",
        role=builtin_role("member"),
        invited_by=Membership.all_orgs.get(org=cast.acme, user=cast.alice),
        token_digest=hashlib.sha256(b"acme-token").hexdigest(),
        expires_at=clock.now() + timedelta(days=7),
    )
    globex_team = Team.all_orgs.create(org=cast.globex, slug="g-team", name="G team")
    return {
        "member": Membership.all_orgs.get(org=cast.acme, user=cast.bob).pk,
        "owner_member": Membership.all_orgs.get(org=cast.acme, user=cast.alice).pk,
        "role": role.pk,
        "team": team.pk,
        "invitation": invitation.pk,
        "bob_user": cast.bob.pk,
        "globex_team": globex_team.pk,
    }


def snapshot(cast):
    """Everything acme owns, to prove a refused request changed nothing."""
    cast.acme.refresh_from_db()
    return (
        cast.acme.name,
        cast.acme.require_2fa,
        sorted(
            Membership.all_orgs.filter(org=cast.acme).values_list("user__username", "role__slug")
        ),
        sorted(Role.objects.filter(org=cast.acme).values_list("slug", "name")),
        sorted(Team.all_orgs.filter(org=cast.acme).values_list("slug", "name")),
        sorted(
            TeamMember.all_orgs.filter(org=cast.acme).values_list("team__slug", "user__username")
        ),
        sorted(
            Invitation.all_orgs.filter(org=cast.acme).values_list(
                "email", "send_count", "revoked_at"
            )
        ),
    )


# (method, url template, body): charlie against acme's URLs.
ACME_URLS = [
    ("get", "/api/v1/orgs/acme", None),
    ("patch", "/api/v1/orgs/acme", {"name": "Pwned"}),
    ("delete", "/api/v1/orgs/acme", {"password": PASSWORD}),
    (
        "post",
        "/api/v1/orgs/acme/transfer-ownership",
        {"member_id": "{member}", "password": PASSWORD},
    ),
    ("get", "/api/v1/orgs/acme/members", None),
    ("get", "/api/v1/orgs/acme/members/{member}", None),
    ("patch", "/api/v1/orgs/acme/members/{member}", {"role": "viewer"}),
    ("delete", "/api/v1/orgs/acme/members/{member}", None),
    ("get", "/api/v1/orgs/acme/roles", None),
    ("post", "/api/v1/orgs/acme/roles", {"slug": "x", "name": "X", "permissions": []}),
    ("get", "/api/v1/orgs/acme/roles/{role}", None),
    ("patch", "/api/v1/orgs/acme/roles/{role}", {"name": "Pwned"}),
    ("delete", "/api/v1/orgs/acme/roles/{role}", None),
    ("get", "/api/v1/orgs/acme/teams", None),
    ("post", "/api/v1/orgs/acme/teams", {"slug": "x", "name": "X"}),
    ("get", "/api/v1/orgs/acme/teams/{team}", None),
    ("patch", "/api/v1/orgs/acme/teams/{team}", {"name": "Pwned"}),
    ("delete", "/api/v1/orgs/acme/teams/{team}", None),
    ("get", "/api/v1/orgs/acme/teams/{team}/members", None),
    ("post", "/api/v1/orgs/acme/teams/{team}/members", {"user_id": "{bob_user}"}),
    ("delete", "/api/v1/orgs/acme/teams/{team}/members/{bob_user}", None),
    ("get", "/api/v1/orgs/acme/invitations", None),
    ("post", "/api/v1/orgs/acme/invitations", {"email": "x@example.com", "role": "member"}),
    ("get", "/api/v1/orgs/acme/invitations/{invitation}", None),
    ("delete", "/api/v1/orgs/acme/invitations/{invitation}", None),
    ("post", "/api/v1/orgs/acme/invitations/{invitation}/resend", None),
]

# The same acme ids through globex's URLs, where charlie is Owner.
MIXED_URLS = [
    ("get", "/api/v1/orgs/globex/members/{member}", None),
    ("patch", "/api/v1/orgs/globex/members/{member}", {"role": "viewer"}),
    ("delete", "/api/v1/orgs/globex/members/{member}", None),
    ("patch", "/api/v1/orgs/globex/members/{owner_member}", {"role": "viewer"}),
    (
        "post",
        "/api/v1/orgs/globex/transfer-ownership",
        {"member_id": "{member}", "password": PASSWORD},
    ),
    ("get", "/api/v1/orgs/globex/roles/{role}", None),
    ("patch", "/api/v1/orgs/globex/roles/{role}", {"name": "Pwned", "permissions": []}),
    ("delete", "/api/v1/orgs/globex/roles/{role}", None),
    ("get", "/api/v1/orgs/globex/teams/{team}", None),
    ("patch", "/api/v1/orgs/globex/teams/{team}", {"name": "Pwned"}),
    ("delete", "/api/v1/orgs/globex/teams/{team}", None),
    ("get", "/api/v1/orgs/globex/teams/{team}/members", None),
    ("post", "/api/v1/orgs/globex/teams/{team}/members", {"user_id": "{bob_user}"}),
    ("delete", "/api/v1/orgs/globex/teams/{team}/members/{bob_user}", None),
    # globex's own team, with an acme member as the team member.
    ("post", "/api/v1/orgs/globex/teams/{globex_team}/members", {"user_id": "{bob_user}"}),
    ("delete", "/api/v1/orgs/globex/teams/{globex_team}/members/{bob_user}", None),
    ("get", "/api/v1/orgs/globex/invitations/{invitation}", None),
    ("delete", "/api/v1/orgs/globex/invitations/{invitation}", None),
    ("post", "/api/v1/orgs/globex/invitations/{invitation}/resend", None),
]


def _fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def _call(client, method, url, body, ids):
    kwargs = {"format": "json"}
    if body is not None:
        kwargs["data"] = _fill(body, ids)
    return getattr(client, method)(_fill(url, ids), **kwargs)


@pytest.mark.parametrize(
    ("method", "url", "body"), ACME_URLS, ids=[f"{m} {u}" for m, u, _ in ACME_URLS]
)
def test_other_org_owner_gets_404_on_every_acme_url(
    cast, acme_objects, charlie_client, method, url, body
):
    before = snapshot(cast)
    response = _call(charlie_client, method, url, body, acme_objects)
    error = assert_error(response, 404, "NOT_FOUND")
    # Same answer as for an org that does not exist: nothing is revealed.
    unknown = _call(
        charlie_client, method, url.replace("/orgs/acme", "/orgs/no-such-org"), body, acme_objects
    )
    assert assert_error(unknown, 404, "NOT_FOUND") == error
    assert snapshot(cast) == before
    assert not AuditRecord.objects.filter(
        actor_user=cast.charlie, org=cast.acme, outcome="success"
    ).exists()


@pytest.mark.parametrize(
    ("method", "url", "body"), MIXED_URLS, ids=[f"{m} {u}" for m, u, _ in MIXED_URLS]
)
def test_globex_url_with_an_acme_id_is_404(cast, acme_objects, charlie_client, method, url, body):
    before = snapshot(cast)
    successes = AuditRecord.objects.filter(actor_user=cast.charlie, outcome="success")
    successes_before = successes.count()
    response = _call(charlie_client, method, url, body, acme_objects)
    assert_error(response, 404, "NOT_FOUND")
    assert snapshot(cast) == before
    assert not TeamMember.all_orgs.filter(org=cast.globex).exists()
    assert successes.count() == successes_before


@pytest.mark.parametrize(
    ("method", "url", "body"), MIXED_URLS, ids=[f"{m} {u}" for m, u, _ in MIXED_URLS]
)
def test_acme_id_through_globex_answers_like_an_unknown_id(
    cast, acme_objects, charlie_client, method, url, body
):
    real = _call(charlie_client, method, url, body, acme_objects)
    fake_ids = {k: (v if k == "globex_team" else uuid.uuid4()) for k, v in acme_objects.items()}
    unknown = _call(charlie_client, method, url, body, fake_ids)
    assert real.status_code == unknown.status_code == 404
    assert real.json() == unknown.json()


def test_acme_members_never_appear_in_globex_lists(cast, acme_objects, charlie_client):
    for path, key in (
        ("members", lambda r: r["user"]["username"]),
        ("roles", lambda r: r["slug"]),
        ("teams", lambda r: r["slug"]),
        ("invitations", lambda r: r["email"]),
    ):
        body = charlie_client.get(f"/api/v1/orgs/globex/{path}").json()
        values = {key(row) for row in body["results"]}
        assert not values & {"alice", "bob", "vera", "dave", "ops", "ml", "frank@example.com"}, (
            path,
            values,
        )


def test_acme_role_cannot_be_used_in_globex_bodies(
    cast, acme_objects, charlie_client, django_capture_on_commit_callbacks
):
    role_id = str(acme_objects["role"])
    charlie_membership = Membership.all_orgs.get(org=cast.globex, user=cast.charlie)
    error = assert_error(
        charlie_client.post(
            "/api/v1/orgs/globex/invitations",
            {"email": "x@example.com", "role": role_id},
            format="json",
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert "role" in error["details"]
    assert_error(
        charlie_client.patch(
            f"/api/v1/orgs/globex/members/{charlie_membership.pk}", {"role": role_id}, format="json"
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert not Invitation.all_orgs.filter(org=cast.globex).exists()
    assert Membership.all_orgs.get(pk=charlie_membership.pk).role.slug == "owner"


def test_acme_member_cannot_reach_globex(cast, alice_client):
    globex_team = Team.all_orgs.create(org=cast.globex, slug="g-team", name="G team")
    assert_error(alice_client.get("/api/v1/orgs/globex"), 404, "NOT_FOUND")
    assert_error(alice_client.get(f"/api/v1/orgs/acme/teams/{globex_team.pk}"), 404, "NOT_FOUND")
    assert_error(alice_client.delete(f"/api/v1/orgs/acme/teams/{globex_team.pk}"), 404, "NOT_FOUND")
    assert Team.all_orgs.filter(pk=globex_team.pk).exists()
