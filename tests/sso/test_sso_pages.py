"""The SSO pages with a test client: start (a POST from our page), the OIDC callback
and SAML ACS, the finishing step bound to the browser session that started, the API
flow (loopback redirect, one-time code, PKCE), "Sign in with SSO" by e-mail, and the
org's SSO settings pages.

The protocol modules (``sso.oidc``, ``sso.saml``) have tests of their own against real
identity providers; here ``sso.protocols``' three protocol calls are replaced by
functions returning the redirect and the ``Claims`` those modules return, so these
tests exercise this side: state, sessions, sign-in, tokens, audit.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from audit.models import AuditRecord
from sso import protocols
from sso.errors import SsoError
from sso.models import SsoFlow
from tests.conftest import PASSWORD, assert_error
from tests.sso.conftest import claims, self_signed_pem


class FakeIdp:
    """What the protocol modules answer: a URL carrying our state, then claims (or a
    refusal) for the answer that comes back."""

    def __init__(self) -> None:
        self.claims = claims()
        self.error: SsoError | None = None
        self.kept: list[dict] = []

    def start(self, provider, *, base_url, state):
        oidc_state = secrets.token_urlsafe(16)
        return f"https://idp.example.com/authorize?state={oidc_state}", {
            "state": oidc_state,
            "nonce": "n-" + oidc_state,
            "code_verifier": "v" * 43,
        }

    def complete(self, provider, *, base_url, query=None, kept=None, saml_response=None):
        self.kept.append(kept or {})
        if self.error is not None:
            raise self.error
        return self.claims


@pytest.fixture
def idp(monkeypatch):
    fake = FakeIdp()
    monkeypatch.setattr(protocols, "start", fake.start)
    monkeypatch.setattr(protocols, "complete_oidc", fake.complete)
    return fake


def _start(client: Client, provider) -> str:
    page = client.get("/auth/sso/acme")
    assert page.status_code == 200 and provider.label.encode() in page.content
    response = client.post("/auth/sso/acme", {"provider": str(provider.pk)})
    assert response.status_code == 302 and response["Location"].startswith(
        "https://idp.example.com/"
    )
    return parse_qs(urlsplit(response["Location"]).query)["state"][0]


def test_dashboard_sign_in_end_to_end(cast, oidc, domain, idp):
    browser = Client()
    state = _start(browser, oidc)
    back = browser.get("/auth/sso/acme/oidc/callback", {"state": state, "code": "c"})
    assert back.status_code == 302 and "/auth/sso/acme/finish" in back["Location"]
    assert idp.kept[0]["nonce"] == "n-" + state  # what start kept came back, decrypted
    done = browser.get(back["Location"])
    assert done.status_code == 302 and done["Location"] == "/orgs/acme/"
    assert browser.get("/orgs/acme/").status_code == 200
    login = AuditRecord.objects.filter(action="auth:login", outcome="success").latest("seq")
    assert login.data == {"via": "sso"} and login.actor_user.email == "erin@acme.example.com"
    # The state is single use.
    again = browser.get("/auth/sso/acme/oidc/callback", {"state": state, "code": "c"})
    assert again.status_code == 403
    assert AuditRecord.objects.filter(action="auth:sso_login", data__reason="bad_state").exists()


def test_a_flow_finishes_only_in_the_session_that_started_it(cast, oidc, domain, idp):
    attacker, victim = Client(), Client()
    state = _start(attacker, oidc)
    back = attacker.get("/auth/sso/acme/oidc/callback", {"state": state})
    # The attacker sends the finishing link to a victim: refused, nobody signed in.
    refused = victim.get(back["Location"])
    assert refused.status_code == 403 and "_auth_user_id" not in victim.session
    assert AuditRecord.objects.filter(data__reason="session_mismatch").exists()


def test_starting_needs_a_post_with_csrf(cast, oidc, idp):
    browser = Client(enforce_csrf_checks=True)
    assert browser.post("/auth/sso/acme", {"provider": str(oidc.pk)}).status_code == 403
    assert not SsoFlow.all_orgs.exists()


def test_protocol_refusals_are_shown_and_audited(cast, oidc, domain, idp):
    browser = Client()
    state = _start(browser, oidc)
    idp.error = SsoError("bad_nonce", "The ID token's nonce does not match")
    response = browser.get("/auth/sso/acme/oidc/callback", {"state": state})
    assert response.status_code == 403 and b"nonce does not match" in response.content
    record = AuditRecord.objects.get(action="auth:sso_login", data__reason="bad_nonce")
    assert record.org_id == cast.acme.pk and record.outcome == "denied"


def test_sign_in_refusal_shows_the_reason(cast, oidc, domain, idp):
    idp.claims = claims(email_verified=False)
    browser = Client()
    state = _start(browser, oidc)
    done = browser.get(browser.get("/auth/sso/acme/oidc/callback", {"state": state})["Location"])
    assert done.status_code == 403 and b"verified" in done.content
    assert "_auth_user_id" not in browser.session


def test_saml_acs_takes_the_relay_state_and_the_response(cast, domain, alice_client, monkeypatch):
    body = {
        "name": "adfs",
        "kind": "saml",
        "idp_entity_id": "https://idp.example.com/saml",
        "sso_url": "https://idp.example.com/saml/sso",
        "signing_certificates": [self_signed_pem()],
        "emails_verified": True,
    }
    provider_id = alice_client.post(
        "/api/v1/orgs/acme/identity-providers", body, format="json"
    ).json()["id"]
    seen = {}

    def start(provider, *, base_url, state):
        return f"https://idp.example.com/saml/sso?RelayState={state}", {
            "state": state,
            "request_id": "id-1",
        }

    def complete(provider, *, base_url, saml_response, kept):
        seen.update(kept=kept, response=saml_response)
        return claims(provider_kind="saml", subject="erin-nameid")

    monkeypatch.setattr(protocols, "start", start)
    monkeypatch.setattr(protocols, "complete_saml", complete)
    browser = Client(enforce_csrf_checks=True)
    browser.get("/auth/sso/acme")
    token = browser.cookies["csrftoken"].value
    started = browser.post(
        "/auth/sso/acme", {"provider": provider_id, "csrfmiddlewaretoken": token}
    )
    relay = parse_qs(urlsplit(started["Location"]).query)["RelayState"][0]
    acs = browser.post(
        f"/auth/sso/acme/saml/{provider_id}/acs", {"SAMLResponse": "PHNhbWw+", "RelayState": relay}
    )
    assert acs.status_code == 302, acs.content
    assert seen == {"kept": {"state": relay, "request_id": "id-1"}, "response": "PHNhbWw+"}
    assert browser.get(acs["Location"]).status_code == 302
    assert browser.session["_auth_user_id"]


# --- the API flow ------------------------------------------------------------------------


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    return verifier, challenge


def test_api_flow_ends_in_a_token_pair(cast, oidc, domain, idp, anon_client):
    verifier, challenge = _pkce()
    start = anon_client.post(
        "/api/v1/auth/sso/acme",
        {
            "redirect_uri": "http://127.0.0.1:9123/cb",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        format="json",
    )
    assert start.status_code == 200, start.content
    state = parse_qs(urlsplit(start.json()["authorization_url"]).query)["state"][0]
    back = Client().get("/auth/sso/acme/oidc/callback", {"state": state})
    assert back.status_code == 302 and back["Location"].startswith("http://127.0.0.1:9123/cb?code=")
    code = parse_qs(urlsplit(back["Location"]).query)["code"][0]
    wrong = anon_client.post(
        "/api/v1/auth/sso/token", {"code": code, "code_verifier": "x" * 43}, format="json"
    )
    assert_error(wrong, 401, "AUTHENTICATION_FAILED")
    # A wrong verifier burnt the code.
    again = anon_client.post(
        "/api/v1/auth/sso/token", {"code": code, "code_verifier": verifier}, format="json"
    )
    assert_error(again, 401, "AUTHENTICATION_FAILED")


def test_api_flow_pair_works_and_the_code_is_single_use(cast, oidc, domain, idp, anon_client):
    verifier, challenge = _pkce()
    start = anon_client.post(
        "/api/v1/auth/sso/acme",
        {
            "redirect_uri": "http://localhost:9124/",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        format="json",
    )
    state = parse_qs(urlsplit(start.json()["authorization_url"]).query)["state"][0]
    back = Client().get("/auth/sso/acme/oidc/callback", {"state": state})
    code = parse_qs(urlsplit(back["Location"]).query)["code"][0]
    pair = anon_client.post(
        "/api/v1/auth/sso/token", {"code": code, "code_verifier": verifier}, format="json"
    )
    assert pair.status_code == 200, pair.content
    me = Client().get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {pair.json()['access_token']}")
    assert me.status_code == 200 and me.json()["user"]["email"] == "erin@acme.example.com"
    reuse = anon_client.post(
        "/api/v1/auth/sso/token", {"code": code, "code_verifier": verifier}, format="json"
    )
    assert_error(reuse, 401, "AUTHENTICATION_FAILED")


def test_api_flow_refuses_non_loopback_redirects_and_unknown_orgs(cast, oidc, idp, anon_client):
    _verifier, challenge = _pkce()
    for uri in ("https://evil.example.com/cb", "http://10.0.0.1:80/", "http://127.0.0.1/cb?x=1"):
        error = assert_error(
            anon_client.post(
                "/api/v1/auth/sso/acme",
                {"redirect_uri": uri, "code_challenge": challenge, "code_challenge_method": "S256"},
                format="json",
            ),
            400,
            "VALIDATION_ERROR",
        )
        assert "redirect_uri" in error["details"]
    assert_error(
        anon_client.post(
            "/api/v1/auth/sso/globex",
            {
                "redirect_uri": "http://127.0.0.1:9/",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
            format="json",
        ),
        404,
        "NOT_FOUND",
    )


# --- by e-mail and the settings pages ------------------------------------------------------


def test_sign_in_with_sso_by_email_domain(cast, oidc, domain, client):
    assert b"Sign in with SSO" in client.get("/login").content
    found = client.post("/auth/sso", {"email": "someone@acme.example.com"})
    assert found.status_code == 302 and found["Location"] == "/auth/sso/acme"
    missing = client.post("/auth/sso", {"email": "someone@nowhere.example.org"})
    assert missing.status_code == 400


def _login(client: Client, username: str) -> None:
    response = client.post(
        "/login", {"step": "password", "username": username, "password": PASSWORD}
    )
    assert response.status_code == 302, response.content


def test_settings_pages_for_admins_only(cast, client):
    _login(client, "bob")
    assert client.get("/orgs/acme/sso").status_code == 403
    other = Client()
    _login(other, "charlie")
    assert other.get("/orgs/acme/sso").status_code == 404


def test_admin_adds_a_provider_and_a_rule_owner_confirms_a_domain_in_the_dashboard(cast, client):
    _login(client, "dave")
    page = client.get("/orgs/acme/sso")
    assert page.status_code == 200 and b"Single sign-on" in page.content
    created = client.post(
        "/orgs/acme/sso",
        {
            "op": "provider_create",
            "name": "okta",
            "kind": "oidc",
            "is_enabled": "on",
            "default_role": "member",
            "issuer": "https://idp.example.com",
            "client_id": "inferia",
            "client_secret": "dashboard-secret",
            "scopes": "openid email profile",
            "groups_claim": "groups",
        },
    )
    assert created.status_code == 302, created.content
    edit = client.get(created["Location"])
    assert edit.status_code == 200 and b"/auth/sso/acme/oidc/callback" in edit.content
    assert b"dashboard-secret" not in edit.content
    rule = client.post(
        created["Location"],
        {"op": "mapping_create", "group": "admins", "role": "admin", "team": ""},
    )
    assert rule.status_code == 302
    assert b"admins" in client.get(created["Location"]).content
    claimed = client.post("/orgs/acme/sso", {"op": "domain_claim", "domain": "acme.example.com"})
    assert claimed.status_code == 302
    from sso.models import VerifiedDomain

    pending = VerifiedDomain.all_orgs.get(domain="acme.example.com")
    assert (
        pending.challenge.encode() not in client.get("/orgs/acme/sso").content
    )  # Admin: not shown
    owner = Client()
    _login(owner, "alice")
    assert pending.challenge.encode() in owner.get("/orgs/acme/sso").content
    owner.post(
        "/orgs/acme/sso",
        {"op": "domain_confirm", "domain_id": pending.pk, "challenge": pending.challenge},
    )
    pending.refresh_from_db()
    assert pending.status == "verified"


def test_require_2fa_still_applies_after_an_sso_sign_in(cast, oidc, domain, idp):
    """Decision (docs/sso.md): the IdP's MFA does not stand in for the org's 2FA policy;
    an SSO member of a require_2fa org enrols Inferia 2FA like everybody else."""
    from orgs.models import Organization

    Organization.objects.filter(pk=cast.acme.pk).update(require_2fa=True)
    browser = Client()
    state = _start(browser, oidc)
    done = browser.get(browser.get("/auth/sso/acme/oidc/callback", {"state": state})["Location"])
    assert done.status_code == 302 and browser.session["_auth_user_id"]
    page = browser.get("/orgs/acme/")
    assert page.status_code == 302 and page["Location"].startswith("/account/2fa")
    assert AuditRecord.objects.filter(action="auth:2fa_required", outcome="denied").exists()
