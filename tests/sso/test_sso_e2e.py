"""Issue 13's "Done when", end to end on the live server (dashboard, API and gateway on
one port, uvicorn in a thread), with real identity providers over HTTP on 127.0.0.1:
the certified ``oidc-provider`` (npm, in Node.js) and a pysaml2 IdP with a sign-in page.

- In Chromium: an Owner connects the OIDC provider (and, in another test, the SAML IdP
  from its metadata XML) from the dashboard, claims and confirms the e-mail domain and
  maps an IdP group to a role; a new colleague signs in with "Sign in with SSO", is
  provisioned with the mapped role, and loses it at the next sign-in once the IdP no
  longer lists the group; the audit log page shows the decisions. ``enforce_sso``
  refuses a member's password and lets the Owner in with password + 2FA.
- The API flow (loopback redirect + PKCE) ends in a token pair that calls
  ``/api/v1/auth/me`` and the gateway (the fake upstream) with the OpenAI SDK.
- Failures, each a clear page (or JSON, or the loopback's ``error``) and an audit record:
  the IdP's error, a wrong audience / forged ID token (a provider of the test process),
  a tampered and a replayed SAML response, an unverified e-mail, a domain nobody verified.
"""

from __future__ import annotations

import base64
import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from audit.models import AuditRecord
from inferia import clock
from orgs.models import Membership, TeamMember, TOTPDevice, User
from orgs.scoping import org_scope
from sso import oidc, saml
from sso.models import IdentityProvider, SsoFlow
from sso.services import pkce_challenge
from tests.conftest import PASSWORD
from tests.sso.conftest import owner_access, verify_domain
from tests.sso.e2e_support import HttpBrowser, chromium, orm
from tests.sso.oidc_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    USER_PASSWORD,
    CallbackServer,
    CraftedProvider,
    NodeProvider,
    node_available,
    rsa_key,
    sign,
    unsigned,
)
from tests.sso.saml_idp import IdpHttpServer, Person, TestIdp

DOMAIN = "acme.test"
IDP_USERS = {
    # A new colleague of the verified domain, in the group the Owner maps to Admin.
    "erin": {
        "password": USER_PASSWORD,
        "claims": {
            "email": f"erin@{DOMAIN}",
            "email_verified": True,
            "name": "Erin Example",
            "groups": ["ml-platform"],
        },
    },
    # The IdP does not vouch for this address.
    "mallory": {
        "password": USER_PASSWORD,
        "claims": {"email": f"mallory@{DOMAIN}", "email_verified": False, "name": "Mallory"},
    },
    # A verified address of a domain this org never verified.
    "olga": {
        "password": USER_PASSWORD,
        "claims": {"email": "olga@elsewhere.test", "email_verified": True, "name": "Olga"},
    },
}
MODEL = "openai-main/gpt-4o"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_oidc_caches():
    oidc.cache_clear()
    yield
    oidc.cache_clear()


@pytest.fixture
def base(llm, gateway_server) -> str:
    """The live server; Acme has the fake upstream's provider account (``llm``)."""
    return gateway_server.url


def _host(url: str) -> str:
    return urlsplit(url).netloc


def allow_private(org, *urls: str) -> None:
    """The org lists these hosts in ``allowed_private_hosts`` (as its Settings page does)."""
    org.refresh_from_db()
    hosts = list(org.settings.get("allowed_private_hosts", []))
    org.settings = {**org.settings, "allowed_private_hosts": hosts + [_host(u) for u in urls]}
    org.save(update_fields=["settings"])


@pytest.fixture
def op(base):
    """oidc-provider (npm) in Node.js, with our callback as its client's redirect URI."""
    node_available()
    provider = NodeProvider(
        redirect_uris=[f"{base}/auth/sso/acme/oidc/callback"],
        keys=[rsa_key("e2e-1")],
        users={name: {**user, "claims": dict(user["claims"])} for name, user in IDP_USERS.items()},
    ).start()
    yield provider
    provider.stop()


def connect_oidc(org, issuer: str, name: str = "testop"):
    """An OIDC provider made as an Owner would through the API (the dashboard test makes
    its own through the page)."""
    allow_private(org, issuer)
    with org_scope(org):
        return oidc_create(org, issuer, name)


def oidc_create(org, issuer: str, name: str):
    from sso import services

    return services.identity_provider_create(
        access=owner_access(org, org_owner(org)),
        name=name,
        kind="oidc",
        display_name="Test IdP",
        issuer=issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        scopes=["openid", "email", "profile", "groups"],
    )


def org_owner(org) -> User:
    return Membership.all_orgs.get(org=org, role__slug="owner", role__org__isnull=True).user


def records(org, action: str, **data) -> list[AuditRecord]:
    found = AuditRecord.objects.filter(org=org, action=action).order_by("seq")
    return [r for r in found if all(r.data.get(k) == v for k, v in data.items())]


def login(page, base: str, username: str, seed: bytes | None = None) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    if seed is not None:
        page.get_by_label("Code from your authenticator app").fill(totp(seed))
        page.get_by_role("button", name="Verify").click()


def totp(seed: bytes) -> str:
    from django_otp.oath import TOTP

    generator = TOTP(seed, step=30, digits=6)
    generator.time = clock.time()  # the server's clock (it runs in this process)
    return str(generator.token()).zfill(6)


def sso_sign_in(page, base: str, email: str, button: str) -> None:
    """From the login page: "Sign in with SSO", the e-mail, the org's provider button."""
    page.goto(f"{base}/login")
    page.get_by_role("link", name="Sign in with SSO").click()
    page.get_by_label("Work e-mail").fill(email)
    page.get_by_role("button", name="Continue", exact=True).click()
    page.get_by_role("button", name=f"Continue with {button}").click()


def at_the_oidc_provider(page, username: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(USER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Allow").click()


def role_of(username: str, org) -> str:
    return (
        Membership.all_orgs.select_related("role").get(user__username=username, org=org).role.slug
    )


# --- OIDC: connected in the dashboard, JIT provisioning, groups -> roles -------------------------


@pytest.mark.browser
def test_owner_connects_oidc_in_the_dashboard_and_groups_map_to_roles(
    base, op, cast, fake_upstream
):
    expected_redirect_uri = f"{base}/auth/sso/acme/oidc/callback"
    with chromium() as browser:
        owner = browser.new_context().new_page()
        login(owner, base, "alice")
        owner.wait_for_selector("text=Signed in as alice")
        # The provider and the fake upstream are on 127.0.0.1: the Owner lists both.
        owner.goto(f"{base}/orgs/acme/settings")
        owner.get_by_label("Private endpoints allowed as provider base URLs").fill(
            f"{_host(fake_upstream.url)}\n{_host(op.issuer)}"
        )
        owner.get_by_role("button", name="Save settings").click()
        owner.wait_for_selector("text=Settings saved.")

        owner.get_by_role("link", name="Single sign-on").click()
        owner.locator("#id_name").fill("testop")
        owner.get_by_label("Kind").select_option("oidc")
        owner.get_by_label("Button label").fill("Test IdP")
        owner.get_by_label("OIDC issuer URL").fill(op.issuer)
        owner.get_by_label("OIDC client id").fill(CLIENT_ID)
        owner.get_by_label("OIDC client secret").fill(CLIENT_SECRET)
        owner.get_by_label("OIDC scopes").fill("openid email profile groups")
        owner.get_by_role("button", name="Add identity provider").click()
        owner.wait_for_selector("text=Identity provider testop added.")
        assert owner.locator("code", has_text="/oidc/callback").inner_text() == (
            expected_redirect_uri
        )
        assert CLIENT_SECRET not in owner.content()

        owner.get_by_label("IdP group").fill("ml-platform")
        owner.locator("#id_role").select_option("admin")
        owner.get_by_role("button", name="Add rule").click()
        owner.wait_for_selector("text=Rule for group ml-platform added.")

        owner.get_by_role("link", name="← Single sign-on").click()
        owner.locator("#id_domain").fill(DOMAIN)
        owner.get_by_role("button", name="Claim domain").click()
        owner.wait_for_selector(f"text={DOMAIN} claimed; an Owner confirms it.")
        challenge = owner.locator(f'code[data-challenge="{DOMAIN}"]').inner_text()
        owner.get_by_label("Enter the challenge").fill(challenge)
        owner.get_by_role("button", name="Confirm").click()
        owner.wait_for_selector(f"text={DOMAIN} is verified.")

        # A new colleague: "Sign in with SSO", their e-mail, the provider's own pages.
        erin = browser.new_context().new_page()
        sso_sign_in(erin, base, f"erin@{DOMAIN}", "Test IdP")
        assert erin.url.startswith(op.issuer)
        at_the_oidc_provider(erin, "erin")
        erin.wait_for_selector("text=Signed in as erin through Test IdP.")
        assert erin.url == f"{base}/orgs/acme/"
        assert orm(role_of, "erin", cast.acme) == "admin"

        # The audit log shows each decision of that sign-in.
        owner.goto(f"{base}/orgs/acme/audit-log?action=auth:sso_*")
        log = owner.locator("table.audit").inner_text()
        assert "auth:sso_provision" in log and "auth:sso_login" in log
        assert "user_create" in log and "membership_create" in log
        owner.goto(f"{base}/orgs/acme/audit-log?action=member:update")
        assert "member → admin" in owner.locator("table.audit").inner_text()

        # The IdP drops erin from the group: the next sign-in takes the role back.
        op.users["erin"]["claims"]["groups"] = []
        op.rotate(op.keys)  # restarted with the new directory (same issuer and keys)
        again = browser.new_context().new_page()
        sso_sign_in(again, base, f"erin@{DOMAIN}", "Test IdP")
        at_the_oidc_provider(again, "erin")
        again.wait_for_selector("text=Signed in as erin through Test IdP.")
        assert orm(role_of, "erin", cast.acme) == "member"
        owner.goto(f"{base}/orgs/acme/audit-log?action=member:update")
        assert "admin → member" in owner.locator("table.audit").inner_text()

    erin_user = User.objects.get(username="erin")
    assert not erin_user.has_usable_password()
    updates = records(cast.acme, "member:update", via="sso")
    assert [(r.data["role_before"], r.data["role_after"]) for r in updates] == [
        ("member", "admin"),
        ("admin", "member"),
    ]
    assert len(records(cast.acme, "auth:sso_login")) == 2
    assert all(r.outcome == "success" for r in records(cast.acme, "auth:sso_login"))
    assert [r.data["op"] for r in records(cast.acme, "auth:sso_provision")] == [
        "user_create",
        "membership_create",
    ]
    config = records(cast.acme, "sso:manage")
    assert [r.data["op"] for r in config] == [
        "provider_create",
        "mapping_create",
        "domain_claim",
        "domain_confirm",
    ]


# --- SAML: connected from metadata XML in the dashboard ---------------------------------------


@pytest.fixture
def saml_idp(base, cast):
    """A pysaml2 IdP with a sign-in page, serving over HTTP on 127.0.0.1. It does not
    know our SP yet: the test hands it our metadata once the Owner has connected it."""
    if not saml.xmlsec1_path():
        from tests.conftest import require_or_skip

        require_or_skip("xmlsec1 is not installed (Debian package xmlsec1)")
    server = IdpHttpServer(login_page=True)
    placeholder = saml.sp_metadata(
        saml.SpConfig(entity_id="https://placeholder.invalid/sp", acs_url=f"{base}/placeholder")
    )
    idp = TestIdp(
        entity_id="https://idp.acme.test/saml2", sso_url=server.sso_url, sp_metadata_xml=placeholder
    )
    grace = Person(
        # A persistent NameID (no e-mail in it): the e-mail comes from the attribute the
        # Owner names, the groups from another non-default attribute.
        name_id="g-1001",
        name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        attributes={
            "mail": [f"grace@{DOMAIN}"],
            "displayName": ["Grace Hopper"],
            "memberOf": ["ml-platform"],
        },
    )
    idp.users = {"grace": (USER_PASSWORD, grace)}
    server.idp = idp
    yield server
    server.close()


@pytest.mark.browser
def test_owner_connects_saml_from_metadata_xml_and_groups_map_to_role_and_team(
    base, saml_idp, cast
):
    from orgs.models import Team

    verify_domain(cast, DOMAIN)
    with org_scope(cast.acme):
        team = Team.objects.create(org=cast.acme, slug="ml-platform", name="ML platform")
    metadata_xml = saml_idp.idp.metadata()

    with chromium() as browser:
        owner = browser.new_context().new_page()
        login(owner, base, "alice")
        owner.goto(f"{base}/orgs/acme/sso")
        owner.locator("#id_name").fill("corp-saml")
        owner.get_by_label("Kind").select_option("saml")
        owner.get_by_label("Button label").fill("Corp SAML")
        owner.get_by_label("SAML metadata XML").fill(metadata_xml)
        owner.get_by_label("SAML groups attribute").fill("memberOf")
        owner.get_by_label("SAML e-mail attribute").fill("mail")
        owner.get_by_label("This IdP asserts only e-mail addresses it verified").check()
        owner.get_by_role("button", name="Add identity provider").click()
        owner.wait_for_selector("text=Identity provider corp-saml added.")
        provider = orm(lambda: IdentityProvider.all_orgs.get(name="corp-saml"))
        acs = f"{base}/auth/sso/acme/saml/{provider.pk}/acs"
        assert owner.locator("code", has_text="/acs").inner_text() == acs
        metadata_link = owner.get_by_role("link", name="download").get_attribute("href")

        owner.get_by_label("IdP group").fill("ml-platform")
        owner.locator("#id_role").select_option("admin")
        owner.locator("#id_team").select_option("ml-platform")
        owner.get_by_role("button", name="Add rule").click()
        owner.wait_for_selector("text=Rule for group ml-platform added.")

        # The IdP's administrator registers our SP from the metadata we serve.
        ours = httpx.get(f"{base}{metadata_link}", timeout=30)
        assert ours.status_code == 200 and acs in ours.text
        saml_idp.idp = saml_idp.idp.trusting(ours.text)

        grace = browser.new_context().new_page()
        sso_sign_in(grace, base, f"grace@{DOMAIN}", "Corp SAML")
        assert grace.url.startswith(saml_idp.sso_url)  # HTTP-Redirect binding
        grace.get_by_label("Username").fill("grace")
        grace.get_by_label("Password").fill(USER_PASSWORD)
        grace.get_by_role("button", name="Sign in").click()  # then HTTP-POST to our ACS
        grace.wait_for_selector("text=Signed in as grace through Corp SAML.")
        assert orm(role_of, "grace", cast.acme) == "admin"
        assert orm(lambda: TeamMember.all_orgs.filter(team=team, user__username="grace").exists())

        saml_idp.idp.users["grace"][1].attributes["memberOf"] = []
        again = browser.new_context().new_page()
        sso_sign_in(again, base, f"grace@{DOMAIN}", "Corp SAML")
        again.get_by_label("Username").fill("grace")
        again.get_by_label("Password").fill(USER_PASSWORD)
        again.get_by_role("button", name="Sign in").click()
        again.wait_for_selector("text=Signed in as grace through Corp SAML.")

    assert role_of("grace", cast.acme) == "member"
    assert not TeamMember.all_orgs.filter(team=team, user__username="grace").exists()
    provider.refresh_from_db()
    assert (provider.groups_attribute, provider.email_attribute) == ("memberOf", "mail")
    assert provider.emails_verified is True
    assert provider.idp_entity_id == "https://idp.acme.test/saml2"
    assert provider.sso_url == saml_idp.sso_url
    teams = records(cast.acme, "team:manage", via="sso")
    assert [r.data["op"] for r in teams] == ["member_add", "member_remove"]
    logins = records(cast.acme, "auth:sso_login")
    assert [(r.outcome, r.data["kind"]) for r in logins] == [("success", "saml")] * 2


# --- enforce_sso: members refused in the browser, the Owner's break-glass ---------------------


@pytest.fixture
def owner_seed(base, cast) -> bytes:
    from orgs.services import two_factor

    two_factor.totp_setup(user=cast.alice)
    TOTPDevice.objects.filter(user=cast.alice).update(confirmed=True)
    return TOTPDevice.objects.get(user=cast.alice).seed_plaintext()


@pytest.mark.browser
def test_enforce_sso_refuses_member_passwords_and_keeps_the_owners_break_glass(
    base, op, cast, owner_seed
):
    connect_oidc(cast.acme, op.issuer)
    with chromium() as browser:
        owner = browser.new_context().new_page()
        login(owner, base, "alice", owner_seed)
        owner.wait_for_selector("text=Signed in as alice")
        owner.goto(f"{base}/orgs/acme/sso")
        owner.get_by_role("button", name="Enforce SSO").click()
        owner.wait_for_selector("text=SSO is now enforced.")

        bob = browser.new_context().new_page()
        login(bob, base, "bob")
        alert = bob.locator(".errors, .error").first.inner_text()
        assert "acme requires single sign-on" in alert and "/auth/sso/acme" in alert
        assert bob.url.startswith(f"{base}/login")
        assert bob.get_by_role("link", name="Sign in with SSO").is_visible()

        # Break-glass: the Owner's password and second factor still work.
        later = browser.new_context().new_page()
        clock.advance(31)  # a new TOTP step: a code is accepted once
        login(later, base, "alice", owner_seed)
        later.wait_for_selector("text=Signed in as alice")

    cast.acme.refresh_from_db()
    assert cast.acme.policy.enforce_sso is True
    [refusal] = records(cast.acme, "auth:login", reason="sso_enforced")
    assert (refusal.outcome, refusal.actor_user, refusal.status_code) == ("denied", cast.bob, 403)
    logins = AuditRecord.objects.filter(
        action="auth:login", outcome="success", actor_user=cast.alice
    )
    assert logins.count() == 2


# --- the API flow: loopback redirect + PKCE, then /auth/me and the gateway -------------------


def api_start(base: str, redirect_uri: str, verifier: str) -> httpx.Response:
    """What a CLI does first: its loopback address and the S256 challenge of its verifier."""
    return httpx.post(
        f"{base}/api/v1/auth/sso/acme",
        json={
            "redirect_uri": redirect_uri,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        },
        timeout=60,
    )


@pytest.mark.browser
def test_api_flow_ends_in_a_token_pair_for_auth_me_and_the_gateway(base, op, cast, llm):
    from openai import OpenAI

    from tests.gateway.conftest import usage_rows

    connect_oidc(cast.acme, op.issuer)
    verify_domain(cast, DOMAIN)
    callback = CallbackServer().start()
    verifier = secrets.token_urlsafe(48)
    try:
        started = api_start(base, callback.url, verifier)
        assert started.status_code == 200, started.text
        assert started.headers["Cache-Control"] == "no-store"
        authorization_url = started.json()["authorization_url"]
        assert authorization_url.startswith(op.issuer)
        with chromium() as browser:
            page = browser.new_page()
            page.goto(authorization_url)
            at_the_oidc_provider(page, "erin")
            page.wait_for_url(f"{callback.url}?*")
            assert page.get_by_role("heading").inner_text() == "Back at Inferia"
    finally:
        callback.stop()
    [query] = callback.queries
    assert set(query) == {"code"}

    wrong = httpx.post(
        f"{base}/api/v1/auth/sso/token",
        json={"code": "not-" + query["code"], "code_verifier": verifier},
        timeout=30,
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "AUTHENTICATION_FAILED"
    exchanged = httpx.post(
        f"{base}/api/v1/auth/sso/token",
        json={"code": query["code"], "code_verifier": verifier},
        timeout=30,
    )
    assert exchanged.status_code == 200, exchanged.text
    pair = exchanged.json()
    assert pair["token_type"] == "Bearer" and pair["user"]["username"] == "erin"
    again = httpx.post(
        f"{base}/api/v1/auth/sso/token",
        json={"code": query["code"], "code_verifier": verifier},
        timeout=30,
    )
    assert again.status_code == 401  # single use

    me = httpx.get(
        f"{base}/api/v1/auth/me",
        headers={"Authorization": f"Bearer {pair['access_token']}"},
        timeout=30,
    )
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["user"]["username"] == "erin"
    assert [
        m["org"]["slug"] if isinstance(m["org"], dict) else m["org"] for m in body["memberships"]
    ] == ["acme"]

    llm.grant(f"authz_rules:\n  - models: [{MODEL}]\n    users: [erin]\n")
    client = OpenAI(
        base_url=f"{base}/api/llm/v1",
        api_key=pair["access_token"],
        default_headers={"OpenAI-Organization": "acme"},
        max_retries=0,
    )
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}]
    )
    assert raw.parse().choices[0].message.content
    request_id = raw.headers["X-Request-ID"]
    erin = User.objects.get(username="erin")
    [usage] = usage_rows(request_id=request_id)
    assert (usage.user_id, usage.org_id) == (erin.pk, cast.acme.pk)
    record = AuditRecord.objects.get(request_id=request_id)
    assert (record.action, record.outcome, record.actor_user) == ("inference:run", "success", erin)

    assert [
        r.data.get("via") for r in AuditRecord.objects.filter(action="auth:login", actor_user=erin)
    ] == ["sso_api"]
    denied = AuditRecord.objects.filter(action="auth:sso_token", outcome="denied")
    assert sorted(r.data["reason"] for r in denied) == ["bad_code", "bad_code"]


def test_api_flow_refused_sign_in_comes_back_to_the_loopback_as_an_error(base, op, cast):
    connect_oidc(cast.acme, op.issuer)
    verify_domain(cast, DOMAIN)
    callback = CallbackServer().start()
    try:
        started = api_start(base, callback.url, secrets.token_urlsafe(48)).json()
        browser = HttpBrowser(base)
        landed = browser.walk(
            browser.client.get(started["authorization_url"]),
            username="mallory",
            password=USER_PASSWORD,
            until=lambda r: str(r.url).startswith(callback.url),
        )
        browser.close()
    finally:
        callback.stop()
    assert landed.status_code == 200
    [query] = callback.queries
    assert query["error"] == "access_denied"
    assert "verified" in query["error_description"]
    [refusal] = records(cast.acme, "auth:sso_login", reason="email_unverified")
    assert refusal.outcome == "denied"
    assert not User.objects.filter(username="mallory").exists()


def test_api_start_is_502_and_audited_when_the_provider_cannot_be_asked(base, cast):
    from tests.sso.oidc_support import free_port

    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    connect_oidc(cast.acme, gone)
    response = api_start(base, "http://127.0.0.1:8765/callback", secrets.token_urlsafe(48))
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "UPSTREAM_ERROR" and error["details"] == {"reason": "fetch_failed"}
    [refusal] = records(cast.acme, "auth:sso_login", reason="fetch_failed")
    assert refusal.outcome == "denied"
    assert not SsoFlow.all_orgs.exists()


# --- failures seen from outside: a clear page and an audit record ---------------------------


def _dashboard_attempt(base, provider, username: str, **walk) -> httpx.Response:
    """A sign-in from "Continue with ..." to its end, in a browser of its own; a refused
    one leaves that browser signed out."""
    browser = HttpBrowser(base)
    try:
        end = browser.walk(
            browser.start("acme", str(provider.pk)),
            username=username,
            password=USER_PASSWORD,
            **walk,
        )
        end.signed_in = browser.get("/orgs/acme/").status_code == 200  # type: ignore[attr-defined]
        return end
    finally:
        browser.close()


def _refused(response: httpx.Response, text: str) -> None:
    assert response.status_code == 403, (response.status_code, response.text[:800])
    assert "<h1>Sign-in refused</h1>" in response.text
    assert text in response.text, response.text[:2000]
    assert getattr(response, "signed_in", False) is False


def test_idp_error_is_shown_and_audited(base, op, cast):
    provider = connect_oidc(cast.acme, op.issuer)
    verify_domain(cast, DOMAIN)
    page = _dashboard_attempt(base, provider, "erin", consent="abort")
    _refused(page, "The identity provider refused the sign-in: access_denied")
    [record] = records(cast.acme, "auth:sso_login", reason="idp_error")
    assert (record.outcome, record.target_id) == ("denied", str(provider.pk))


def test_unverified_email_is_not_provisioned(base, op, cast):
    provider = connect_oidc(cast.acme, op.issuer)
    verify_domain(cast, DOMAIN)
    page = _dashboard_attempt(base, provider, "mallory")
    _refused(page, "verified e-mail addresses")
    [record] = records(cast.acme, "auth:sso_login", reason="email_unverified")
    assert record.outcome == "denied" and record.data["provider"] == "testop"
    assert not User.objects.filter(email__iexact=f"mallory@{DOMAIN}").exists()


def test_domain_not_verified_is_not_provisioned(base, op, cast):
    provider = connect_oidc(cast.acme, op.issuer)
    verify_domain(cast, DOMAIN)  # acme.test, not elsewhere.test
    page = _dashboard_attempt(base, provider, "olga")
    _refused(page, "verified domains")
    [record] = records(cast.acme, "auth:sso_login", reason="domain_unverified")
    assert record.outcome == "denied"
    assert not User.objects.filter(username="olga").exists()


def test_a_repeated_callback_parameter_is_refused_not_picked(base, op, cast):
    """The provider's answer with a second ``code`` appended (a parameter pollution that
    would let one of two values be picked): refused, whichever comes first."""
    provider = connect_oidc(cast.acme, op.issuer)
    verify_domain(cast, DOMAIN)
    callback = f"{base}/auth/sso/acme/oidc/callback"
    browser = HttpBrowser(base)
    try:
        answer = browser.walk(
            browser.start("acme", str(provider.pk)),
            username="erin",
            password=USER_PASSWORD,
            until=lambda r: r.is_redirect and r.headers["location"].startswith(callback),
        )
        polluted = browser.client.get(answer.headers["location"] + "&code=attacker-code")
        polluted.signed_in = browser.get("/orgs/acme/").status_code == 200  # type: ignore[attr-defined]
    finally:
        browser.close()
    _refused(polluted, "repeats code")
    [record] = records(cast.acme, "auth:sso_login", reason="bad_response")
    assert record.outcome == "denied"
    assert not User.objects.filter(username="erin").exists()


def _other_key():
    return rsa_key("crafted")  # the same kid as the provider's key, another key


@pytest.mark.parametrize(
    ("forge", "reason", "shown"),
    [
        (
            lambda p, d: sign({**d, "aud": "another-client"}, p.key),
            "bad_audience",
            "another application",
        ),
        (lambda p, d: sign(d, _other_key()), "bad_signature", "signature"),
        (lambda p, d: unsigned(d, kid=p.key.kid), "bad_algorithm", "algorithm"),
        (lambda p, d: sign({**d, "nonce": "another"}, p.key), "bad_nonce", "nonce"),
    ],
    ids=["wrong-audience", "forged-signature", "alg-none", "wrong-nonce"],
)
def test_forged_id_tokens_are_refused_and_audited(base, cast, forge, reason, shown):
    crafted = CraftedProvider(rsa_key("crafted")).start()
    try:
        crafted.token_factory = lambda defaults: crafted.answer(forge(crafted, defaults))
        provider = connect_oidc(cast.acme, crafted.issuer, name="crafted")
        verify_domain(cast, DOMAIN)
        page = _dashboard_attempt(base, provider, "dana")
    finally:
        crafted.stop()
    _refused(page, shown)
    [record] = records(cast.acme, "auth:sso_login", reason=reason)
    assert (record.outcome, record.status_code) == ("denied", 403)
    assert not User.objects.filter(username="dana").exists()
    assert crafted.hits["/token"] == 1  # the refusal came after a real code exchange


def _connect_saml(base, server: IdpHttpServer, cast) -> IdentityProvider:
    """The SAML IdP connected from its metadata XML (by the API, as the dashboard test
    does by the page), trusting our SP's metadata."""
    from sso import services

    with org_scope(cast.acme):
        provider = services.identity_provider_create(
            access=owner_access(cast.acme, cast.alice),
            name="corp-saml",
            kind="saml",
            metadata_xml=server.idp.metadata(),
            groups_attribute="memberOf",
            email_attribute="mail",
            emails_verified=True,
        )
    ours = httpx.get(f"{base}/auth/sso/acme/saml/{provider.pk}/metadata", timeout=30)
    server.idp = server.idp.trusting(ours.text)
    return provider


def _tamper_email(fields: dict[str, str]) -> dict[str, str]:
    xml = base64.b64decode(fields["SAMLResponse"]).decode()
    assert f"grace@{DOMAIN}" in xml
    forged = xml.replace(f"grace@{DOMAIN}", f"alice@{DOMAIN}")
    return {**fields, "SAMLResponse": base64.b64encode(forged.encode()).decode()}


def test_tampered_saml_response_is_refused_and_audited(base, saml_idp, cast):
    verify_domain(cast, DOMAIN)
    provider = _connect_saml(base, saml_idp, cast)
    page = _dashboard_attempt(base, provider, "grace", tamper=_tamper_email)
    _refused(page, "signature is not valid")
    [record] = records(cast.acme, "auth:sso_login", reason="bad_signature")
    assert (record.outcome, record.data["provider"]) == ("denied", "corp-saml")
    assert not User.objects.filter(username="grace").exists()


def test_replayed_saml_response_is_refused_and_audited(base, saml_idp, cast):
    verify_domain(cast, DOMAIN)
    provider = _connect_saml(base, saml_idp, cast)
    captured: list[dict[str, str]] = []

    def keep(fields: dict[str, str]) -> dict[str, str]:
        captured.append(dict(fields))
        return fields

    done = _dashboard_attempt(base, provider, "grace", tamper=keep)
    assert done.status_code == 200 and "Signed in as grace" in done.text
    acs = f"{base}/auth/sso/acme/saml/{provider.pk}/acs"

    # The same POST again (a captured form re-sent): its flow is used up.
    replay = httpx.post(acs, data=captured[0], timeout=30)
    _refused(replay, "invalid, used or expired")
    # The same response for a new sign-in of the attacker's browser: it answers another
    # request (its InResponseTo is bound to the first flow).
    attacker = HttpBrowser(base)
    try:
        to_idp = attacker.start("acme", str(provider.pk))
        relay_state = parse_qs(urlsplit(to_idp.headers["location"]).query)["RelayState"][0]
        reused = attacker.client.post(
            acs, data={"SAMLResponse": captured[0]["SAMLResponse"], "RelayState": relay_state}
        )
    finally:
        attacker.close()
    _refused(reused, "answers another request")
    reasons = [
        r.data["reason"] for r in records(cast.acme, "auth:sso_login") if r.outcome == "denied"
    ]
    assert reasons == ["bad_state", "bad_in_response_to"]
    assert User.objects.filter(username="grace").count() == 1


# --- the CLI: the device flow approved by a person who signs in with SSO ----------------------


@pytest.mark.browser
def test_cli_device_login_approved_after_an_sso_sign_in_then_the_sdk_calls_the_gateway(
    base, op, cast, llm, settings, tmp_path, monkeypatch
):
    import inferia_client

    from tests.clients.test_inferia_cli import start_login
    from tests.gateway.conftest import usage_rows

    settings.INFERIA_DEVICE_POLL_SECONDS = 1
    monkeypatch.setenv("INFERIA_CONFIG_DIR", str(tmp_path / "inferia"))
    monkeypatch.setenv("INFERIA_TOKEN_STORE", "file")
    monkeypatch.delenv("INFERIA_SERVER", raising=False)
    connect_oidc(cast.acme, op.issuer)
    verify_domain(cast, DOMAIN)

    running, code, complete = start_login(base, "--org", "acme")
    with chromium() as browser:
        page = browser.new_page()
        page.goto(complete)  # not signed in: the login page, with the way back kept
        page.get_by_role("link", name="Sign in with SSO").click()
        page.get_by_label("Work e-mail").fill(f"erin@{DOMAIN}")
        page.get_by_role("button", name="Continue", exact=True).click()
        page.get_by_role("button", name="Continue with Test IdP").click()
        at_the_oidc_provider(page, "erin")
        page.wait_for_selector("text=Signed in as erin through Test IdP.")
        assert page.get_by_label("Code shown by your device").input_value() == code
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("button", name="Approve").click()
        page.get_by_role("heading", name="Device connected").wait_for()
    rc, out, err = running.finish()
    assert rc == 0, (out, err)
    assert f"Signed in to {base} as erin (organization acme)" in out

    llm.grant(f"authz_rules:\n  - models: [{MODEL}]\n    users: [erin]\n")
    client = inferia_client.openai_client(max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}]
    )
    assert raw.parse().choices[0].message.content
    erin = User.objects.get(username="erin")
    [usage] = usage_rows(request_id=raw.headers["X-Request-ID"])
    assert (usage.user_id, usage.org_id) == (erin.pk, cast.acme.pk)
    approvals = AuditRecord.objects.filter(action="auth:device_approve", actor_user=erin)
    assert approvals.count() == 1
