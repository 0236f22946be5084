"""Deactivation through SCIM (PATCH active=false, or DELETE) ends everything the person
had in the org at once: the membership, their personal API keys (refused by the
running gateway on the very next call, over real HTTP), their refresh and access
tokens and their dashboard sessions. The last Owner stays; an Owner goes only by the
token of an Owner."""

from __future__ import annotations

import openai
import pytest
from django.test import Client

from audit.models import AuditRecord
from keys.models import ApiKey
from orgs.models import Membership, RefreshTokenRecord
from tests.conftest import PASSWORD, add_member, assert_error, make_user
from tests.gateway.conftest import assert_sdk_error
from tests.scim.conftest import ScimClient, assert_scim_error, make_token

CHAT = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("how", ["patch", "azure-patch", "delete"])
def test_deactivation_refuses_the_key_refresh_and_session_at_once(backend, llm, cast, how):
    bob_key = llm.key_info()
    sdk = llm.sdk(bob_key["key"])
    assert sdk.chat.completions.create(model="openai-main/gpt-4o", messages=CHAT).choices
    assert sdk.chat.completions.create(model="openai-main/gpt-4o", messages=CHAT).choices  # cached
    api = Client()
    login = api.post(
        "/api/v1/auth/login",
        {"username": "bob", "password": PASSWORD},
        content_type="application/json",
    ).json()
    dashboard = Client()
    assert dashboard.login(username="bob", password=PASSWORD)
    assert dashboard.get("/orgs/acme/members").status_code == 200
    scim = ScimClient(make_token(llm.admin)["token"])

    path = f"/Users/{cast.bob.pk}"
    if how == "patch":
        response = scim.patch(path, {"op": "replace", "value": {"active": False}})
    elif how == "azure-patch":
        response = scim.patch(path, {"op": "Replace", "path": "active", "value": "False"})
    else:
        response = scim.delete(path)
    assert response.status_code in (200, 204), response.content

    # The running gateway refuses the personal key on the very next call.
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk.chat.completions.create(model="openai-main/gpt-4o", messages=CHAT)
    error = assert_sdk_error(caught.value, 401, "AUTHENTICATION_FAILED")
    assert error["message"] == f"API key {bob_key['prefix']} is revoked"
    with pytest.raises(openai.AuthenticationError):
        sdk.models.list()
    # The refresh token and the access token are dead, and so is the dashboard session.
    refreshed = api.post(
        "/api/v1/auth/refresh",
        {"refresh_token": login["refresh_token"]},
        content_type="application/json",
    )
    assert_error(refreshed, 401, "AUTHENTICATION_FAILED")
    me = api.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {login['access_token']}")
    assert_error(me, 401, "AUTHENTICATION_FAILED")
    page = dashboard.get("/orgs/acme/members")
    assert page.status_code == 302 and page["Location"].startswith("/login")
    assert not RefreshTokenRecord.objects.filter(user=cast.bob, revoked_at__isnull=True).exists()
    assert not Membership.all_orgs.filter(org=cast.acme, user=cast.bob).exists()
    # Audited with the token as actor: the removal, the key, the sessions.
    token_label = AuditRecord.objects.get(action="sso:manage").data["prefix"]
    actor = f"scim:{token_label}"
    assert (
        AuditRecord.objects.get(action="api_key:revoke", target_id=bob_key["id"]).actor_label
        == actor
    )
    assert AuditRecord.objects.filter(action="member:delete", actor_label=actor).count() >= 2
    ended = AuditRecord.objects.get(action="member:delete", data__op="deactivate")
    assert ended.data["sessions_ended"] is True and ended.actor_user is None


def test_reactivated_person_does_not_get_old_keys_back(cast, scim, bob_client):
    from tests.keys.conftest import mint

    key = mint(bob_client, permissions=["model:read"])
    user = f"/Users/{cast.bob.pk}"
    assert scim.patch(user, {"op": "replace", "value": {"active": False}}).status_code == 200
    assert scim.patch(user, {"op": "replace", "value": {"active": True}}).status_code == 200
    assert Membership.all_orgs.filter(org=cast.acme, user=cast.bob).exists()
    assert ApiKey.all_orgs.get(pk=key["id"]).revoked_at is not None


def test_the_last_owner_cannot_be_deactivated(cast, scim):
    alice = f"/Users/{cast.alice.pk}"
    assert_scim_error(scim.patch(alice, {"op": "replace", "value": {"active": False}}), 409)
    assert_scim_error(scim.delete(alice), 409)
    assert_scim_error(
        scim.put(
            alice,
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "alice@example.com",
                "active": False,
            },
        ),
        409,
    )
    assert Membership.all_orgs.filter(org=cast.acme, user=cast.alice).exists()
    assert cast.alice.is_active
    assert scim.get(alice).json()["active"] is True


def test_an_owner_goes_only_by_the_token_of_an_owner(cast, alice_client, dave_client):
    olivia = make_user("olivia")
    add_member(cast.acme, olivia, "owner")
    admins = ScimClient(make_token(dave_client)["token"])
    refused = admins.patch(f"/Users/{olivia.pk}", {"op": "replace", "value": {"active": False}})
    assert_scim_error(refused, 403)
    assert Membership.all_orgs.filter(org=cast.acme, user=olivia).exists()
    owners = ScimClient(make_token(alice_client)["token"])
    done = owners.patch(f"/Users/{olivia.pk}", {"op": "replace", "value": {"active": False}})
    assert done.status_code == 200, done.content
    assert not Membership.all_orgs.filter(org=cast.acme, user=olivia).exists()
    # And now alice is the last Owner again.
    assert_scim_error(owners.delete(f"/Users/{cast.alice.pk}"), 409)


def test_a_deactivated_person_cannot_be_put_in_a_group(cast, scim):
    assert (
        scim.patch(
            f"/Users/{cast.bob.pk}", {"op": "replace", "value": {"active": False}}
        ).status_code
        == 200
    )
    group = scim.post(
        "/Groups",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "G",
            "members": [{"value": str(cast.bob.pk)}],
        },
    )
    assert_scim_error(group, 400, "invalidValue")


def test_the_service_account_keys_survive_a_deactivation(cast, scim, dave_client):
    from tests.keys.conftest import mint

    created = dave_client.post(
        "/api/v1/orgs/acme/service-accounts",
        {"slug": "ci-bot", "name": "CI bot", "role": "member"},
        format="json",
    )
    assert created.status_code == 201, created.content
    robot = mint(dave_client, permissions=["model:read"], service_account="ci-bot")
    personal = mint(dave_client, permissions=["model:read"])
    assert (
        scim.patch(
            f"/Users/{cast.dave.pk}", {"op": "replace", "value": {"active": False}}
        ).status_code
        == 200
    )
    assert ApiKey.all_orgs.get(pk=robot["id"]).revoked_at is None
    assert ApiKey.all_orgs.get(pk=personal["id"]).revoked_at is not None
