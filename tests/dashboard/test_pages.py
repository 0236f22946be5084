"""Dashboard pages through the Django test client: who sees what, and POSTs that
change state through services and leave audit records."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AuditRecord
from keys.models import AccessRule, ApiKey, ProviderAccount
from orgs.models import Invitation, Membership, Organization, Role, Team, TOTPDevice
from orgs.scoping import org_scope
from orgs.services import two_factor
from tests.conftest import PASSWORD, code_now, wrong_code

PAGES = {
    "overview": "/orgs/acme/",
    "members": "/orgs/acme/members",
    "teams": "/orgs/acme/teams",
    "roles": "/orgs/acme/roles",
    "service_accounts": "/orgs/acme/service-accounts",
    "api_keys": "/orgs/acme/api-keys",
    "providers": "/orgs/acme/provider-accounts",
    "access_rules": "/orgs/acme/access-rules",
    "audit": "/orgs/acme/audit-log",
    "settings": "/orgs/acme/settings",
    "cache": "/orgs/acme/cache",
}
# Which built-in role may open which page (the role's permissions decide, CONTRACT §4).
ALLOWED = {
    "owner": set(PAGES),
    "admin": set(PAGES),
    "member": {
        "overview",
        "members",
        "teams",
        "roles",
        "service_accounts",
        "api_keys",
        "access_rules",
        "audit",
        "cache",
    },
    "viewer": {
        "overview",
        "members",
        "teams",
        "roles",
        "service_accounts",
        "access_rules",
        "audit",
        "cache",
    },
}


def _audit(action: str, **filters) -> AuditRecord | None:
    return AuditRecord.objects.filter(action=action, **filters).order_by("-seq").first()


@pytest.mark.parametrize(
    "who,role",
    [
        ("alice_page", "owner"),
        ("dave_page", "admin"),
        ("bob_page", "member"),
        ("vera_page", "viewer"),
    ],
)
def test_each_page_renders_for_roles_that_hold_its_permission_and_403_for_others(
    request, who, role
):
    client = request.getfixturevalue(who)
    for name, url in PAGES.items():
        response = client.get(url)
        expected = 200 if name in ALLOWED[role] else 403
        assert response.status_code == expected, (role, name, response.status_code)


def test_viewer_sees_no_link_to_key_or_provider_pages(vera_page, alice_page):
    page = vera_page.get("/orgs/acme/").content.decode()
    assert "/orgs/acme/api-keys" not in page
    assert "/orgs/acme/provider-accounts" not in page
    assert "/orgs/acme/settings" not in page
    owner_page = alice_page.get("/orgs/acme/").content.decode()
    assert "/orgs/acme/api-keys" in owner_page and "/orgs/acme/provider-accounts" in owner_page


def test_page_denial_is_audited(vera_page, cast):
    vera_page.get("/orgs/acme/provider-accounts")
    record = _audit("provider_account:manage", outcome="denied")
    assert record is not None and record.actor_user_id == cast.vera.pk and record.status_code == 403


def test_other_org_gets_404(charlie_page, alice_page):
    for url in PAGES.values():
        assert charlie_page.get(url).status_code == 404, url
    assert alice_page.get("/orgs/globex/").status_code == 404
    assert alice_page.get("/orgs/nope/members").status_code == 404


def test_anonymous_is_sent_to_login():
    response = Client().get("/orgs/acme/api-keys")
    assert response.status_code == 302
    assert response["Location"].startswith("/login?next=")


def test_api_health_and_admin_are_untouched(db):
    assert Client().get("/healthz").status_code == 200
    assert Client().get("/api/v1/orgs").status_code == 401


# --- login ---------------------------------------------------------------------------------


def test_login_with_password_starts_a_session_and_is_audited(cast):
    client = Client()
    response = client.post(
        "/login",
        {"step": "password", "username": "bob", "password": PASSWORD, "next": "/orgs/acme/"},
    )
    assert response.status_code == 302 and response["Location"] == "/orgs/acme/"
    assert client.get("/orgs/acme/").status_code == 200
    record = _audit("auth:login", outcome="success")
    assert record.actor_user_id == cast.bob.pk and record.data.get("via") == "dashboard"


def test_login_wrong_password_keeps_username_and_is_throttled(cast, settings):
    settings.INFERIA_LOGIN_MAX_FAILURES_PER_USER = 2
    client = Client()
    for _ in range(2):
        response = client.post("/login", {"username": "bob", "password": "wrong-password"})
        assert response.status_code == 400
        assert b"Invalid username or password" in response.content
        assert b'value="bob"' in response.content
    response = client.post("/login", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 400 and b"Too many failed login attempts" in response.content
    assert client.get("/orgs/acme/").status_code == 302


def _enrol(user) -> TOTPDevice:
    two_factor.totp_setup(user=user)
    device = TOTPDevice.objects.get(user=user)
    TOTPDevice.objects.filter(pk=device.pk).update(confirmed=True)
    device.refresh_from_db()
    return device


def test_login_with_totp_asks_for_the_code_before_the_session(cast):
    device = _enrol(cast.alice)
    client = Client()
    response = client.post(
        "/login", {"step": "password", "username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 200 and b'name="otp_code"' in response.content
    assert client.get("/orgs/acme/").status_code == 302  # not signed in yet
    response = client.post("/login", {"step": "otp", "otp_code": wrong_code(device)})
    assert response.status_code == 400 and b"Invalid one-time code" in response.content
    response = client.post("/login", {"step": "otp", "otp_code": code_now(device)})
    assert response.status_code == 302
    assert client.get("/orgs/acme/").status_code == 200
    assert _audit("auth:login", outcome="failure").data["reason"] == "bad_otp"


def test_logout_is_post_only(alice_page):
    assert alice_page.get("/logout").status_code == 405
    assert alice_page.post("/logout").status_code == 302
    assert alice_page.get("/orgs/acme/").status_code == 302


def test_password_change_keeps_the_session(alice_page, cast):
    response = alice_page.post(
        "/account/password",
        {
            "current_password": "wrong",
            "new_password": "another-long-pass-phrase",
            "new_password_again": "another-long-pass-phrase",
        },
    )
    assert response.status_code == 400 and b"Current password is wrong" in response.content
    response = alice_page.post(
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": "another-long-pass-phrase",
            "new_password_again": "another-long-pass-phrase",
        },
    )
    assert response.status_code == 302
    assert alice_page.get("/orgs/acme/").status_code == 200
    cast.alice.refresh_from_db()
    assert cast.alice.check_password("another-long-pass-phrase")


def test_two_factor_setup_shows_qr_then_recovery_codes_once(alice_page, cast):
    response = alice_page.post("/account/2fa", {"op": "start"})
    assert response.status_code == 200 and b"<svg" in response.content
    device = TOTPDevice.objects.get(user=cast.alice, confirmed=False)
    response = alice_page.post("/account/2fa", {"op": "confirm", "otp_code": code_now(device)})
    assert response.status_code == 200
    assert b"recovery-codes" in response.content and b"shown only once" in response.content
    again = alice_page.get("/account/2fa")
    assert b"recovery-codes" not in again.content and b"<strong>on</strong>" in again.content
    assert _audit("auth:2fa_enable", outcome="success").actor_user_id == cast.alice.pk


def test_org_requiring_2fa_redirects_members_without_it(bob_page, cast):
    Organization.objects.filter(pk=cast.acme.pk).update(require_2fa=True)
    response = bob_page.get("/orgs/acme/members")
    assert response.status_code == 302 and response["Location"].startswith("/account/2fa")
    assert _audit("auth:2fa_required", outcome="denied").actor_user_id == cast.bob.pk


# --- organizations, settings ---------------------------------------------------------------


def test_create_organization_makes_the_creator_owner(bob_page, cast):
    response = bob_page.post("/", {"name": "Bobco", "slug": "bobco"})
    assert response.status_code == 302 and response["Location"] == "/orgs/bobco/"
    org = Organization.objects.get(slug="bobco")
    assert Membership.all_orgs.get(org=org, user=cast.bob).role.slug == "owner"
    response = bob_page.post("/", {"name": "Dup", "slug": "acme"})
    assert (
        response.status_code == 400
        and b"Already taken." in response.content
        and b'value="Dup"' in response.content
    )


def test_org_switcher_lists_only_my_orgs(alice_page):
    page = alice_page.get("/").content.decode()
    assert "/orgs/acme/" in page and "/orgs/globex/" not in page


def test_settings_update_through_the_service(alice_page, cast):
    response = alice_page.post(
        "/orgs/acme/settings",
        {
            "name": "Acme Inc",
            "require_2fa": "",
            "max_key_lifetime_days": "30",
            "requests_per_minute": "100",
            "allowed_private_hosts": "127.0.0.1:9000\nvllm.internal",
        },
    )
    assert response.status_code == 302
    org = Organization.objects.get(pk=cast.acme.pk)
    assert org.name == "Acme Inc"
    assert org.settings["allowed_private_hosts"] == ["127.0.0.1:9000", "vllm.internal"]
    assert (
        org.settings["max_key_lifetime_days"] == 30 and org.settings["requests_per_minute"] == 100
    )
    assert _audit("org:update", outcome="success").actor_user_id == cast.alice.pk
    response = alice_page.post("/orgs/acme/settings", {"name": "", "max_key_lifetime_days": "0"})
    assert response.status_code == 400 and b'class="error"' in response.content


# --- members, invitations, teams, roles -------------------------------------------------------------


def test_invite_revoke_and_change_role(
    alice_page, cast, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_page.post(
            "/orgs/acme/members", {"invite-email": "new@example.com", "invite-role": "member"}
        )
    assert response.status_code == 302
    with org_scope(cast.acme):
        invitation = Invitation.objects.get(email="new@example.com")
    assert len(mailoutbox) == 1
    response = alice_page.post(
        f"/orgs/acme/invitations/{invitation.pk}", {"op": "revoke", "confirm": "yes"}
    )
    assert response.status_code == 302
    with org_scope(cast.acme):
        assert Invitation.objects.get(pk=invitation.pk).status == "revoked"
        bob = Membership.objects.get(user=cast.bob)
    alice_page.post(f"/orgs/acme/members/{bob.pk}", {"op": "role", "role": "viewer"})
    assert Membership.all_orgs.get(pk=bob.pk).role.slug == "viewer"
    assert _audit("member:update").data["role_after"] == "viewer"


def test_member_cannot_invite_or_remove(bob_page, cast):
    response = bob_page.post(
        "/orgs/acme/members", {"invite-email": "x@example.com", "invite-role": "viewer"}
    )
    assert response.status_code == 403
    with org_scope(cast.acme):
        assert not Invitation.objects.exists()
    with org_scope(cast.acme):
        vera = Membership.objects.get(user=cast.vera)
    response = bob_page.post(f"/orgs/acme/members/{vera.pk}", {"op": "remove"}, follow=True)
    assert b"Missing permission member:delete" in response.content
    assert Membership.all_orgs.filter(pk=vera.pk).exists()


def test_remove_member(alice_page, cast):
    with org_scope(cast.acme):
        vera = Membership.objects.get(user=cast.vera)
    response = alice_page.post(
        f"/orgs/acme/members/{vera.pk}", {"op": "remove", "confirm": "yes"}, follow=True
    )
    assert b"vera was removed" in response.content
    assert not Membership.all_orgs.filter(pk=vera.pk).exists()
    assert _audit("member:delete").data["user"] == "vera"


def test_other_orgs_member_id_is_404(charlie_page, alice_page, cast):
    with org_scope(cast.globex):
        charlie = Membership.objects.get(user=cast.charlie)
    assert alice_page.post(f"/orgs/acme/members/{charlie.pk}", {"op": "remove"}).status_code == 404


def test_teams_create_and_add_member(alice_page, cast):
    assert alice_page.post("/orgs/acme/teams", {"name": "ML", "slug": "ml"}).status_code == 302
    with org_scope(cast.acme):
        team = Team.objects.get(slug="ml")
    alice_page.post(f"/orgs/acme/teams/{team.pk}", {"op": "add_member", "username": "bob"})
    assert b"<p>Members: bob</p>" in alice_page.get("/orgs/acme/teams").content
    assert _audit("team:manage").data == {"op": "member_add", "user": "bob"}


def test_custom_role_with_permission_grid(alice_page, bob_page, dave_page, cast):
    page = alice_page.get("/orgs/acme/roles").content.decode()
    assert 'type="checkbox" name="permissions" value="audit_log:view"' in page
    response = alice_page.post(
        "/orgs/acme/roles",
        {"name": "Auditor", "slug": "auditor", "permissions": ["audit_log:view", "usage:view"]},
    )
    assert response.status_code == 302
    role = Role.objects.get(org=cast.acme, slug="auditor")
    assert role.permissions == ["audit_log:view", "usage:view"]
    # Bounded delegation: an admin cannot create a role holding what they lack.
    response = dave_page.post(
        "/orgs/acme/roles", {"name": "X", "slug": "x", "permissions": ["org:delete"]}
    )
    assert (
        response.status_code == 400
        and b"org:delete" in response.content
        and b'value="X"' in response.content
    )
    assert (
        bob_page.post("/orgs/acme/roles", {"name": "Y", "slug": "y", "permissions": []}).status_code
        == 403
    )
    assert not Role.objects.filter(slug__in=["x", "y"]).exists()


def test_service_account_create(alice_page, cast):
    response = alice_page.post(
        "/orgs/acme/service-accounts", {"name": "CI", "slug": "ci-bot", "role": "member"}
    )
    assert response.status_code == 302
    assert b"ci-bot" in alice_page.get("/orgs/acme/service-accounts").content
    assert _audit("service_account:manage").data["op"] == "create"


# --- API keys ---------------------------------------------------------------------------------


def test_key_secret_is_shown_once(bob_page, cast):
    response = bob_page.post(
        "/orgs/acme/api-keys",
        {
            "name": "laptop",
            "permissions": ["inference:run", "model:read"],
            "models": "openai-main/gpt-4o",
            "expires_in_days": "30",
        },
    )
    with org_scope(cast.acme):
        key = ApiKey.objects.get(name="laptop")
    # POST-redirect-GET: the POST answers a redirect, the secret is on the page it names.
    assert response.status_code == 302
    assert response["Location"] == f"/orgs/acme/api-keys/{key.pk}/created"
    response = bob_page.get(response["Location"])
    body = response.content.decode()
    import re

    secret = re.search(r'id="new-key-secret"[^>]*value="([^"]+)"', body).group(1)
    assert secret.startswith("ifr_") and key.prefix in secret
    assert "shown only this once" in body and response["Cache-Control"] == "no-store"
    listing = bob_page.get("/orgs/acme/api-keys").content.decode()
    assert key.prefix in listing and secret not in listing
    assert key.model_patterns == ["openai-main/gpt-4o"] and key.owner_user_id == cast.bob.pk
    assert _audit("api_key:create").target_id == str(key.pk)


def test_key_scopes_beyond_the_owner_are_refused(bob_page, cast):
    response = bob_page.post(
        "/orgs/acme/api-keys", {"name": "greedy", "permissions": ["org:delete"]}
    )
    assert response.status_code == 400 and b'value="greedy"' in response.content
    with org_scope(cast.acme):
        assert not ApiKey.objects.filter(name="greedy").exists()


def test_revoke_and_rotate_need_post_and_confirmation(bob_page, alice_page, charlie_page, cast):
    bob_page.post("/orgs/acme/api-keys", {"name": "k1", "permissions": ["model:read"]})
    with org_scope(cast.acme):
        key = ApiKey.objects.get(name="k1")
    confirm = bob_page.get(f"/orgs/acme/api-keys/{key.pk}/revoke")
    assert confirm.status_code == 200 and b"cannot be undone" in confirm.content
    with org_scope(cast.acme):
        assert ApiKey.objects.get(pk=key.pk).revoked_at is None
    rotated = bob_page.post(f"/orgs/acme/api-keys/{key.pk}/rotate", {"confirm": "yes"}, follow=True)
    assert rotated.status_code == 200 and b"new-key-secret" in rotated.content
    with org_scope(cast.acme):
        replacement = ApiKey.objects.get(name="k1", revoked_at__isnull=True)
    bare = bob_page.post(f"/orgs/acme/api-keys/{replacement.pk}/revoke")
    assert bare.status_code == 200 and b"cannot be undone" in bare.content
    with org_scope(cast.acme):
        assert ApiKey.objects.get(pk=replacement.pk).revoked_at is None
    revoked = bob_page.post(f"/orgs/acme/api-keys/{replacement.pk}/revoke", {"confirm": "yes"})
    assert revoked.status_code == 302
    with org_scope(cast.acme):
        assert ApiKey.objects.get(pk=replacement.pk).revoked_at is not None
    assert _audit("api_key:revoke").target_id == str(replacement.pk)
    # A member may not revoke someone else's key; another org's key is 404.
    alice_page.post("/orgs/acme/api-keys", {"name": "alices", "permissions": ["model:read"]})
    with org_scope(cast.acme):
        alices = ApiKey.objects.get(name="alices")
    response = bob_page.post(
        f"/orgs/acme/api-keys/{alices.pk}/revoke", {"confirm": "yes"}, follow=True
    )
    assert b"Missing permission api_key:revoke" in response.content
    with org_scope(cast.acme):
        assert ApiKey.objects.get(pk=alices.pk).revoked_at is None
    assert charlie_page.get(f"/orgs/globex/api-keys/{alices.pk}/revoke").status_code == 404


# --- provider accounts and access rules ----------------------------------------------------------------


def _provider(alice_page, **extra):
    data = {
        "name": "openai-main",
        "provider_type": "openai",
        "base_url": "https://8.8.8.8/v1",
        "models": "gpt-4o gpt-4o-mini",
        "tags": "env=prod",
        "secret": "sk-live-" + "A" * 30,
        **extra,
    }
    return alice_page.post("/orgs/acme/provider-accounts", data)


def test_provider_account_secret_is_write_only(alice_page, cast):
    assert _provider(alice_page).status_code == 302
    with org_scope(cast.acme):
        account = ProviderAccount.objects.get(name="openai-main")
    assert (
        account.has_secret
        and account.model_names == ["gpt-4o", "gpt-4o-mini"]
        and account.tags == {"env": "prod"}
    )
    for url in ("/orgs/acme/provider-accounts", f"/orgs/acme/provider-accounts/{account.pk}"):
        assert b"sk-live-" not in alice_page.get(url).content
    assert "sk-live" not in str(_audit("provider_account:manage").data)


def test_provider_private_base_url_needs_the_setting(alice_page, cast):
    response = _provider(alice_page, base_url="http://127.0.0.1:9000/v1")
    assert response.status_code == 400 and b'value="openai-main"' in response.content
    alice_page.post(
        "/orgs/acme/settings", {"name": "Acme", "allowed_private_hosts": "127.0.0.1:9000"}
    )
    assert _provider(alice_page, base_url="http://127.0.0.1:9000/v1").status_code == 302


def test_replacing_a_secret_asks_a_2fa_user_for_a_code(alice_page, cast):
    _provider(alice_page)
    device = _enrol(cast.alice)
    with org_scope(cast.acme):
        account = ProviderAccount.objects.get(name="openai-main")
    url = f"/orgs/acme/provider-accounts/{account.pk}"
    assert b"Code from your authenticator app" in alice_page.get(url).content
    response = alice_page.post(url, {"op": "secret", "secret": "sk-new-" + "B" * 30})
    assert response.status_code == 400
    response = alice_page.post(
        url, {"op": "secret", "secret": "sk-new-" + "B" * 30, "otp_code": code_now(device)}
    )
    assert response.status_code == 302
    assert _audit("provider_account:manage").data["op"] == "set_secret"


def test_provider_edit_models_and_tags(alice_page, cast):
    _provider(alice_page)
    with org_scope(cast.acme):
        account = ProviderAccount.objects.get(name="openai-main")
    response = alice_page.post(
        f"/orgs/acme/provider-accounts/{account.pk}",
        {
            "op": "update",
            "base_url": "https://8.8.8.8/v1",
            "models": "gpt-4o\no1",
            "tags": "env=staging",
        },
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.model_names == ["gpt-4o", "o1"] and account.tags == {"env": "staging"}


def test_access_rules_import_export_and_effective_view(alice_page, cast):
    _provider(alice_page)
    response = alice_page.post(
        "/orgs/acme/access-rules",
        {
            "document": "authz_rules:\n  - models: [openai-main/gpt-4o]\n    users: [bob]\n",
            "confirm": "yes",
        },
    )
    assert response.status_code == 302
    with org_scope(cast.acme):
        assert AccessRule.objects.count() == 1
        page = alice_page.get("/orgs/acme/access-rules").content.decode()
    assert "openai-main/gpt-4o" in page and "bob" in page
    export = alice_page.get("/orgs/acme/access-rules.yaml")
    assert export.status_code == 200 and b"users:\n  - bob" in export.content
    assert _audit("policy:manage").data["source"] == "dashboard"


def test_access_rules_import_errors_point_at_the_rule(alice_page, cast):
    _provider(alice_page)
    document = (
        "authz_rules:\n  - models: [openai-main/gpt-4o]\n    users: [bob]\n"
        "  - models: [openai-main/*]\n    teams: [no-such-team]\n"
    )
    response = alice_page.post("/orgs/acme/access-rules", {"document": document, "confirm": "yes"})
    assert response.status_code == 400
    body = response.content.decode()
    assert 'href="#rule-1"' in body and "Rule 2" in body and "Unknown team: no-such-team" in body
    assert "no-such-team" in body  # the typed YAML is kept
    with org_scope(cast.acme):
        assert AccessRule.objects.count() == 0
    response = alice_page.post("/orgs/acme/access-rules", {"document": "authz_rules: [\n"})
    assert response.status_code == 400 and b"Malformed YAML" in response.content


def test_importing_rules_asks_before_replacing_them(alice_page, cast):
    _provider(alice_page)
    document = "authz_rules:\n  - models: [openai-main/gpt-4o]\n    users: [bob]\n"
    with org_scope(cast.acme):
        AccessRule.objects.all().delete()
    asked = alice_page.post("/orgs/acme/access-rules", {"document": document})
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Replace every access rule?" in page and 'name="confirm" value="yes"' in page
    assert 'name="document"' in page  # the document is carried to the confirmation
    with org_scope(cast.acme):
        assert AccessRule.objects.count() == 0  # nothing replaced yet
    listing = alice_page.get("/orgs/acme/access-rules").content.decode()
    assert 'data-confirm="Replace every access rule' in listing


def test_viewer_cannot_import_rules(vera_page):
    response = vera_page.post("/orgs/acme/access-rules", {"document": "authz_rules: []\n"})
    assert response.status_code == 403


# --- audit log -------------------------------------------------------------------------------------------


def test_audit_log_filters_paginates_and_exports_csv(alice_page, cast):
    for index in range(3):
        alice_page.post("/orgs/acme/teams", {"name": f"T{index}", "slug": f"t{index}"})
    page = alice_page.get("/orgs/acme/audit-log?action=team:manage")
    assert page.status_code == 200 and page.content.count(b"team:manage</td>") == 3
    assert b"Page 1 of 1" in page.content
    export = alice_page.get("/orgs/acme/audit-log.csv?action=team:manage")
    assert export["Content-Type"].startswith("text/csv")
    rows = b"".join(export.streaming_content).decode().strip().splitlines()
    assert rows[0].startswith("created_at,action") and len(rows) == 4


def test_overview_chart_counts_usage(alice_page, cast):
    from django.utils import timezone

    from audit.models import UsageRecord

    UsageRecord.objects.create(
        created_at=timezone.now(),
        org=cast.acme,
        request_id="r1",
        endpoint="chat",
        model="openai-main/gpt-4o",
        status_code=200,
        prompt_tokens=7,
        completion_tokens=5,
        key_prefix="ifr_abc",
    )
    page = alice_page.get("/orgs/acme/").content.decode()
    assert "<svg" in page and "Requests a day" in page and "openai-main/gpt-4o" in page
    assert "<strong>1</strong> requests in 14 days" in page


def test_overview_shows_recent_alerts_to_audit_viewers(cast):
    from django.test import Client

    from audit.models import Alert

    Alert.objects.create(
        org=cast.acme, kind="denials", message="51 refused requests in 15 minutes", dedupe_key="t1"
    )
    Alert.objects.create(org=cast.globex, kind="denials", message="globex alert", dedupe_key="t2")
    client = Client()
    client.force_login(cast.alice)
    page = client.get("/orgs/acme/").content.decode()
    assert "Recent alerts" in page and "51 refused requests" in page and "globex alert" not in page
