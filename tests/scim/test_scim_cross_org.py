"""A SCIM token of Acme sees Acme only: Globex's people and teams are 404 whatever the
method, and provisioning someone who also belongs to Globex never touches their
account or their Globex membership."""

from __future__ import annotations

from orgs.models import Membership, Team, User
from orgs.scoping import org_scope
from orgs.services import tenancy
from scim.models import ScimUser
from tests.conftest import PASSWORD, make_user
from tests.scim.conftest import GROUP_SCHEMA, ScimClient, assert_scim_error, make_token, user_body


def test_users_of_another_org_are_404(cast, scim):
    charlie = str(cast.charlie.pk)
    assert_scim_error(scim.get(f"/Users/{charlie}"), 404)
    assert_scim_error(scim.put(f"/Users/{charlie}", user_body("charlie@example.com")), 404)
    assert_scim_error(
        scim.patch(f"/Users/{charlie}", {"op": "replace", "value": {"active": False}}), 404
    )
    assert_scim_error(scim.delete(f"/Users/{charlie}"), 404)
    assert_scim_error(scim.get("/Users/not-a-uuid"), 404)
    assert (
        scim.get("/Users", {"filter": 'userName eq "charlie@example.com"'}).json()["totalResults"]
        == 0
    )
    assert Membership.all_orgs.filter(org=cast.globex, user=cast.charlie).exists()


def test_teams_of_another_org_are_404_and_never_take_foreign_members(cast, scim):
    with org_scope(cast.globex):
        team = tenancy.team_create(
            access=_owner_access(cast.globex, cast.charlie), slug="finance", name="Finance"
        )
    assert_scim_error(scim.get(f"/Groups/{team.pk}"), 404)
    assert_scim_error(
        scim.patch(f"/Groups/{team.pk}", {"op": "replace", "value": {"displayName": "Mine"}}), 404
    )
    assert_scim_error(scim.delete(f"/Groups/{team.pk}"), 404)
    assert scim.get("/Groups").json()["totalResults"] == 0
    # Adding Globex's owner to an Acme group: not a member of Acme, refused.
    refused = scim.post(
        "/Groups",
        {
            "schemas": [GROUP_SCHEMA],
            "displayName": "Ops",
            "members": [{"value": str(cast.charlie.pk)}],
        },
    )
    assert_scim_error(refused, 400, "invalidValue")
    assert not Team.all_orgs.filter(org=cast.acme, name="Ops").exists()
    assert Team.all_orgs.get(pk=team.pk).name == "Finance"


def _owner_access(org, user):
    from orgs.access import access_for_user

    return access_for_user(org, user)


def test_provisioning_someone_of_another_org_adds_a_membership_only(cast, scim, charlie_client):
    password_hash = cast.charlie.password
    created = scim.post(
        "/Users",
        user_body(
            "charlie@example.com",
            externalId="okta-charlie",
            name={"givenName": "Chuck", "familyName": "X"},
        ),
    )
    assert created.status_code == 201, created.content
    assert created.json()["id"] == str(cast.charlie.pk)
    cast.charlie.refresh_from_db()
    assert cast.charlie.password == password_hash and cast.charlie.check_password(PASSWORD)
    assert cast.charlie.first_name == "" and cast.charlie.username == "charlie"
    globex = Membership.all_orgs.select_related("role").get(org=cast.globex, user=cast.charlie)
    assert globex.role.slug == "owner"
    assert Membership.all_orgs.get(org=cast.acme, user=cast.charlie).role.slug == "member"
    assert ScimUser.all_orgs.get(org=cast.acme, user=cast.charlie).created_user is False
    # Acme's IdP renames and deactivates: Globex keeps its owner, with the same account.
    scim.put(
        f"/Users/{cast.charlie.pk}", user_body("charlie@example.com", name={"givenName": "Renamed"})
    )
    off = scim.patch(f"/Users/{cast.charlie.pk}", {"op": "replace", "value": {"active": False}})
    assert off.status_code == 200, off.content
    assert not Membership.all_orgs.filter(org=cast.acme, user=cast.charlie).exists()
    assert Membership.all_orgs.filter(org=cast.globex, user=cast.charlie).exists()
    cast.charlie.refresh_from_db()
    assert cast.charlie.first_name == "" and cast.charlie.is_active
    # Charlie signs in again with the unchanged password and still owns Globex.
    login = charlie_client.post(
        "/api/v1/auth/login", {"username": "charlie", "password": PASSWORD}, format="json"
    )
    assert login.status_code == 200, login.content


def test_a_user_another_directory_created_is_never_linked_by_e_mail(
    cast, alice_client, charlie_client
):
    """Globex's IdP asserts an address Acme's people use: Acme's IdP must not get
    Globex's account (whoever controls Globex's IdP would sign in as it)."""
    globex = ScimClient(make_token(charlie_client, org="globex")["token"])
    squatter = globex.post("/Users", user_body("eve@acme.example"))
    assert squatter.status_code == 201, squatter.content
    acme = ScimClient(make_token(alice_client)["token"])
    refused = acme.post("/Users", user_body("eve@acme.example"))
    assert_scim_error(refused, 409, "uniqueness")
    assert not Membership.all_orgs.filter(org=cast.acme, user_id=squatter.json()["id"]).exists()


def test_an_existing_account_is_linked_by_its_e_mail_not_its_username(cast, scim):
    make_user("mallory", email="mallory@evil.example")
    squat = make_user("frank@acme.example", email="other@evil.example")
    refused = scim.post("/Users", user_body("frank@acme.example"))
    assert_scim_error(refused, 409, "uniqueness")
    assert not Membership.all_orgs.filter(user=squat).exists()
    # The account whose e-mail is the address is the one linked.
    grace = make_user("grace", email="grace@acme.example")
    linked = scim.post("/Users", user_body("grace@acme.example"))
    assert linked.status_code == 201 and linked.json()["id"] == str(grace.pk)
    assert User.objects.get(pk=grace.pk).username == "grace"


def test_an_existing_member_is_found_not_duplicated(cast, scim):
    conflict = scim.post("/Users", user_body("bob@example.com"))
    assert_scim_error(conflict, 409, "uniqueness")
    created = scim.post("/Users", user_body("new@acme.example", externalId="x1"))
    assert created.status_code == 201
    assert_scim_error(scim.post("/Users", user_body("NEW@acme.example")), 409, "uniqueness")
    other = scim.post("/Users", user_body("other@acme.example", externalId="x1"))
    assert_scim_error(other, 409, "uniqueness")
    assert not User.objects.filter(username="other@acme.example").exists()
