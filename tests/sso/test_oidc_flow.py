"""The OIDC code flow against the real provider: oidc-provider (npm) in Node.js on
127.0.0.1, signed with keys this test generated, signed in through its own pages
(in Chromium for one test, by following its forms with httpx for the others).

Every refusal here is produced by the real provider's answers: a state or nonce
that does not match the request, the provider's ``error`` parameter when the user
denies consent, its token endpoint refusing a replayed code or a wrong secret, a
discovery document for another issuer, and a key rotation on the provider.
"""

from __future__ import annotations

import logging
import os

import pytest

from sso import oidc
from sso.errors import SsoError
from tests.sso.oidc_support import (
    CLIENT_SECRET,
    USER_PASSWORD,
    CallbackServer,
    NodeProvider,
    node_available,
    oidc_config,
    rsa_key,
    sign_in_with_forms,
)

REDIRECT_URI = "http://127.0.0.1:9/callback"  # never served: the forms driver stops at it


@pytest.fixture(autouse=True)
def _fresh_caches():
    oidc.cache_clear()
    yield
    oidc.cache_clear()


@pytest.fixture(scope="module")
def op():
    node_available()
    provider = NodeProvider(redirect_uris=[REDIRECT_URI], keys=[rsa_key("k1")]).start()
    yield provider
    provider.stop()


def sign_in(config, username="alice", **kwargs):
    url, kept = oidc.authorization_request(config, REDIRECT_URI)
    return sign_in_with_forms(url, REDIRECT_URI, username=username, **kwargs), kept


def test_code_flow_returns_the_verified_claims_from_userinfo(op):
    config = oidc_config(op)
    url, kept = oidc.authorization_request(config, REDIRECT_URI)
    assert "code_challenge_method=S256" in url
    assert kept["code_verifier"] not in url  # only its S256 challenge travels
    query = sign_in_with_forms(url, REDIRECT_URI, username="alice")
    assert query["iss"] == op.issuer  # RFC 9207, checked by complete()

    claims = oidc.complete(config, REDIRECT_URI, query, kept)

    assert claims.provider_kind == "oidc"
    assert claims.subject == "alice"
    assert claims.email == "alice@acme.test"
    assert claims.email_verified is True
    assert claims.name == "Alice Archer"
    assert claims.groups == ("engineering", "inferia-admins")
    assert claims.raw["iss"] == op.issuer


def test_claims_carried_in_the_id_token_itself():
    node_available()
    provider = NodeProvider(
        redirect_uris=[REDIRECT_URI], keys=[rsa_key("k-id")], conform_id_token_claims=False
    ).start()
    try:
        config = oidc_config(provider, groups_claim="groups")
        query, kept = sign_in(config)
        claims = oidc.complete(config, REDIRECT_URI, query, kept)
    finally:
        provider.stop()
    assert (claims.email, claims.email_verified, claims.groups) == (
        "alice@acme.test",
        True,
        ("engineering", "inferia-admins"),
    )


@pytest.mark.parametrize("username", ["mallory", "nobody"])
def test_email_verified_is_false_unless_the_provider_says_true(op, username):
    config = oidc_config(op)
    query, kept = sign_in(config, username=username)
    claims = oidc.complete(config, REDIRECT_URI, query, kept)
    assert claims.email.endswith("@acme.test")
    assert claims.email_verified is False
    assert claims.groups == ()


def test_state_mismatch_is_refused_before_the_code_is_redeemed(op):
    config = oidc_config(op)
    query, kept = sign_in(config)
    forged = {**query, "state": query["state"][:-1] + ("A" if query["state"][-1] != "A" else "B")}
    with pytest.raises(SsoError) as refused:
        oidc.complete(config, REDIRECT_URI, forged, kept)
    assert refused.value.reason == "bad_state"
    # The code was not spent: with the right state the same answer still signs in.
    assert oidc.complete(config, REDIRECT_URI, query, kept).subject == "alice"


def test_answer_for_another_sign_in_is_refused(op):
    """A code and state from one browser's sign-in, completed with another's kept data."""
    config = oidc_config(op)
    query, _ = sign_in(config)
    _, other_kept = oidc.authorization_request(config, REDIRECT_URI)
    with pytest.raises(SsoError) as refused:
        oidc.complete(config, REDIRECT_URI, query, other_kept)
    assert refused.value.reason == "bad_state"


def test_wrong_nonce_is_refused(op):
    config = oidc_config(op)
    query, kept = sign_in(config)
    with pytest.raises(SsoError) as refused:
        oidc.complete(config, REDIRECT_URI, query, {**kept, "nonce": "another-sign-in"})
    assert refused.value.reason == "bad_nonce"


def test_denied_consent_comes_back_as_the_providers_error(op):
    config = oidc_config(op)
    query, kept = sign_in(config, consent="abort")
    assert query["error"] == "access_denied"
    with pytest.raises(SsoError) as refused:
        oidc.complete(config, REDIRECT_URI, query, kept)
    assert refused.value.reason == "idp_error"
    assert "access_denied" in refused.value.message


def test_a_code_is_redeemed_once(op):
    config = oidc_config(op)
    query, kept = sign_in(config)
    oidc.complete(config, REDIRECT_URI, query, kept)
    with pytest.raises(SsoError) as refused:
        oidc.complete(config, REDIRECT_URI, query, kept)
    assert refused.value.reason == "token_error"
    assert "invalid_grant" in refused.value.message


def test_wrong_client_secret_is_a_token_error_that_does_not_show_the_secret(op, caplog):
    caplog.set_level(logging.DEBUG)
    wrong_secret = "wrong-" + CLIENT_SECRET
    config = oidc_config(op, client_secret=wrong_secret)
    query, kept = sign_in(config)
    with pytest.raises(SsoError) as refused:
        oidc.complete(config, REDIRECT_URI, query, kept)
    assert refused.value.reason == "token_error"
    assert "invalid_client" in refused.value.message
    for text in (str(refused.value), repr(refused.value), repr(config), repr(kept), caplog.text):
        assert wrong_secret not in text
        assert CLIENT_SECRET not in text
    assert refused.value.__suppress_context__  # no library traceback (with its request) logged


def test_client_secret_never_reaches_logs_on_success(op, caplog):
    caplog.set_level(logging.DEBUG)
    config = oidc_config(op)
    query, kept = sign_in(config)
    oidc.complete(config, REDIRECT_URI, query, kept)
    assert caplog.records  # the HTTP client does log its requests...
    assert CLIENT_SECRET not in caplog.text  # ...but never the secret
    assert CLIENT_SECRET not in repr(config) and CLIENT_SECRET not in repr(kept)


def test_issuer_mismatch_in_discovery_is_refused(op):
    """The same provider reached as ``localhost``: its document names 127.0.0.1."""
    config = oidc_config(
        op,
        issuer=f"http://localhost:{op.port}",
        allowed_private_hosts=(f"localhost:{op.port}",),
    )
    with pytest.raises(SsoError) as refused:
        oidc.authorization_request(config, REDIRECT_URI)
    assert refused.value.reason == "bad_issuer"


def test_private_issuer_not_listed_is_refused(op):
    for allowed in [(), ("127.0.0.1:1",), ("10.0.0.1",)]:
        config = oidc_config(op, allowed_private_hosts=allowed)
        with pytest.raises(SsoError) as refused:
            oidc.discover(config)
        assert refused.value.reason == "address_refused", allowed


def test_key_rotation_on_the_provider_is_picked_up():
    """The provider restarts with a new key (the old one is gone from its JWKS). The
    first sign-in cached the old key set (``JWKS_TTL_SECONDS`` is far from over), so
    the second sign-in passes only because the unknown ``kid`` refetched the JWKS."""
    node_available()
    old, new = rsa_key("2026-old"), rsa_key("2026-new")
    provider = NodeProvider(redirect_uris=[REDIRECT_URI], keys=[old]).start()
    try:
        config = oidc_config(provider)
        query, kept = sign_in(config)
        assert oidc.complete(config, REDIRECT_URI, query, kept).subject == "alice"
        cached_kids = {key.kid for key in next(iter(oidc._jwks_cache.values()))[1].keys}
        assert cached_kids == {"2026-old"}

        provider.rotate([new])
        query, kept = sign_in(config)
        assert oidc.complete(config, REDIRECT_URI, query, kept).subject == "alice"
        cached_kids = {key.kid for key in next(iter(oidc._jwks_cache.values()))[1].keys}
        assert cached_kids == {"2026-new"}
    finally:
        provider.stop()


@pytest.mark.browser
def test_sign_in_in_chromium(tmp_path):
    """A person signs in at the provider's pages in Debian's Chromium; the browser
    lands on the relying party's callback, whose query ``complete`` verifies."""
    node_available()
    if not os.path.exists("/usr/bin/chromium"):
        from tests.conftest import require_or_skip

        require_or_skip("the browser test needs Debian's chromium at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    callback = CallbackServer().start()
    provider = NodeProvider(redirect_uris=[callback.url], keys=[rsa_key("k-browser")]).start()
    try:
        config = oidc_config(provider)
        url, kept = oidc.authorization_request(config, callback.url)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
                headless=True,
            )
            try:
                page = browser.new_page()
                page.goto(url)
                page.get_by_label("Username").fill("alice")
                page.get_by_label("Password").fill("not the password")
                page.get_by_role("button", name="Sign in").click()
                assert "Unknown user or wrong password" in page.content()
                page.get_by_label("Username").fill("alice")
                page.get_by_label("Password").fill(USER_PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.get_by_role("button", name="Allow").click()
                page.wait_for_url(f"{callback.url}?*")
                assert page.get_by_role("heading").inner_text() == "Back at Inferia"
            finally:
                browser.close()
        assert len(callback.queries) == 1
        claims = oidc.complete(config, callback.url, callback.queries[0], kept)
    finally:
        provider.stop()
        callback.stop()
    assert (claims.subject, claims.email, claims.email_verified) == (
        "alice",
        "alice@acme.test",
        True,
    )
    assert claims.groups == ("engineering", "inferia-admins")
