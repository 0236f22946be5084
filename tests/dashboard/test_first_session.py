"""What a first dashboard session hits: a reload that minted a second key, JSON 404s,
Admin as the invitation default, one-click deletes, settings that misstate the
defaults, keys that could not stream, 29 raw scope checkboxes, no "you are here" in
the nav, and a 403 page that lost the org."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from keys.models import AccessRule, ApiKey, ProviderAccount, ServiceAccount
from orgs.access import PERMISSION_DESCRIPTIONS, PERMISSIONS
from orgs.models import Invitation, Membership, Role, Team
from orgs.scoping import org_scope

KEYS = "/orgs/acme/api-keys"


def _keys(cast, **filters) -> list[ApiKey]:
    with org_scope(cast.acme):
        return list(ApiKey.objects.filter(**filters))


# --- the "key created" page: POST-redirect-GET, the secret once ----------------------------


def test_reloading_the_created_page_never_mints_a_second_key_nor_shows_the_secret(bob_page, cast):
    response = bob_page.post(KEYS, {"name": "laptop", "permissions": ["inference:run"]})
    assert response.status_code == 302
    (key,) = _keys(cast, name="laptop")
    created = response["Location"]
    first = bob_page.get(created)
    secret = re.search(r'id="new-key-secret"[^>]*value="([^"]+)"', first.content.decode()).group(1)
    assert secret.startswith(key.prefix) and first["Cache-Control"] == "no-store"
    # The reload: same page, no secret, no new key.
    again = bob_page.get(created)
    assert again.status_code == 200
    assert secret not in again.content.decode()
    assert b"already shown" in again.content and b"new-key-secret" not in again.content
    assert len(_keys(cast, name="laptop")) == 1
    # The secret is not left in the session either.
    assert secret not in str(dict(bob_page.session))


def test_two_keys_minted_before_either_page_is_read_each_show_their_secret_once(bob_page, cast):
    first = bob_page.post(KEYS, {"name": "tab-1", "permissions": ["inference:run"]})
    second = bob_page.post(KEYS, {"name": "tab-2", "permissions": ["inference:run"]})
    (key1,) = _keys(cast, name="tab-1")
    (key2,) = _keys(cast, name="tab-2")
    for response, key in ((second, key2), (first, key1)):
        page = bob_page.get(response["Location"]).content.decode()
        secret = re.search(r'id="new-key-secret"[^>]*value="([^"]+)"', page).group(1)
        assert secret.startswith(key.prefix)
        assert b"new-key-secret" not in bob_page.get(response["Location"]).content


def test_the_created_page_of_another_users_or_orgs_key_shows_nothing(bob_page, alice_page, cast):
    bob_page.post(KEYS, {"name": "mine", "permissions": ["inference:run"]})
    (key,) = _keys(cast, name="mine")
    # Alice (who may view every key) did not create it: no slot, no secret.
    page = alice_page.get(f"{KEYS}/{key.pk}/created")
    assert page.status_code == 200 and b"new-key-secret" not in page.content
    charlie = Client()
    charlie.force_login(cast.charlie)
    assert charlie.get(f"/orgs/globex/api-keys/{key.pk}/created").status_code == 404


def test_rotating_shows_the_new_secret_once_through_the_same_slot(bob_page, cast):
    bob_page.post(KEYS, {"name": "k", "permissions": ["inference:run"]})
    (key,) = _keys(cast, name="k")
    bob_page.get(f"{KEYS}/{key.pk}/created")
    rotated = bob_page.post(f"{KEYS}/{key.pk}/rotate", {"confirm": "yes"})
    assert rotated.status_code == 302
    (replacement,) = _keys(cast, name="k", revoked_at__isnull=True)
    assert rotated["Location"] == f"{KEYS}/{replacement.pk}/created"
    assert b"new-key-secret" in bob_page.get(rotated["Location"]).content
    assert b"new-key-secret" not in bob_page.get(rotated["Location"]).content


# --- 404 pages ----------------------------------------------------------------------------


def test_unknown_dashboard_url_is_the_sites_html_404(alice_page):
    response = alice_page.get("/orgs/acme/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    body = response.content.decode()
    assert "<h1>Not found</h1>" in body and 'href="/static/css/inferia.css"' in body
    anonymous = Client().get("/nothing/here")
    assert anonymous.status_code == 404 and anonymous["Content-Type"].startswith("text/html")


def test_unknown_api_url_keeps_the_json_envelope(db):
    response = Client().get("/api/v1/no-such-endpoint")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "NOT_FOUND", "message": "Not found", "details": None}
    }


# --- invitations default to Member -------------------------------------------------------------


def test_the_invitation_form_preselects_member(alice_page):
    page = alice_page.get("/orgs/acme/members").content.decode()
    selected = re.findall(
        r'<option value="(\w+)"[^>]*selected', page.split('id="id_invite-role"')[1]
    )
    assert selected[0] == "member"


# --- destructive actions ask first -----------------------------------------------------------------


def _provider(cast) -> ProviderAccount:
    with org_scope(cast.acme):
        return ProviderAccount.objects.create(
            org=cast.acme, name="openai-main", provider_type="openai", base_url="https://8.8.8.8/v1"
        )


def _destructive_cases(cast, alice_page):
    """(url, form data, still-there check) for every delete of the dashboard."""
    with org_scope(cast.acme):
        vera = Membership.objects.get(user=cast.vera)
    alice_page.post("/orgs/acme/teams", {"name": "ML", "slug": "ml"})
    alice_page.post("/orgs/acme/roles", {"name": "Auditor", "slug": "auditor"})
    alice_page.post("/orgs/acme/service-accounts", {"name": "CI", "slug": "ci", "role": "viewer"})
    alice_page.post(
        "/orgs/acme/members", {"invite-email": "x@example.com", "invite-role": "viewer"}
    )
    alice_page.post(KEYS, {"name": "k", "permissions": ["inference:run"]})
    account = _provider(cast)
    alice_page.post("/orgs/acme/access-rules", {"op": "add", "models": "*", "users": "bob"})
    with org_scope(cast.acme):
        team = Team.objects.get(slug="ml")
        role = Role.objects.get(slug="auditor")
        sa = ServiceAccount.objects.get(slug="ci")
        invitation = Invitation.objects.get(email="x@example.com")
        key = ApiKey.objects.get(name="k")
        rule = AccessRule.objects.get()

    def present(model, pk, **extra):
        def check() -> bool:
            with org_scope(cast.acme):
                return model.objects.filter(pk=pk, **extra).exists()

        return check

    return [
        (f"/orgs/acme/members/{vera.pk}", {"op": "remove"}, present(Membership, vera.pk)),
        (f"/orgs/acme/teams/{team.pk}", {"op": "delete"}, present(Team, team.pk)),
        (f"/orgs/acme/roles/{role.pk}", {"op": "delete"}, present(Role, role.pk)),
        (
            f"/orgs/acme/service-accounts/{sa.pk}",
            {"op": "delete"},
            present(ServiceAccount, sa.pk),
        ),
        (
            f"/orgs/acme/invitations/{invitation.pk}",
            {"op": "revoke"},
            present(Invitation, invitation.pk, revoked_at__isnull=True),
        ),
        (f"{KEYS}/{key.pk}/revoke", {}, present(ApiKey, key.pk, revoked_at__isnull=True)),
        (
            f"/orgs/acme/provider-accounts/{account.pk}",
            {"op": "delete"},
            present(ProviderAccount, account.pk),
        ),
        (f"/orgs/acme/access-rules/{rule.pk}/delete", {}, present(AccessRule, rule.pk)),
    ]


def test_a_delete_without_the_confirmation_flag_destroys_nothing(alice_page, cast):
    cases = _destructive_cases(cast, alice_page)
    for url, data, still_there in cases:
        asked = alice_page.post(url, data)
        assert asked.status_code == 200, url
        body = asked.content.decode()
        assert 'name="confirm" value="yes"' in body, url
        assert still_there(), url
    # The confirmation page's form (the same fields plus the flag) does it.
    for url, data, still_there in cases:
        done = alice_page.post(url, {**data, "confirm": "yes"})
        assert done.status_code == 302, url
        assert not still_there(), url


def test_the_confirmation_page_repeats_the_posted_fields(alice_page, cast):
    with org_scope(cast.acme):
        vera = Membership.objects.get(user=cast.vera)
    page = alice_page.post(f"/orgs/acme/members/{vera.pk}", {"op": "remove"}).content.decode()
    assert "Remove vera from Acme?" in page
    assert '<input type="hidden" name="op" value="remove">' in page
    assert f'action="/orgs/acme/members/{vera.pk}"' in page


def test_destructive_buttons_ask_in_a_dialog_with_javascript(alice_page):
    page = alice_page.get("/orgs/acme/members").content.decode()
    assert re.search(r'value="remove" class="danger" data-confirm="Remove \w+ from Acme', page)
    assert '<dialog id="confirm-dialog"' in page


# --- settings state the real defaults ------------------------------------------------------------


def test_settings_page_states_the_defaults_the_gateway_applies(alice_page, settings):
    settings.INFERIA_GATEWAY_DEFAULT_KEY_RPM = 777
    settings.INFERIA_GATEWAY_DEFAULT_KEY_TPM = 123_456
    page = alice_page.get("/orgs/acme/settings").content.decode()
    assert "Empty limit fields mean no limit" not in page
    assert "Empty: 777 (the server&#x27;s default)." in page
    assert "Empty: 123,456 (the server&#x27;s default)." in page
    assert "Empty: 365." in page  # audit retention: the policy's default
    assert "Empty: no org-wide limit" in page


# --- key scopes: streaming preselected, grouped and explained ---------------------------------------


def _checked(page: str) -> set[str]:
    return set(re.findall(r'name="permissions" value="([^"]+)"[^>]*checked', page))


def test_new_keys_may_stream_by_default_when_the_user_may(bob_page, cast):
    assert _checked(bob_page.get(KEYS).content.decode()) == {
        "inference:run",
        "inference:stream",
        "model:read",
    }
    # A role without streaming: it is not offered, nor preselected.
    role = Role.objects.create(
        org=cast.acme,
        slug="caller",
        name="Caller",
        permissions=["api_key:create", "inference:run", "model:read"],
    )
    Membership.all_orgs.filter(org=cast.acme, user=cast.bob).update(role=role)
    page = bob_page.get(KEYS).content.decode()
    assert _checked(page) == {"inference:run", "model:read"}
    assert 'value="inference:stream"' not in page


def test_key_scopes_are_grouped_by_resource_with_one_line_each(alice_page):
    page = alice_page.get(KEYS).content.decode()
    legends = re.findall(r'<fieldset class="scope-group"><legend>([^<]+)</legend>', page)
    assert legends[:3] == ["Organization", "Billing", "Policy"] and "Inference" in legends
    inference = page.split("<legend>Inference</legend>")[1].split("</fieldset>")[0]
    assert 'value="inference:stream"' in inference
    assert PERMISSION_DESCRIPTIONS["inference:stream"] in inference


def test_every_permission_has_one_description():
    assert list(PERMISSION_DESCRIPTIONS) == list(PERMISSIONS)
    assert all(text.strip() and "\n" not in text for text in PERMISSION_DESCRIPTIONS.values())


# --- navigation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url,label",
    [
        ("/orgs/acme/members", "Members"),
        ("/orgs/acme/", "Overview"),
        ("/orgs/acme/api-keys", "API keys"),
        ("/orgs/acme/settings", "Settings"),
    ],
)
def test_the_current_page_is_marked_in_the_nav(alice_page, url, label):
    page = alice_page.get(url).content.decode()
    nav = page.split('aria-label="Organization"')[1].split("</nav>")[0]
    current = re.findall(r'<a [^>]*aria-current="page"[^>]*>([^<]+)</a>', nav)
    assert current == [label]


def test_after_a_403_the_nav_keeps_the_org(vera_page):
    response = vera_page.get("/orgs/acme/provider-accounts")
    assert response.status_code == 403
    body = response.content.decode()
    assert 'aria-label="Organization"' in body
    assert 'href="/orgs/acme/members"' in body and 'href="/orgs/acme/"' in body
    assert "<title>Permission denied · Acme</title>" in body
