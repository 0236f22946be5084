"""SSO fixtures: identity providers made through the services (as an Owner would),
a verified domain, ``Claims`` as the protocol modules return them, and the SAML
protocol tests' IdP and ACS over HTTP on 127.0.0.1 (``saml_idp``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from inferia import clock
from orgs.access import access_for_user
from orgs.scoping import org_scope
from sso import saml, services
from sso.claims import Claims
from sso.models import DomainStatus
from tests.conftest import require_or_skip
from tests.gateway.conftest import (  # noqa: F401 - the live server's fixtures (test_sso_e2e)
    _fresh_gateway_state,
    _usage_stream_per_worker,
    fake_upstream,
    gateway_server,
    llm,
)
from tests.sso.saml_idp import (
    IDP_ENTITY_ID,
    SP_ENTITY_ID,
    AcsHttpServer,
    IdpHttpServer,
    TestIdp,
)


def owner_access(org, user):
    access = access_for_user(org, user)
    assert access is not None
    return access


def make_oidc(cast, name="okta", org=None, owner=None, **fields):
    org = org or cast.acme
    with org_scope(org):
        return services.identity_provider_create(
            access=owner_access(org, owner or cast.alice),
            name=name,
            kind="oidc",
            issuer=fields.pop("issuer", "https://idp.example.com"),
            client_id="inferia",
            client_secret="client-secret-plaintext-123",
            **fields,
        )


def verify_domain(cast, domain="acme.example.com", org=None, owner=None):
    org = org or cast.acme
    access = owner_access(org, owner or cast.alice)
    with org_scope(org):
        claimed = services.domain_claim(access=access, domain=domain)
        return services.domain_confirm(access=access, domain=claimed, challenge=claimed.challenge)


def self_signed_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example.com")])
    now = clock.now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now.replace(year=now.year + 1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


BASE_CLAIMS = Claims(
    provider_kind="oidc",
    subject="sub-1",
    email="erin@acme.example.com",
    email_verified=True,
    name="Erin",
    groups=(),
    raw={"sub": "sub-1"},
)


def claims(**changes) -> Claims:
    return replace(BASE_CLAIMS, **changes)


@pytest.fixture(autouse=True)
def _public_example_host(monkeypatch):
    # idp.example.com has no address here: give it a public one (the SSRF rule then
    # passes), and keep 127.0.0.1 for the private case.
    from keys import ssrf

    real = ssrf.resolve_host
    monkeypatch.setattr(
        ssrf,
        "resolve_host",
        lambda host, port: ["93.184.216.34"] if host.endswith("example.com") else real(host, port),
    )


@pytest.fixture
def oidc(cast):
    return make_oidc(cast)


@pytest.fixture
def domain(cast):
    verified = verify_domain(cast)
    assert verified.status == DomainStatus.VERIFIED
    return verified


# --- the SAML protocol tests: the IdP and our ACS over HTTP on 127.0.0.1 ----------------


@pytest.fixture
def xmlsec1() -> str:
    """Debian's xmlsec1 (signs at the test IdP, verifies in sso.saml)."""
    path = saml.xmlsec1_path()
    if not path:
        require_or_skip("xmlsec1 is not installed (Debian package xmlsec1)")
    assert path
    return path


@dataclass
class Servers:
    idp: IdpHttpServer
    acs: AcsHttpServer


@pytest.fixture(scope="module")
def servers():
    idp, acs = IdpHttpServer(), AcsHttpServer()
    try:
        yield Servers(idp=idp, acs=acs)
    finally:
        idp.close()
        acs.close()


@pytest.fixture
def sp(servers) -> saml.SpConfig:
    return saml.SpConfig(entity_id=SP_ENTITY_ID, acs_url=servers.acs.acs_url)


@pytest.fixture
def idp(xmlsec1, servers, sp) -> TestIdp:
    """The IdP, serving at servers.idp; it trusts our SP through our metadata."""
    test_idp = TestIdp(
        entity_id=IDP_ENTITY_ID, sso_url=servers.idp.sso_url, sp_metadata_xml=saml.sp_metadata(sp)
    )
    servers.idp.idp = test_idp
    servers.acs.posts.clear()
    return test_idp


@pytest.fixture
def idp_config(idp) -> saml.IdpConfig:
    """The IdP as configured from its metadata XML."""
    return saml.parse_idp_metadata(idp.metadata())
