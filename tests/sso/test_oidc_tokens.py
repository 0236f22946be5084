"""ID tokens a real provider would not issue, served over real HTTP on 127.0.0.1 by
``CraftedProvider`` (tests/sso/oidc_support.py).

Why a crafted provider: oidc-provider signs only correct tokens, so a wrong
audience, an expired token, ``alg: none`` or an unknown key cannot come out of it.
The crafted provider still runs the protocol around the token for real: discovery
and JWKS over HTTP, an authorization endpoint that binds the code to the PKCE
challenge and the nonce of ``authorization_request``'s URL, a token endpoint that
checks the client's secret, the code, the redirect URI and the PKCE verifier
(so the happy path proves ``complete`` sends them). Only the ID token's content
and signature are the test's, made with keys the test generated.
"""

from __future__ import annotations

import pytest

from inferia import clock
from sso import oidc
from sso.errors import SsoError
from tests.sso.oidc_support import (
    CLIENT_ID,
    CraftedProvider,
    ec_key,
    hmac_signed,
    oidc_config,
    public_jwks,
    rsa_key,
    sign,
    unsigned,
)

REDIRECT_URI = "http://127.0.0.1:9/callback"


@pytest.fixture(scope="module")
def signing_key():
    return rsa_key("crafted-1")


@pytest.fixture
def idp(signing_key):
    oidc.cache_clear()
    provider = CraftedProvider(signing_key).start()
    yield provider
    provider.stop()
    oidc.cache_clear()


def run_flow(idp, config=None, *, kept_changes=None):
    config = config or oidc_config(idp)
    url, kept = oidc.authorization_request(config, REDIRECT_URI)
    query = idp.authorize(url)
    return oidc.complete(config, REDIRECT_URI, query, {**kept, **(kept_changes or {})})


def refused(idp, config=None) -> SsoError:
    with pytest.raises(SsoError) as caught:
        run_flow(idp, config)
    return caught.value


def test_a_correct_token_signs_in(idp):
    claims = run_flow(idp)
    assert (claims.subject, claims.email, claims.email_verified) == (
        "user-42",
        "dana@acme.test",
        True,
    )
    assert claims.groups == ("ml-platform",)
    request = idp.token_requests[-1]
    assert request["grant_type"] == "authorization_code"
    assert len(request["code_verifier"]) >= 43
    assert "client_secret" not in request  # it travels in the Basic header only


def test_wrong_audience_is_refused(idp):
    idp.token_factory = lambda c: idp.answer(sign({**c, "aud": "another-app"}, idp.key))
    assert refused(idp).reason == "bad_audience"


def test_several_audiences_need_azp_naming_us(idp):
    audiences = [CLIENT_ID, "another-app"]
    idp.token_factory = lambda c: idp.answer(sign({**c, "aud": audiences}, idp.key))
    assert refused(idp).reason == "bad_audience"
    idp.token_factory = lambda c: idp.answer(
        sign({**c, "aud": audiences, "azp": "another-app"}, idp.key)
    )
    assert refused(idp).reason == "bad_audience"
    idp.token_factory = lambda c: idp.answer(
        sign({**c, "aud": audiences, "azp": CLIENT_ID}, idp.key)
    )
    assert run_flow(idp).subject == "user-42"


def test_wrong_issuer_in_the_token_is_refused(idp):
    idp.token_factory = lambda c: idp.answer(sign({**c, "iss": "http://evil.test"}, idp.key))
    assert refused(idp).reason == "bad_issuer"


def test_wrong_nonce_in_the_token_is_refused(idp):
    idp.token_factory = lambda c: idp.answer(sign({**c, "nonce": "replayed"}, idp.key))
    assert refused(idp).reason == "bad_nonce"
    idp.token_factory = lambda c: idp.answer(sign({**c, "nonce": None}, idp.key))
    assert refused(idp).reason == "bad_nonce"


def test_expired_token_is_refused_beyond_the_leeway(idp):
    now = int(clock.time())
    idp.token_factory = lambda c: idp.answer(
        sign({**c, "iat": now - 600, "exp": now - oidc.LEEWAY_SECONDS - 30}, idp.key)
    )
    assert refused(idp).reason == "expired"
    # Within the clock-skew leeway it is still accepted.
    idp.token_factory = lambda c: idp.answer(
        sign({**c, "iat": now - 600, "exp": now - oidc.LEEWAY_SECONDS // 2}, idp.key)
    )
    assert run_flow(idp).subject == "user-42"


def test_token_from_the_future_is_refused(idp):
    later = int(clock.time()) + oidc.LEEWAY_SECONDS + 120
    idp.token_factory = lambda c: idp.answer(sign({**c, "iat": later, "exp": later + 300}, idp.key))
    assert refused(idp).reason == "not_yet_valid"
    idp.token_factory = lambda c: idp.answer(sign({**c, "nbf": later}, idp.key))
    assert refused(idp).reason == "not_yet_valid"


def test_missing_exp_or_sub_is_refused(idp):
    for missing in ("exp", "iat", "sub"):
        idp.token_factory = lambda c, m=missing: idp.answer(sign({**c, m: None}, idp.key))
        assert refused(idp).reason == "missing_claim", missing


def test_alg_none_is_refused_even_when_the_provider_announces_it(idp):
    idp.discovery["id_token_signing_alg_values_supported"] = ["RS256", "none"]
    idp.token_factory = lambda c: idp.answer(unsigned(c, kid=idp.key.kid))
    assert refused(idp).reason == "bad_algorithm"


def test_hmac_keyed_with_the_public_key_is_refused(idp):
    """The classic confusion: HS256 with the provider's public key as the secret."""
    idp.discovery["id_token_signing_alg_values_supported"] = ["RS256", "HS256"]
    public_pem = idp.key.as_pem(private=False)
    idp.token_factory = lambda c: idp.answer(hmac_signed(c, public_pem, kid=idp.key.kid))
    assert refused(idp).reason == "bad_algorithm"


def test_algorithm_the_provider_does_not_announce_is_refused(idp):
    other = ec_key("ec-1")
    idp.jwks = public_jwks(idp.key, other)
    idp.discovery["id_token_signing_alg_values_supported"] = ["RS256"]
    idp.token_factory = lambda c: idp.answer(sign(c, other, alg="ES256"))
    assert refused(idp).reason == "bad_algorithm"
    # Announced, the same token is fine: the refusal was the announcement.
    idp.discovery["id_token_signing_alg_values_supported"] = ["RS256", "ES256"]
    oidc.cache_clear()
    assert run_flow(idp).subject == "user-42"


def test_key_of_the_wrong_type_for_the_algorithm_is_refused(idp):
    """A header claiming ES256 with the kid of an RSA key finds no usable key."""
    idp.token_factory = lambda c: idp.answer(sign(c, ec_key(idp.key.kid), alg="ES256"))
    assert refused(idp).reason == "unknown_key"


def test_token_signed_by_an_unknown_key_is_refused_after_one_refetch(idp):
    stranger = rsa_key("stranger")
    idp.token_factory = lambda c: idp.answer(sign(c, stranger))
    assert refused(idp).reason == "unknown_key"
    assert idp.hits["/jwks"] == 2  # the cached set, then exactly one refetch


def test_forged_signature_with_a_known_kid_is_refused(idp):
    forger = rsa_key(idp.key.kid)  # same kid, another private key
    idp.token_factory = lambda c: idp.answer(sign(c, forger))
    assert refused(idp).reason == "bad_signature"


def test_tampered_payload_is_refused(idp):
    def tampered(claims):
        token = sign(claims, idp.key)
        head, _, signature = token.split(".")
        evil = sign({**claims, "sub": "admin"}, idp.key).split(".")[1]
        return idp.answer(f"{head}.{evil}.{signature}")

    idp.token_factory = tampered
    assert refused(idp).reason == "bad_signature"


def test_key_rotation_old_kid_gone_new_kid_picked_up(idp):
    config = oidc_config(idp)
    assert run_flow(idp, config).subject == "user-42"
    assert idp.hits["/jwks"] == 1

    # The provider rotates: the new key is published, the old one withdrawn.
    old, new = idp.key, rsa_key("crafted-2")
    idp.jwks = public_jwks(new)
    idp.key = new
    assert run_flow(idp, config).subject == "user-42"
    assert idp.hits["/jwks"] == 2  # one refetch for the unknown kid

    # A token still signed with the old key: its kid is gone after a refetch.
    idp.token_factory = lambda c: idp.answer(sign(c, old))
    with pytest.raises(SsoError) as caught:
        run_flow(idp, config)
    assert caught.value.reason == "unknown_key"
    assert idp.hits["/jwks"] == 3


def test_discovery_and_keys_are_cached_until_their_ttl(idp):
    config = oidc_config(idp)
    run_flow(idp, config)
    run_flow(idp, config)
    assert idp.hits["/.well-known/openid-configuration"] == 1
    assert idp.hits["/jwks"] == 1
    clock.advance(oidc.DISCOVERY_TTL_SECONDS + 1)
    # The flow started before the jump would be too old now: start a new one.
    run_flow(idp, config)
    assert idp.hits["/.well-known/openid-configuration"] == 2
    assert idp.hits["/jwks"] == 2


def test_at_hash_must_match_the_access_token(idp):
    idp.token_factory = lambda c: idp.answer(
        sign({**c, "at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}, idp.key)
    )
    assert refused(idp).reason == "bad_token"


def test_userinfo_about_another_person_is_refused(idp):
    idp.userinfo = {"sub": "someone-else", "email": "boss@acme.test", "email_verified": True}
    assert refused(idp).reason == "bad_subject"


def test_email_verified_comes_with_the_email_it_was_issued_for(idp):
    """The ID token has no e-mail; userinfo's address comes with userinfo's flag, and a
    string "true" is not JSON true."""
    idp.token_factory = lambda c: idp.answer(
        sign({**c, "email": None, "email_verified": True}, idp.key)
    )
    idp.userinfo = {"sub": "user-42", "email": "dana@acme.test", "email_verified": "true"}
    claims = run_flow(idp)
    assert (claims.email, claims.email_verified) == ("dana@acme.test", False)


def test_groups_from_a_configured_nested_claim(idp):
    idp.token_factory = lambda c: idp.answer(
        sign({**c, "realm_access": {"roles": ["admins", "ml"]}}, idp.key)
    )
    claims = run_flow(idp, oidc_config(idp, groups_claim="realm_access.roles"))
    assert claims.groups == ("admins", "ml")


def test_token_endpoint_http_failure_is_a_token_error(idp):
    idp.discovery["token_endpoint"] = f"{idp.issuer}/missing"
    error = refused(idp)
    assert error.reason == "token_error"


def test_a_flow_older_than_its_ttl_is_refused(idp):
    config = oidc_config(idp)
    url, kept = oidc.authorization_request(config, REDIRECT_URI)
    query = idp.authorize(url)
    clock.advance(oidc.FLOW_TTL_SECONDS + 1)
    with pytest.raises(SsoError) as caught:
        oidc.complete(config, REDIRECT_URI, query, kept)
    assert caught.value.reason == "bad_flow"


def test_kept_flow_of_another_provider_or_redirect_is_refused(idp):
    config = oidc_config(idp)
    url, kept = oidc.authorization_request(config, REDIRECT_URI)
    query = idp.authorize(url)
    with pytest.raises(SsoError) as caught:
        oidc.complete(config, "http://127.0.0.1:9/elsewhere", query, kept)
    assert caught.value.reason == "bad_flow"
    with pytest.raises(SsoError) as caught:
        oidc.complete(config, REDIRECT_URI, query, {**kept, "issuer": "http://127.0.0.1:1"})
    assert caught.value.reason == "bad_flow"


def test_mix_up_iss_parameter_is_refused(idp):
    config = oidc_config(idp)
    url, kept = oidc.authorization_request(config, REDIRECT_URI)
    query = {**idp.authorize(url), "iss": "http://127.0.0.1:1"}
    with pytest.raises(SsoError) as caught:
        oidc.complete(config, REDIRECT_URI, query, kept)
    assert caught.value.reason == "bad_issuer"
    # A provider that announces RFC 9207 must send it.
    idp.discovery["authorization_response_iss_parameter_supported"] = True
    oidc.cache_clear()
    url, kept = oidc.authorization_request(config, REDIRECT_URI)
    with pytest.raises(SsoError) as caught:
        oidc.complete(config, REDIRECT_URI, idp.authorize(url), kept)
    assert caught.value.reason == "bad_issuer"
