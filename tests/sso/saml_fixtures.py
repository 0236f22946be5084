"""Fixtures of the SAML tests (imported by ``test_saml_*.py``): the IdP and our ACS
over HTTP on 127.0.0.1, our SP's config, the IdP and its config as an org admin
would enter it (from the IdP's metadata)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sso import saml
from tests.conftest import require_or_skip
from tests.sso.saml_idp import AcsHttpServer, IdpHttpServer, TestIdp

SP_ENTITY_ID = "https://inferia.example.com/sso/acme/saml/metadata"
IDP_ENTITY_ID = "https://idp.example.com/saml2/idp"


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
