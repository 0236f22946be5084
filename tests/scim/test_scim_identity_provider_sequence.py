"""What Okta and Azure AD send, in the order they send it: look the user up by filter,
create, read, update, push group membership, deactivate, reactivate. Black box through
/scim/v2, checking the database and the audit trail behind it."""

from __future__ import annotations

from audit.models import AuditRecord
from orgs.models import Membership, Team, TeamMember, User
from scim.models import ScimUser
from tests.scim.conftest import GROUP_SCHEMA, USER_SCHEMA, user_body


def _only(response) -> dict:
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    assert body["totalResults"] == 1 and len(body["Resources"]) == 1, body
    return body["Resources"][0]


def test_okta_provisioning_sequence(cast, scim, acme_token):
    # 1. Okta asks whether the person exists.
    missing = scim.get(
        "/Users", {"filter": 'userName eq "ann@acme.example"', "startIndex": 1, "count": 100}
    )
    assert missing.status_code == 200, missing.content
    assert missing["Content-Type"].startswith("application/scim+json")
    assert missing.json()["totalResults"] == 0 and missing.json()["Resources"] == []

    # 2. Creates them (Okta's payload, with attributes Inferia does not keep).
    created = scim.post(
        "/Users",
        user_body("ann@acme.example", externalId="00u1okta", locale="en-US", title="Engineer"),
    )
    assert created.status_code == 201, created.content
    ann = created.json()
    assert ann["schemas"] == [USER_SCHEMA]
    assert ann["userName"] == "ann@acme.example" and ann["externalId"] == "00u1okta"
    assert ann["active"] is True and ann["name"] == {"givenName": "Ann", "familyName": "Example"}
    assert ann["emails"] == [{"value": "ann@acme.example", "primary": True, "type": "work"}]
    assert created["Location"] == ann["meta"]["location"]
    assert ann["meta"]["location"].endswith(f"/scim/v2/Users/{ann['id']}")
    user = User.objects.get(pk=ann["id"])
    assert user.username == "ann@acme.example" and not user.has_usable_password()
    membership = Membership.all_orgs.select_related("role").get(org=cast.acme, user=user)
    assert membership.role.slug == "member"
    assert membership.granted_by_membership == Membership.all_orgs.get(
        org=cast.acme, user=cast.alice
    )
    record = AuditRecord.objects.get(action="member:invite", target_id=ann["id"])
    assert record.actor_label == f"scim:{acme_token['prefix']}" and record.actor_user is None
    assert record.org == cast.acme and record.data["via"] == "scim"

    # 3. Reads and finds them by each filter IdPs use.
    assert scim.get(f"/Users/{ann['id']}").json()["userName"] == "ann@acme.example"
    for text in (
        'userName eq "ANN@acme.example"',
        'externalId eq "00u1okta"',
        'emails.value eq "ann@acme.example"',
        'emails[value eq "ann@acme.example"]',
        'userName eq "ann@acme.example" and active eq true',
    ):
        assert _only(scim.get("/Users", {"filter": text}))["id"] == ann["id"], text
    # externalId is case-exact (RFC 7643 section 3.1).
    assert scim.get("/Users", {"filter": 'externalId eq "00U1OKTA"'}).json()["totalResults"] == 0

    # 4. A profile change arrives as a PUT of the whole user.
    replaced = scim.put(
        f"/Users/{ann['id']}",
        user_body(
            "ann@acme.example",
            externalId="00u1okta",
            name={"givenName": "Annie", "familyName": "Ex"},
        ),
    )
    assert replaced.status_code == 200, replaced.content
    assert replaced.json()["name"] == {"givenName": "Annie", "familyName": "Ex"}
    user.refresh_from_db()
    assert user.first_name == "Annie"  # this directory created the account, nobody shares it

    # 5. Group push: create the group, then add and remove members by PATCH.
    group = scim.post(
        "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "ML Platform", "members": []}
    )
    assert group.status_code == 201, group.content
    gid = group.json()["id"]
    team = Team.all_orgs.get(pk=gid)
    assert team.org == cast.acme and team.slug == "ml-platform" and team.name == "ML Platform"
    added = scim.patch(
        f"/Groups/{gid}",
        {
            "op": "add",
            "path": "members",
            "value": [{"value": ann["id"], "display": "ann@acme.example"}],
        },
    )
    assert added.status_code == 200, added.content
    assert [m["value"] for m in added.json()["members"]] == [ann["id"]]
    assert TeamMember.all_orgs.filter(team=team, user=user).exists()
    assert _only(scim.get("/Groups", {"filter": 'displayName eq "ML Platform"'}))["id"] == gid
    assert [g["value"] for g in scim.get(f"/Users/{ann['id']}").json()["groups"]] == [gid]
    renamed = scim.patch(
        f"/Groups/{gid}", {"op": "replace", "value": {"id": gid, "displayName": "ML Platform Team"}}
    )
    assert renamed.status_code == 200 and renamed.json()["displayName"] == "ML Platform Team"
    removed = scim.patch(
        f"/Groups/{gid}", {"op": "remove", "path": f'members[value eq "{ann["id"]}"]'}
    )
    assert removed.status_code == 200 and removed.json()["members"] == []
    assert not TeamMember.all_orgs.filter(team=team).exists()
    assert (
        AuditRecord.objects.filter(
            action="team:manage", actor_label=f"scim:{acme_token['prefix']}"
        ).count()
        >= 4
    )  # create, member add, rename, member remove

    # 6. Deactivation: Okta's PATCH replace without a path.
    off = scim.patch(f"/Users/{ann['id']}", {"op": "replace", "value": {"active": False}})
    assert off.status_code == 200, off.content
    assert off.json()["active"] is False
    assert not Membership.all_orgs.filter(org=cast.acme, user=user).exists()
    assert ScimUser.all_orgs.get(org=cast.acme, user=user).active is False
    # The deactivated user stays readable and findable, as the IdP expects.
    assert scim.get(f"/Users/{ann['id']}").json()["active"] is False
    assert _only(scim.get("/Users", {"filter": "active eq false"}))["id"] == ann["id"]

    # 7. Reactivation makes them a member again.
    on = scim.patch(f"/Users/{ann['id']}", {"op": "replace", "value": {"active": True}})
    assert on.status_code == 200 and on.json()["active"] is True
    assert Membership.all_orgs.filter(org=cast.acme, user=user).exists()

    # 8. DELETE: gone from the org and from SCIM, the account itself stays.
    assert scim.delete(f"/Users/{ann['id']}").status_code == 204
    assert scim.get(f"/Users/{ann['id']}").status_code == 404
    assert not Membership.all_orgs.filter(user=user).exists()
    assert User.objects.filter(pk=user.pk).exists()
    # Provisioned again later: the same account comes back.
    again = scim.post("/Users", user_body("ann@acme.example", externalId="00u1okta"))
    assert again.status_code == 201 and again.json()["id"] == ann["id"]


def test_azure_ad_patch_style(cast, scim):
    created = scim.post("/Users", user_body("zed@acme.example", externalId="aad-zed"))
    assert created.status_code == 201, created.content
    zed = created.json()
    # Azure AD sends one path per attribute, capitalised ops, booleans as strings.
    changed = scim.patch(
        f"/Users/{zed['id']}",
        {"op": "Replace", "path": "displayName", "value": "Zed Z"},
        {"op": "Add", "path": "name.familyName", "value": "Zulu"},
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "zed@acme.example"},
        {
            "op": "Add",
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            "value": "R&D",
        },
    )
    assert changed.status_code == 200, changed.content
    body = changed.json()
    assert body["displayName"] == "Zed Z" and body["name"]["familyName"] == "Zulu"
    off = scim.patch(f"/Users/{zed['id']}", {"op": "Replace", "path": "active", "value": "False"})
    assert off.status_code == 200 and off.json()["active"] is False
    assert not Membership.all_orgs.filter(org=cast.acme, user_id=zed["id"]).exists()

    # Groups: Azure removes with a value list and adds with a path.
    bob_id = str(cast.bob.pk)
    group = scim.post(
        "/Groups",
        {
            "schemas": [GROUP_SCHEMA],
            "displayName": "Sales",
            "externalId": "aad-g1",
            "members": [{"value": bob_id}],
        },
    )
    assert group.status_code == 201, group.content
    gid = group.json()["id"]
    assert group.json()["externalId"] == "aad-g1"
    assert [m["value"] for m in group.json()["members"]] == [bob_id]
    assert (
        scim.get(f"/Groups/{gid}", {"excludedAttributes": "members"}).json().get("members") is None
    )
    out = scim.patch(
        f"/Groups/{gid}", {"op": "Remove", "path": "members", "value": [{"value": bob_id}]}
    )
    assert out.status_code == 200 and out.json()["members"] == []
    assert _only(scim.get("/Groups", {"filter": 'externalId eq "aad-g1"'}))["id"] == gid
    assert scim.delete(f"/Groups/{gid}").status_code == 204
    assert not Team.all_orgs.filter(pk=gid).exists()


def test_members_who_joined_by_invitation_are_users_too(cast, scim):
    listed = scim.get("/Users", {"startIndex": 1, "count": 2})
    assert listed.status_code == 200
    body = listed.json()
    # alice, bob, vera, dave: four members of Acme, two per page; nobody of Globex.
    assert body["totalResults"] == 4 and body["itemsPerPage"] == 2 and body["startIndex"] == 1
    page_two = scim.get("/Users", {"startIndex": 3, "count": 2}).json()
    names = {u["userName"] for u in body["Resources"] + page_two["Resources"]}
    assert names == {"alice@example.com", "bob@example.com", "vera@example.com", "dave@example.com"}
    bob = _only(scim.get("/Users", {"filter": 'userName eq "bob@example.com"'}))
    assert bob["id"] == str(cast.bob.pk) and bob["active"] is True and "externalId" not in bob
    # The IdP links its record to the existing member with a PUT (externalId kept per org).
    linked = scim.put(f"/Users/{bob['id']}", user_body("bob@example.com", externalId="00ubob"))
    assert linked.status_code == 200 and linked.json()["externalId"] == "00ubob"
    cast.bob.refresh_from_db()
    assert cast.bob.first_name == ""  # an account the directory did not create is not rewritten


def test_discovery_endpoints(scim):
    config = scim.get("/ServiceProviderConfig")
    assert config.status_code == 200
    body = config.json()
    assert body["patch"]["supported"] is True and body["bulk"]["supported"] is False
    assert body["filter"] == {"supported": True, "maxResults": 200}
    assert body["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = scim.get("/ResourceTypes").json()
    assert {t["id"] for t in types["Resources"]} == {"User", "Group"}
    assert scim.get("/ResourceTypes/User").json()["endpoint"] == "/Users"
    schemas = scim.get("/Schemas").json()
    assert {s["id"] for s in schemas["Resources"]} == {USER_SCHEMA, GROUP_SCHEMA}
    user_schema = scim.get(f"/Schemas/{USER_SCHEMA}").json()
    assert {a["name"] for a in user_schema["attributes"]} >= {
        "userName",
        "externalId",
        "active",
        "emails",
    }
