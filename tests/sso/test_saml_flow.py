"""SAML sign-in against a real pysaml2 IdP over HTTP: our AuthnRequest goes to the IdP
by the HTTP-Redirect binding, the IdP answers the HTTP-POST binding's form with a
signed response, the form is posted to our ACS address, and ``sso.saml.complete``
turns it into Claims. Metadata both ways, attribute mapping, the replay cache,
IdP-initiated responses."""

from __future__ import annotations

import base64
import logging
import zlib
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from defusedxml.ElementTree import fromstring
from django.conf import settings as django_settings
from saml2 import BINDING_HTTP_POST, samlp
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT

from sso import saml
from sso.claims import Claims
from sso.errors import SsoError
from tests.conftest import require_or_skip
from tests.sso.saml_idp import IDP_ENTITY_ID, SP_ENTITY_ID, FormParser, Person, encode

MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"


def browser_sign_in(sp, idp_config, servers, state="st-7f3a"):
    """What the browser does: follow our redirect to the IdP, receive its HTTP-POST
    form, post the form to our ACS. Answers (the posted fields, our request id)."""
    url, request_id = saml.authn_request(sp, idp_config, state)
    with httpx.Client(timeout=10) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        form = FormParser()
        form.feed(page.text)
        assert form.method == "post"
        assert form.action == sp.acs_url
        posted = browser.post(form.action, data=form.fields)
        assert posted.status_code == 204
    fields = servers.acs.posts[-1]
    assert servers.acs.content_types[-1] == "application/x-www-form-urlencoded"
    assert fields == form.fields
    return fields, request_id


# --- the whole flow ----------------------------------------------------------------------------


def test_a_person_signs_in_through_the_idp(db, sp, idp, idp_config, servers):
    fields, request_id = browser_sign_in(sp, idp_config, servers, state="st-7f3a")
    assert fields["RelayState"] == "st-7f3a"

    claims = saml.complete(sp, idp_config, fields["SAMLResponse"], request_id)

    assert isinstance(claims, Claims)
    assert claims.provider_kind == "saml"
    assert claims.subject == "ada@acme.example.com"
    assert claims.email == "ada@acme.example.com"
    assert claims.email_verified is False  # the IdP config does not vouch for its e-mails
    assert claims.name == "Ada Lovelace"
    assert claims.groups == ("engineering", "admins")
    assert claims.raw["issuer"] == IDP_ENTITY_ID
    assert claims.raw["name_id_format"].endswith(":emailAddress")
    assert claims.raw["attributes"]["mail"] == ["ada@acme.example.com"]
    assert claims.raw["attributes"]["urn:oid:0.9.2342.19200300.100.1.3"] == ["ada@acme.example.com"]
    # The audit trail keeps what was asserted, never the signature or the message.
    assert "Signature" not in repr(claims.raw)
    assert fields["SAMLResponse"][:40] not in repr(claims.raw)


def test_our_authn_request_is_what_the_idp_needs(sp, idp, idp_config, servers):
    url, request_id = saml.authn_request(sp, idp_config, "relay")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == idp_config.sso_url
    query = parse_qs(parts.query)
    assert query["RelayState"] == ["relay"]
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15).decode()
    request = samlp.authn_request_from_string(xml)
    assert request.id == request_id
    assert request.destination == idp_config.sso_url
    assert request.assertion_consumer_service_url == sp.acs_url
    assert request.protocol_binding == BINDING_HTTP_POST
    assert request.issuer.text == SP_ENTITY_ID
    assert request.signature is None  # we hold no SP key: requests are not signed
    # Fresh ids: a response to one sign-in cannot answer another.
    assert saml.authn_request(sp, idp_config, "relay")[1] != request_id

    # The IdP (pysaml2) accepts the request: it knows our SP from our metadata.
    servers.idp.requests.clear()
    with httpx.Client(timeout=10) as browser:
        assert browser.get(url).status_code == 200
    assert len(servers.idp.requests) == 1


def test_relay_state_longer_than_the_binding_allows_is_refused(sp, idp_config):
    with pytest.raises(SsoError) as refused:
        saml.authn_request(sp, idp_config, "x" * 81)
    assert refused.value.reason == "bad_request"


# --- metadata both ways ------------------------------------------------------------------------


def test_our_sp_metadata(sp):
    xml = saml.sp_metadata(sp)
    root = fromstring(xml.encode())
    assert root.tag == MD + "EntityDescriptor"
    assert root.get("entityID") == SP_ENTITY_ID
    (descriptor,) = root.findall(MD + "SPSSODescriptor")
    assert descriptor.get("WantAssertionsSigned") == "true"
    assert descriptor.get("AuthnRequestsSigned") == "false"
    (acs,) = descriptor.findall(MD + "AssertionConsumerService")
    assert acs.get("Location") == sp.acs_url
    assert acs.get("Binding") == BINDING_HTTP_POST
    algorithms = {el.get("Algorithm") for el in root.iter() if el.get("Algorithm")}
    assert algorithms == saml.SIGNATURE_ALGORITHMS | saml.DIGEST_ALGORITHMS
    assert not any("sha1" in a or "md5" in a for a in algorithms)


def test_idp_metadata_gives_entity_sso_url_and_certificate(idp):
    config = saml.parse_idp_metadata(idp.metadata())
    assert config.entity_id == IDP_ENTITY_ID
    assert config.sso_url == idp.sso_url
    assert len(config.signing_certs) == 1
    assert config.signing_certs[0].split() == idp.cert_pem.decode().split()
    assert config.emails_verified is False and config.allow_idp_initiated is False


# --- what the claims say -----------------------------------------------------------------------


def test_email_verified_only_when_the_idp_config_says_so(db, sp, idp, idp_config):
    request = saml.authn_request(sp, idp_config, "s")[1]
    response = idp.response(in_response_to=request, destination=sp.acs_url, audience=SP_ENTITY_ID)
    vouched = replace(idp_config, emails_verified=True)
    assert saml.complete(sp, vouched, response, request).email_verified is True


def test_groups_come_from_the_configured_attribute(db, sp, idp, idp_config):
    idp.person = Person(
        attributes={"mail": ["ada@acme.example.com"], "memberOf": ["ml", "ops", "ml"]}
    )
    for groups_attribute, expected in (("memberOf", ("ml", "ops")), ("", ()), ("groups", ())):
        request = saml.authn_request(sp, idp_config, "s")[1]
        response = idp.response(
            in_response_to=request, destination=sp.acs_url, audience=SP_ENTITY_ID
        )
        config = replace(idp_config, groups_attribute=groups_attribute)
        assert saml.complete(sp, config, response, request).groups == expected


def test_persistent_name_id_is_the_subject_and_mail_the_email(db, sp, idp, idp_config):
    idp.person = Person(
        name_id="b6f0c2d1-77aa",
        name_id_format=NAMEID_FORMAT_PERSISTENT,
        attributes={"mail": ["grace@acme.example.com"], "givenName": ["Grace"], "sn": ["Hopper"]},
    )
    request = saml.authn_request(sp, idp_config, "s")[1]
    response = idp.response(in_response_to=request, destination=sp.acs_url, audience=SP_ENTITY_ID)
    claims = saml.complete(sp, idp_config, response, request)
    assert claims.subject == "b6f0c2d1-77aa"
    assert claims.email == "grace@acme.example.com"
    assert claims.name == "Grace Hopper"


def test_a_configured_email_attribute_wins_over_the_name_id(db, sp, idp, idp_config):
    idp.person = Person(
        attributes={"mail": ["other@acme.example.com"], "corpMail": ["ada@corp.example.com"]}
    )
    request = saml.authn_request(sp, idp_config, "s")[1]
    response = idp.response(in_response_to=request, destination=sp.acs_url, audience=SP_ENTITY_ID)
    config = replace(idp_config, email_attribute="corpMail")
    assert saml.complete(sp, config, response, request).email == "ada@corp.example.com"


def test_a_transient_name_id_is_no_subject_unless_an_attribute_is_configured(
    db, sp, idp, idp_config
):
    idp.person = Person(
        name_id="_4f1b2c",
        name_id_format=NAMEID_FORMAT_TRANSIENT,
        attributes={"mail": ["ada@acme.example.com"], "uid": ["ada"]},
    )
    request = saml.authn_request(sp, idp_config, "s")[1]
    response = idp.response(in_response_to=request, destination=sp.acs_url, audience=SP_ENTITY_ID)
    with pytest.raises(SsoError) as refused:
        saml.complete(sp, idp_config, response, request)
    assert refused.value.reason == "bad_subject"

    request = saml.authn_request(sp, idp_config, "s")[1]
    response = idp.response(in_response_to=request, destination=sp.acs_url, audience=SP_ENTITY_ID)
    claims = saml.complete(sp, replace(idp_config, subject_attribute="uid"), response, request)
    assert claims.subject == "ada"


def test_no_email_is_refused(db, sp, idp, idp_config):
    idp.person = Person(
        name_id="b6f0c2d1", name_id_format=NAMEID_FORMAT_PERSISTENT, attributes={"cn": ["Ada"]}
    )
    request = saml.authn_request(sp, idp_config, "s")[1]
    response = idp.response(in_response_to=request, destination=sp.acs_url, audience=SP_ENTITY_ID)
    with pytest.raises(SsoError) as refused:
        saml.complete(sp, idp_config, response, request)
    assert refused.value.reason == "no_email"


def test_an_idp_error_status_is_refused(db, sp, idp, idp_config):
    request = saml.authn_request(sp, idp_config, "s")[1]
    error = idp.server.create_error_response(
        request, sp.acs_url, (samlp.STATUS_AUTHN_FAILED, "wrong password"), sign=True
    )
    with pytest.raises(SsoError) as refused:
        saml.complete(sp, idp_config, encode(str(error)), request)
    assert refused.value.reason == "idp_error"


# --- replay, IdP-initiated ---------------------------------------------------------------------


@pytest.fixture(params=["database", "redis"])
def replay_store(request, settings):
    """The replay cache on each shared store (Redis when REDIS_URL is set)."""
    if request.param == "redis":
        if not django_settings.REDIS_URL:
            require_or_skip("REDIS_URL is not set: no Redis replay cache to test")
    else:
        settings.REDIS_URL = ""
    return request.param


def test_a_response_is_accepted_once(db, replay_store, sp, idp, idp_config, servers, clock_shift):
    fields, request_id = browser_sign_in(sp, idp_config, servers)
    assert saml.complete(sp, idp_config, fields["SAMLResponse"], request_id).email
    for shift in (0, 150):  # at once, and minutes later while the assertion is still valid
        clock_shift(shift)
        with pytest.raises(SsoError) as refused:
            saml.complete(sp, idp_config, fields["SAMLResponse"], request_id)
        assert refused.value.reason == "replayed"
    # A fresh sign-in still works.
    fields, request_id = browser_sign_in(sp, idp_config, servers)
    assert saml.complete(sp, idp_config, fields["SAMLResponse"], request_id).email


def test_a_refused_response_does_not_use_up_its_assertion(db, sp, idp, idp_config):
    request = saml.authn_request(sp, idp_config, "s")[1]
    response = idp.response(in_response_to=request, destination=sp.acs_url, audience=SP_ENTITY_ID)
    with pytest.raises(SsoError):
        saml.complete(sp, idp_config, response, "id-another-request")
    assert saml.complete(sp, idp_config, response, request).email == "ada@acme.example.com"


def test_idp_initiated_is_refused_unless_allowed(db, sp, idp, idp_config):
    response = idp.response(in_response_to=None, destination=sp.acs_url, audience=SP_ENTITY_ID)
    with pytest.raises(SsoError) as refused:
        saml.complete(sp, idp_config, response, None)
    assert refused.value.reason == "unsolicited"

    allowed = replace(idp_config, allow_idp_initiated=True)
    assert saml.complete(sp, allowed, response, None).email == "ada@acme.example.com"

    # Even then, a response to some request we did not make for this browser is refused.
    solicited = idp.response(
        in_response_to="id-someone-elses", destination=sp.acs_url, audience=SP_ENTITY_ID
    )
    with pytest.raises(SsoError) as refused:
        saml.complete(sp, allowed, solicited, None)
    assert refused.value.reason == "bad_in_response_to"


def test_nothing_of_the_response_reaches_the_logs(db, sp, idp, idp_config, caplog):
    caplog.set_level(logging.DEBUG)
    request = saml.authn_request(sp, idp_config, "s")[1]
    good = idp.response(in_response_to=request, destination=sp.acs_url, audience=SP_ENTITY_ID)
    saml.complete(sp, idp_config, good, request)
    tampered = encode(
        idp.response_xml(
            in_response_to=request, destination=sp.acs_url, audience=SP_ENTITY_ID
        ).replace("Ada Lovelace", "Eve")
    )
    for response in (good, tampered):
        with pytest.raises(SsoError):
            saml.complete(sp, idp_config, response, request)
    text = caplog.text
    assert "acme.example.com" not in text
    assert "Lovelace" not in text and good[:60] not in text
