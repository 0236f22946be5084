"""Bad filters, bodies and operations are refused in SCIM's error shape (RFC 7644
3.12: schemas, status as a string, scimType), never the contract's envelope, and
nothing changes."""

from __future__ import annotations

import pytest

from orgs.models import Membership, User
from tests.scim.conftest import PATCH_SCHEMA, USER_SCHEMA, assert_scim_error, user_body


@pytest.mark.parametrize(
    "text",
    [
        "userName eq",
        'userName xx "a"',
        '(userName eq "a"',
        'password eq "secret"',  # an attribute SCIM cannot filter on here: never ignored
        'title eq "Engineer"',
        'userName gt "a"',
        'active eq "maybe"',
        'emails[type eq "work"].value eq "a@b.example"',
        'urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "x"',
        'userName eq "' + "a" * 1200 + '"',
    ],
)
def test_bad_filters_are_invalid_filter(cast, scim, text):
    assert_scim_error(scim.get("/Users", {"filter": text}), 400, "invalidFilter")


def test_an_unsupported_filter_never_widens_the_answer(cast, scim):
    # Filters that some libraries drop silently would list everyone: here they fail.
    assert_scim_error(
        scim.get("/Users", {"filter": 'nickName eq "x" or userName eq "bob@example.com"'}),
        400,
        "invalidFilter",
    )
    assert_scim_error(scim.get("/Groups", {"filter": 'members.value eq "x"'}), 400, "invalidFilter")


def test_more_filter_operators(cast, scim):
    def total(text: str) -> int:
        response = scim.get("/Users", {"filter": text})
        assert response.status_code == 200, response.content
        return response.json()["totalResults"]

    assert total('userName sw "ali"') == 1
    assert total('userName co "example"') == 4
    assert total('userName ew "@example.com" and not (userName eq "bob@example.com")') == 3
    assert total('userName eq "bob@example.com" or userName eq "vera@example.com"') == 2
    assert total('userName ne "bob@example.com"') == 3
    assert total("externalId pr") == 0
    assert total('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "dave@example.com"') == 1


@pytest.mark.parametrize(
    ("body", "scim_type"),
    [
        ([], "invalidSyntax"),
        ({"userName": "x@acme.example"}, "invalidSyntax"),  # no schemas
        ({"schemas": [USER_SCHEMA]}, "invalidValue"),  # no userName
        ({"schemas": [USER_SCHEMA], "userName": 12}, "invalidValue"),
        (
            {"schemas": [USER_SCHEMA], "userName": "x@acme.example", "active": "perhaps"},
            "invalidValue",
        ),
        (
            {
                "schemas": [USER_SCHEMA],
                "userName": "x@acme.example",
                "emails": [{"value": "not-mail"}],
            },
            "invalidValue",
        ),
        ({"schemas": [USER_SCHEMA], "userName": "x@acme.example", "emails": "x"}, "invalidValue"),
        ({"schemas": [USER_SCHEMA], "userName": "x@acme.example", "name": "X"}, "invalidValue"),
        ({"schemas": [USER_SCHEMA], "userName": "x" * 151}, "invalidValue"),
        (user_body("x@acme.example", password="hunter2hunter2"), "invalidValue"),
    ],
)
def test_bad_user_bodies(cast, scim, body, scim_type):
    assert_scim_error(scim.post("/Users", body), 400, scim_type)
    assert not User.objects.filter(username="x@acme.example").exists()


def test_malformed_json_is_invalid_syntax(cast, scim):
    response = scim.http.post(
        "/scim/v2/Users", data="{not json", content_type="application/scim+json"
    )
    assert_scim_error(response, 400, "invalidSyntax")


@pytest.mark.parametrize(
    ("operations", "scim_type"),
    [
        ([], "invalidSyntax"),
        ([{"op": "move", "path": "active", "value": False}], "invalidSyntax"),
        ([{"op": "remove"}], "noTarget"),
        ([{"op": "replace", "path": "active"}], "invalidValue"),
        ([{"op": "replace", "path": "active", "value": "nope"}], "invalidValue"),
        ([{"op": "replace", "path": "bad path!", "value": 1}], "invalidPath"),
        ([{"op": "remove", "path": "userName"}], "mutability"),
        ([{"op": "replace", "path": "id", "value": "x"}], "mutability"),
        ([{"op": "replace", "path": "password", "value": "hunter2hunter2"}], "mutability"),
        ([{"op": "replace", "value": "not an object"}], "invalidValue"),
    ],
)
def test_bad_patch_operations(cast, scim, operations, scim_type):
    response = scim._send(
        "patch", f"/Users/{cast.bob.pk}", {"schemas": [PATCH_SCHEMA], "Operations": operations}
    )
    assert_scim_error(response, 400, scim_type)
    assert Membership.all_orgs.filter(org=cast.acme, user=cast.bob).exists()


def test_patch_without_the_patch_schema_is_refused(cast, scim):
    response = scim._send(
        "patch",
        f"/Users/{cast.bob.pk}",
        {"Operations": [{"op": "replace", "value": {"active": False}}]},
    )
    assert_scim_error(response, 400, "invalidSyntax")
    assert Membership.all_orgs.filter(org=cast.acme, user=cast.bob).exists()


def test_bad_group_requests(cast, scim):
    group_schema = "urn:ietf:params:scim:schemas:core:2.0:Group"
    assert_scim_error(scim.post("/Groups", {"schemas": [group_schema]}), 400, "invalidValue")
    assert_scim_error(
        scim.post("/Groups", {"schemas": [group_schema], "displayName": "!!!"}), 400, "invalidValue"
    )
    assert_scim_error(
        scim.post(
            "/Groups",
            {"schemas": [group_schema], "displayName": "G", "members": [{"value": "nope"}]},
        ),
        400,
        "invalidValue",
    )
    created = scim.post("/Groups", {"schemas": [group_schema], "displayName": "Data"})
    assert created.status_code == 201
    assert_scim_error(
        scim.post("/Groups", {"schemas": [group_schema], "displayName": "data"}), 409, "uniqueness"
    )
    gid = created.json()["id"]
    assert_scim_error(
        scim.patch(f"/Groups/{gid}", {"op": "replace", "path": "owner", "value": "x"}),
        400,
        "invalidPath",
    )


def test_unknown_things_are_404_and_paging_is_checked(cast, scim):
    assert_scim_error(scim.get("/Users/00000000-0000-0000-0000-000000000000"), 404)
    assert_scim_error(scim.get("/Bulk"), 404)
    assert_scim_error(scim.get("/Schemas/urn:nope"), 404)
    assert_scim_error(scim.get("/Users", {"count": "ten"}), 400, "invalidValue")
    listed = scim.get("/Users", {"startIndex": "-5", "count": "0"})
    assert listed.status_code == 200 and listed.json()["Resources"] == []
    assert listed.json()["totalResults"] == 4 and listed.json()["startIndex"] == 1
    assert_scim_error(
        scim.http.post(
            "/scim/v2/Users/" + str(cast.bob.pk), data="{}", content_type="application/scim+json"
        ),
        405,
    )


def test_a_token_is_bounded_by_its_creators_current_role(cast, alice_client, dave_client):
    """An Admin's token, after the Admin is moved to a role with sso:manage but without
    member:delete: it still reads, it cannot deactivate (bounded delegation at use)."""
    from tests.scim.conftest import ScimClient, make_token

    role = alice_client.post(
        "/api/v1/orgs/acme/roles",
        {"slug": "sso-reader", "name": "SSO reader", "permissions": ["sso:manage", "member:view"]},
        format="json",
    )
    assert role.status_code == 201, role.content
    token = ScimClient(make_token(dave_client, role="viewer")["token"])
    dave = Membership.all_orgs.get(org=cast.acme, user=cast.dave)
    changed = alice_client.patch(
        f"/api/v1/orgs/acme/members/{dave.pk}", {"role": "sso-reader"}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert token.get("/Users").status_code == 200
    refused = token.patch(f"/Users/{cast.bob.pk}", {"op": "replace", "value": {"active": False}})
    assert_scim_error(refused, 403)
    assert Membership.all_orgs.filter(org=cast.acme, user=cast.bob).exists()
    # Nor may it provision anyone (member:invite is beyond its creator now).
    assert_scim_error(token.post("/Users", user_body("newbie@acme.example")), 403)
