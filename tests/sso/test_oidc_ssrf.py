"""Every outbound call of the OIDC module (discovery, JWKS, token, userinfo) is held to
the SSRF rule of keys/ssrf.py, with the org's ``allowed_private_hosts``, over real
HTTP on 127.0.0.1 (``CraftedProvider``): a private issuer not listed is refused
before any request reaches it; endpoints a discovery document points elsewhere are
refused when used; the operator's cap, redirects and the size cap apply too."""

from __future__ import annotations

import json

import httpx
import pytest

from keys.ssrf_http import AddressRefused, guarded_client
from sso import oidc
from sso.errors import SsoError
from tests.sso.oidc_support import CraftedProvider, oidc_config, rsa_key

REDIRECT_URI = "http://127.0.0.1:9/callback"


@pytest.fixture
def idp():
    oidc.cache_clear()
    provider = CraftedProvider(rsa_key("ssrf-1")).start()
    yield provider
    provider.stop()
    oidc.cache_clear()


def config_for(idp, allowed):
    return oidc_config(idp, allowed_private_hosts=tuple(allowed))


def refusal(call) -> SsoError:
    with pytest.raises(SsoError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize(
    "allowed",
    [(), ("127.0.0.1:1",), ("localhost",), ("10.0.0.1",)],
    ids=["nothing", "another-port", "another-name", "another-address"],
)
def test_private_issuer_not_listed_is_refused_without_a_request(idp, allowed):
    error = refusal(lambda: oidc.discover(config_for(idp, allowed)))
    assert error.reason == "address_refused"
    assert sum(idp.hits.values()) == 0
    # Listed, the same provider is reached: the refusal was the list.
    assert oidc.discover(config_for(idp, [f"127.0.0.1:{idp.port}"])).issuer == idp.issuer


def test_listed_host_refused_when_the_operator_cap_does_not_cover_it(idp, settings):
    settings.INFERIA_PRIVATE_HOSTS_ALLOWED = ["vllm.internal"]
    error = refusal(lambda: oidc.discover(config_for(idp, [f"127.0.0.1:{idp.port}"])))
    assert error.reason == "address_refused"
    assert sum(idp.hits.values()) == 0


def test_https_endpoint_on_an_unlisted_private_name_is_refused_when_used(idp):
    """Discovery passes (the issuer is listed); its token endpoint points at
    ``localhost`` (the same machine, not listed): the connection is refused."""
    idp.discovery["token_endpoint"] = f"https://localhost:{idp.port}/token"
    config = config_for(idp, [f"127.0.0.1:{idp.port}"])
    url, kept = oidc.authorization_request(config, REDIRECT_URI)
    query = idp.authorize(url)
    error = refusal(lambda: oidc.complete(config, REDIRECT_URI, query, kept))
    assert error.reason == "address_refused"
    assert idp.hits["/token"] == 0


@pytest.mark.parametrize(
    ("name", "url", "reason"),
    [
        ("jwks_uri", "http://localhost:{port}/jwks", "address_refused"),
        ("token_endpoint", "http://example.com/token", "address_refused"),
        ("authorization_endpoint", "javascript:alert(1)", "bad_response"),
        ("userinfo_endpoint", "file:///etc/passwd", "bad_response"),
    ],
)
def test_discovery_pointing_to_unusable_urls_is_refused(idp, name, url, reason):
    idp.discovery[name] = url.format(port=idp.port)
    error = refusal(lambda: oidc.discover(config_for(idp, [f"127.0.0.1:{idp.port}"])))
    assert error.reason == reason


def test_metadata_addresses_are_never_reached_even_when_listed():
    with guarded_client(allowed_private_hosts=["169.254.169.254"]) as client:
        with pytest.raises(AddressRefused):
            client.get("http://169.254.169.254/latest/meta-data/")


def test_redirects_are_not_followed(idp):
    idp.raw_routes["/.well-known/openid-configuration"] = (
        302,
        {"Location": "http://169.254.169.254/", "Content-Length": "0"},
        b"",
    )
    error = refusal(lambda: oidc.discover(config_for(idp, [f"127.0.0.1:{idp.port}"])))
    assert error.reason == "fetch_failed"


def test_oversized_answers_are_cut_off(idp):
    huge = json.dumps({"keys": [{"kty": "RSA", "n": "A" * oidc.MAX_RESPONSE_BYTES}]}).encode()
    # Without a Content-Length: the cap applies while reading, not only to the header.
    idp.raw_routes["/jwks"] = (200, {"Content-Type": "application/json"}, huge)
    config = config_for(idp, [f"127.0.0.1:{idp.port}"])
    url, kept = oidc.authorization_request(config, REDIRECT_URI)
    error = refusal(lambda: oidc.complete(config, REDIRECT_URI, idp.authorize(url), kept))
    assert error.reason == "fetch_failed"
    assert "too large" in error.message


def test_compressed_answers_are_refused(idp):
    import gzip

    body = gzip.compress(json.dumps(idp.document()).encode())
    idp.raw_routes["/.well-known/openid-configuration"] = (
        200,
        {"Content-Encoding": "gzip", "Content-Length": str(len(body))},
        body,
    )
    error = refusal(lambda: oidc.discover(config_for(idp, [f"127.0.0.1:{idp.port}"])))
    assert error.reason == "fetch_failed"


def test_proxy_variables_do_not_steer_the_client(idp, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:1")
    assert oidc.discover(config_for(idp, [f"127.0.0.1:{idp.port}"])).issuer == idp.issuer


def test_guarded_client_is_an_httpx_client_with_its_rule():
    client = guarded_client(allowed_private_hosts=[])
    try:
        assert isinstance(client, httpx.Client)
        with pytest.raises(AddressRefused):
            client.get("http://127.0.0.1:1/")
    finally:
        client.close()
