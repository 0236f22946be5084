"""Teams: CRUD and team members (org members only)."""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditRecord
from orgs.models import Membership, Team, TeamMember
from tests.conftest import add_member, assert_error, client_for, make_user

TEAM_FIELDS = {"id", "slug", "name", "description", "member_count", "created_at"}


def make_team(org, slug: str = "ml-platform", name: str = "ML platform") -> Team:
    return Team.all_orgs.create(org=org, slug=slug, name=name)


def join(team: Team, user) -> TeamMember:
    return TeamMember.all_orgs.create(org=team.org, team=team, user=user)


def team_url(team: Team, org: str = "acme") -> str:
    return f"/api/v1/orgs/{org}/teams/{team.pk}"


def members_of(team: Team) -> list[str]:
    return sorted(TeamMember.all_orgs.filter(team=team).values_list("user__username", flat=True))


# --- create ------------------------------------------------------------------------------------


def test_admin_creates_a_team(cast, dave_client):
    response = dave_client.post(
        "/api/v1/orgs/acme/teams",
        {"slug": "ml-platform", "name": "ML platform", "description": "Runs the models"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == TEAM_FIELDS
    team = Team.all_orgs.get(pk=body["id"])
    assert (team.org, team.slug, team.name, team.description) == (
        cast.acme,
        "ml-platform",
        "ML platform",
        "Runs the models",
    )
    record = AuditRecord.objects.get(action="team:manage", org=cast.acme)
    assert record.outcome == "success" and record.actor_user == cast.dave
    assert record.target_id == str(team.pk) and record.data == {
        "op": "create",
        "slug": "ml-platform",
    }


def test_duplicate_team_slug_is_409(cast, alice_client):
    make_team(cast.acme)
    response = alice_client.post(
        "/api/v1/orgs/acme/teams", {"slug": "ml-platform", "name": "Again"}, format="json"
    )
    error = assert_error(response, 409, "CONFLICT")
    assert "slug" in error["details"]
    assert Team.all_orgs.filter(org=cast.acme).count() == 1
    assert not AuditRecord.objects.filter(action="team:manage", outcome="success").exists()


def test_same_team_slug_in_another_org_is_fine(cast, alice_client):
    make_team(cast.globex)
    response = alice_client.post(
        "/api/v1/orgs/acme/teams", {"slug": "ml-platform", "name": "ML"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert Team.all_orgs.filter(slug="ml-platform").count() == 2


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"name"}),  # slug: derived from the name
        ({"slug": "Not Valid", "name": "X"}, {"slug"}),
        ({"slug": "ok", "name": ""}, {"name"}),
        ({"slug": "ok", "name": "x" * 201}, {"name"}),
        ({"slug": "ok", "name": "X", "description": "d" * 501}, {"description"}),
    ],
)
def test_create_invalid_input_is_400(cast, alice_client, payload, fields):
    error = assert_error(
        alice_client.post("/api/v1/orgs/acme/teams", payload, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert set(error["details"]) == fields
    assert not Team.all_orgs.exists()


@pytest.mark.parametrize("who", ["bob", "vera"])
def test_create_needs_team_manage(cast, who):
    response = client_for(getattr(cast, who)).post(
        "/api/v1/orgs/acme/teams", {"slug": "t", "name": "T"}, format="json"
    )
    error = assert_error(response, 403, "PERMISSION_DENIED")
    assert "team:manage" in error["message"]
    assert not Team.all_orgs.exists()
    assert AuditRecord.objects.filter(
        action="team:manage", outcome="denied", actor_user=getattr(cast, who)
    ).exists()


def test_create_other_org_404_and_unauthenticated_401(cast, charlie_client, anon_client):
    payload = {"slug": "t", "name": "T"}
    assert_error(
        charlie_client.post("/api/v1/orgs/acme/teams", payload, format="json"), 404, "NOT_FOUND"
    )
    assert_error(
        anon_client.post("/api/v1/orgs/acme/teams", payload, format="json"),
        401,
        "AUTHENTICATION_FAILED",
    )
    assert not Team.all_orgs.exists()


# --- read ----------------------------------------------------------------------------------------


def test_any_member_lists_and_reads_teams(cast, vera_client):
    ml = make_team(cast.acme)
    make_team(cast.acme, "web", "Web")
    make_team(cast.globex, "globex-team", "Globex team")
    join(ml, cast.bob)
    join(ml, cast.vera)
    body = vera_client.get("/api/v1/orgs/acme/teams").json()
    assert body["count"] == 2
    assert [(t["slug"], t["member_count"]) for t in body["results"]] == [
        ("ml-platform", 2),
        ("web", 0),
    ]
    detail = vera_client.get(team_url(ml))
    assert detail.status_code == 200, detail.content
    assert detail.json()["id"] == str(ml.pk) and detail.json()["member_count"] == 2
    assert_error(vera_client.get(f"/api/v1/orgs/acme/teams/{uuid.uuid4()}"), 404, "NOT_FOUND")


def test_list_other_org_404_and_unauthenticated_401(cast, charlie_client, anon_client):
    ml = make_team(cast.acme)
    assert_error(charlie_client.get("/api/v1/orgs/acme/teams"), 404, "NOT_FOUND")
    assert_error(charlie_client.get(team_url(ml, org="globex")), 404, "NOT_FOUND")
    assert_error(anon_client.get(team_url(ml)), 401, "AUTHENTICATION_FAILED")
    assert charlie_client.get("/api/v1/orgs/globex/teams").json()["count"] == 0


# --- update and delete ----------------------------------------------------------------------------


def test_update_team(cast, dave_client):
    ml = make_team(cast.acme)
    response = dave_client.patch(
        team_url(ml), {"name": "Machine learning", "description": "New"}, format="json"
    )
    assert response.status_code == 200, response.content
    ml.refresh_from_db()
    assert (ml.name, ml.description, ml.slug) == ("Machine learning", "New", "ml-platform")
    record = AuditRecord.objects.get(action="team:manage")
    assert record.data == {"op": "update", "changed": ["name", "description"]}


def test_update_invalid_input_is_400(cast, dave_client):
    ml = make_team(cast.acme)
    error = assert_error(
        dave_client.patch(team_url(ml), {"name": ""}, format="json"), 400, "VALIDATION_ERROR"
    )
    assert set(error["details"]) == {"name"}
    ml.refresh_from_db()
    assert ml.name == "ML platform"


def test_update_and_delete_need_team_manage(cast, bob_client):
    ml = make_team(cast.acme)
    assert_error(
        bob_client.patch(team_url(ml), {"name": "Mine"}, format="json"), 403, "PERMISSION_DENIED"
    )
    assert_error(bob_client.delete(team_url(ml)), 403, "PERMISSION_DENIED")
    ml.refresh_from_db()
    assert ml.name == "ML platform"


def test_update_and_delete_other_org_is_404(cast, charlie_client):
    ml = make_team(cast.acme)
    assert_error(
        charlie_client.patch(team_url(ml, org="globex"), {"name": "Mine"}, format="json"),
        404,
        "NOT_FOUND",
    )
    assert_error(charlie_client.delete(team_url(ml, org="globex")), 404, "NOT_FOUND")
    assert_error(charlie_client.delete(team_url(ml)), 404, "NOT_FOUND")
    assert Team.all_orgs.get(pk=ml.pk).name == "ML platform"


def test_delete_team_removes_its_members(cast, alice_client):
    ml = make_team(cast.acme)
    join(ml, cast.bob)
    response = alice_client.delete(team_url(ml))
    assert response.status_code == 204, response.content
    assert not Team.all_orgs.filter(pk=ml.pk).exists()
    assert not TeamMember.all_orgs.filter(team_id=ml.pk).exists()
    assert Membership.all_orgs.filter(org=cast.acme, user=cast.bob).exists()
    record = AuditRecord.objects.get(action="team:manage")
    assert record.data == {"op": "delete", "slug": "ml-platform"} and record.target_id == str(ml.pk)
    assert_error(alice_client.get(team_url(ml)), 404, "NOT_FOUND")


# --- team members ------------------------------------------------------------------------------------


def test_add_list_and_remove_team_members(cast, dave_client):
    ml = make_team(cast.acme)
    response = dave_client.post(
        f"{team_url(ml)}/members", {"user_id": str(cast.bob.pk)}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["user_id"] == str(cast.bob.pk) and response.json()["username"] == "bob"
    assert members_of(ml) == ["bob"]
    added = AuditRecord.objects.get(action="team:manage", data__op="member_add")
    assert (
        added.data["user"] == "bob"
        and added.actor_user == cast.dave
        and added.target_id == str(ml.pk)
    )

    dave_client.post(f"{team_url(ml)}/members", {"user_id": str(cast.vera.pk)}, format="json")
    listing = client_for(cast.vera).get(f"{team_url(ml)}/members").json()
    assert listing["count"] == 2
    assert [m["username"] for m in listing["results"]] == ["bob", "vera"]

    response = dave_client.delete(f"{team_url(ml)}/members/{cast.bob.pk}")
    assert response.status_code == 204, response.content
    assert members_of(ml) == ["vera"]
    removed = AuditRecord.objects.get(action="team:manage", data__op="member_remove")
    assert removed.data["user"] == "bob"


def test_adding_twice_is_409(cast, dave_client):
    ml = make_team(cast.acme)
    join(ml, cast.bob)
    response = dave_client.post(
        f"{team_url(ml)}/members", {"user_id": str(cast.bob.pk)}, format="json"
    )
    assert_error(response, 409, "CONFLICT")
    assert members_of(ml) == ["bob"]
    assert not AuditRecord.objects.filter(action="team:manage", outcome="success").exists()


@pytest.mark.parametrize("who", ["charlie", "stranger", "random"])
def test_only_org_members_can_join_a_team(cast, dave_client, who):
    ml = make_team(cast.acme)
    user_id = {
        "charlie": cast.charlie.pk,
        "stranger": make_user("stranger").pk,
        "random": uuid.uuid4(),
    }[who]
    response = dave_client.post(f"{team_url(ml)}/members", {"user_id": str(user_id)}, format="json")
    assert_error(response, 404, "NOT_FOUND")
    assert members_of(ml) == []


def test_add_member_invalid_input_is_400(cast, dave_client):
    ml = make_team(cast.acme)
    for payload in ({}, {"user_id": "not-a-uuid"}):
        error = assert_error(
            dave_client.post(f"{team_url(ml)}/members", payload, format="json"),
            400,
            "VALIDATION_ERROR",
        )
        assert set(error["details"]) == {"user_id"}
    assert members_of(ml) == []


def test_removing_a_non_member_is_404(cast, dave_client):
    ml = make_team(cast.acme)
    # bob is in the org but not in the team; charlie is in neither.
    assert_error(dave_client.delete(f"{team_url(ml)}/members/{cast.bob.pk}"), 404, "NOT_FOUND")
    assert_error(dave_client.delete(f"{team_url(ml)}/members/{cast.charlie.pk}"), 404, "NOT_FOUND")
    assert not AuditRecord.objects.filter(action="team:manage", outcome="success").exists()


def test_team_members_need_team_manage(cast, bob_client):
    ml = make_team(cast.acme)
    join(ml, cast.vera)
    assert_error(
        bob_client.post(f"{team_url(ml)}/members", {"user_id": str(cast.bob.pk)}, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    assert_error(
        bob_client.delete(f"{team_url(ml)}/members/{cast.vera.pk}"), 403, "PERMISSION_DENIED"
    )
    assert members_of(ml) == ["vera"]
    # Reading needs only member:view.
    assert bob_client.get(f"{team_url(ml)}/members").status_code == 200


def test_team_members_other_org_is_404(cast, charlie_client):
    ml = make_team(cast.acme)
    join(ml, cast.bob)
    globex_team = make_team(cast.globex, "g", "G")
    assert_error(charlie_client.get(f"{team_url(ml, org='globex')}/members"), 404, "NOT_FOUND")
    assert_error(
        charlie_client.post(
            f"{team_url(ml, org='globex')}/members",
            {"user_id": str(cast.charlie.pk)},
            format="json",
        ),
        404,
        "NOT_FOUND",
    )
    assert_error(
        charlie_client.delete(f"{team_url(ml, org='globex')}/members/{cast.bob.pk}"),
        404,
        "NOT_FOUND",
    )
    # An acme member cannot be pulled into a globex team.
    assert_error(
        charlie_client.post(
            f"{team_url(globex_team, org='globex')}/members",
            {"user_id": str(cast.bob.pk)},
            format="json",
        ),
        404,
        "NOT_FOUND",
    )
    assert members_of(ml) == ["bob"] and members_of(globex_team) == []


def test_team_members_unauthenticated_is_401(cast, anon_client):
    ml = make_team(cast.acme)
    assert_error(anon_client.get(f"{team_url(ml)}/members"), 401, "AUTHENTICATION_FAILED")
    assert_error(
        anon_client.post(f"{team_url(ml)}/members", {"user_id": str(cast.bob.pk)}, format="json"),
        401,
        "AUTHENTICATION_FAILED",
    )
    assert members_of(ml) == []


def test_user_in_two_orgs_keeps_the_other_orgs_team(cast, charlie_client, alice_client):
    """Leaving acme drops acme team seats only."""
    add_member(cast.globex, cast.bob, "member")
    acme_team, globex_team = make_team(cast.acme), make_team(cast.globex, "g", "G")
    join(acme_team, cast.bob)
    assert (
        charlie_client.post(
            f"{team_url(globex_team, org='globex')}/members",
            {"user_id": str(cast.bob.pk)},
            format="json",
        ).status_code
        == 201
    )
    bob_membership = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
    assert alice_client.delete(f"/api/v1/orgs/acme/members/{bob_membership.pk}").status_code == 204
    assert members_of(acme_team) == [] and members_of(globex_team) == ["bob"]
