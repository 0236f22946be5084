"""SAML 2.0 Web Browser SSO, the service provider's side (issue 13).

Four functions, all raising :class:`sso.errors.SsoError` with a stable ``reason``:
:func:`sp_metadata` (our SP's metadata for the IdP admin), :func:`parse_idp_metadata`
(an IdP's metadata XML to an :class:`IdpConfig`), :func:`authn_request` (the
HTTP-Redirect URL that starts a sign-in, and its request id) and :func:`complete`
(the HTTP-POST ``SAMLResponse`` to verified :class:`sso.claims.Claims`).

Library: pysaml2 (IdentityPython; maintained, used by SATOSA and djangosaml2), with
Debian's ``xmlsec1`` binary for XML signatures. python3-saml (OneLogin) was the other
candidate; it needs the ``xmlsec`` C binding (built against libxmlsec1 at install
time) and its last release is older. pysaml2 provides, and this module uses: the
SAML object model (parsed through defusedxml), the metadata store, the signature
check (``SecurityContext.check_signature``: keys from the configured metadata only,
never a certificate carried in the message; schema validation of the signed
element; SAML's XML-signature profile: one Reference whose URI is the enclosing
element's ID, only the enveloped and exclusive-c14n transforms, no ``ds:Object``;
``xmlsec1 --enabled-key-data raw-x509-cert --id-attr:ID ... --node-id``), and the
HTTP-Redirect binding encoder.

pysaml2's own response pipeline (``AuthnResponse``) is not used: it treats a missing
AudienceRestriction, a missing Destination and a missing SubjectConfirmation
NotOnOrAfter as valid, accepts the SP entity id as a Recipient, and reports most
failures as bare ``Exception`` or ``None``. The Web SSO profile's rules are applied
below instead, strictly and each with its own reason, on the objects whose
signature pysaml2 verified:

- a ``<!DOCTYPE>`` (so any entity) is refused before anything parses the message;
- exactly one ``Response`` root and one ``Assertion`` (its child; encrypted
  assertions are not supported), no two elements with the same ID, signatures only
  on those two: XML signature wrapping has nowhere to hide a second assertion;
- the Response or the Assertion (or both) must be signed, and every signature
  present must verify against one of the IdP's configured certificates, with
  RSA/ECDSA over SHA-256 or stronger (SHA-1 and MD5 are refused);
- Issuer (Response, when present, and Assertion) is the configured IdP;
- Destination, when present, and required when the Response is signed, is our ACS
  URL; a bearer SubjectConfirmation has Recipient = our ACS URL, a NotOnOrAfter in
  the future and InResponseTo = our request id;
- Conditions with an AudienceRestriction naming our SP entity id, NotBefore /
  NotOnOrAfter; every time check allows ``SpConfig.clock_skew_seconds`` of skew;
- IdP-initiated (unsolicited) responses are refused unless
  ``IdpConfig.allow_idp_initiated``; then the response must carry no InResponseTo;
- each assertion ID is accepted once: a replay cache in :func:`inferia.store.once`
  (Redis or the database, shared by every process) holds it until the assertion
  expires.

Claims are read from the signed assertion only, never from the unsigned envelope.
SAML says nothing about e-mail verification: ``email_verified`` is the IdP config's
``emails_verified`` (the org states that this IdP only asserts addresses it
verified). The XML is handed to ``xmlsec1`` through a temporary file that pysaml2
deletes after the call; nothing of the message is logged.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hmac
import logging
import math
import re
import shutil
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element  # noqa: S405 - type only; parsing is defusedxml's

from cryptography import x509
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import fromstring as safe_fromstring
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, md, saml, samlp
from saml2 import xmldsig as ds
from saml2.attribute_converter import ac_factory
from saml2.config import Config
from saml2.extension import algsupport
from saml2.mdstore import InMemoryMetaData
from saml2.pack import http_redirect_message
from saml2.s_utils import sid
from saml2.sigver import security_context
from saml2.time_util import instant, str_to_time

from inferia import clock, store
from sso.claims import Claims
from sso.errors import SsoError

logger = logging.getLogger(__name__)

NS_PROTOCOL = samlp.NAMESPACE
NS_ASSERTION = saml.NAMESPACE
NS_DSIG = ds.NAMESPACE
RESPONSE_TAG = f"{{{NS_PROTOCOL}}}Response"
ASSERTION_TAG = f"{{{NS_ASSERTION}}}Assertion"
ENCRYPTED_ASSERTION_TAG = f"{{{NS_ASSERTION}}}EncryptedAssertion"
SIGNATURE_TAG = f"{{{NS_DSIG}}}Signature"

MAX_RESPONSE_BYTES = 256 * 1024  # decoded; a real response is a few kilobytes
MAX_METADATA_BYTES = 1024 * 1024
MAX_RELAY_STATE_BYTES = 80  # SAML bindings 3.4.3

SIGNATURE_ALGORITHMS = frozenset(
    {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
    }
)
DIGEST_ALGORITHMS = frozenset(
    {
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
        "http://www.w3.org/2001/04/xmlenc#sha512",
    }
)

NAMEID_EMAIL = saml.NAMEID_FORMAT_EMAILADDRESS
NAMEID_PERSISTENT = saml.NAMEID_FORMAT_PERSISTENT
NAMEID_TRANSIENT = saml.NAMEID_FORMAT_TRANSIENT

# Attribute names (Name or FriendlyName) looked at when the IdP config names none.
EMAIL_ATTRIBUTES = (
    "mail",
    "email",
    "emailAddress",
    "urn:oid:0.9.2342.19200300.100.1.3",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
)
NAME_ATTRIBUTES = (
    "displayName",
    "urn:oid:2.16.840.1.113730.3.1.241",
    "http://schemas.microsoft.com/identity/claims/displayname",
    "cn",
    "urn:oid:2.5.4.3",
    "name",
)
GIVEN_NAME_ATTRIBUTES = ("givenName", "urn:oid:2.5.4.42")
SURNAME_ATTRIBUTES = ("sn", "surname", "urn:oid:2.5.4.4")


@dataclass(frozen=True)
class SpConfig:
    """Our service provider, as one org's IdP sees it."""

    entity_id: str
    acs_url: str  # the HTTP-POST AssertionConsumerService
    clock_skew_seconds: int = 60  # allowed on every time check


@dataclass(frozen=True)
class IdpConfig:
    """One identity provider. ``parse_idp_metadata`` fills the first three; the
    others come from the org's provider settings (``dataclasses.replace``)."""

    entity_id: str
    sso_url: str  # its SingleSignOnService for the HTTP-Redirect binding
    signing_certs: tuple[str, ...]  # X.509, PEM or bare base64 DER
    emails_verified: bool = False  # the org states this IdP asserts verified addresses only
    allow_idp_initiated: bool = False  # accept unsolicited responses (no request id)
    email_attribute: str = ""  # "" = NameID (emailAddress format), then EMAIL_ATTRIBUTES
    name_attribute: str = ""  # "" = NAME_ATTRIBUTES, then given name + surname
    groups_attribute: str = "groups"  # "" = no groups
    subject_attribute: str = ""  # "" = the NameID (refused when transient)


# --- configuration --------------------------------------------------------------------------


def xmlsec1_path() -> str | None:
    """Where Debian's ``xmlsec1`` is (None when missing: responses cannot be verified)."""
    return shutil.which("xmlsec1")


def _cert_body(cert: str) -> str:
    """The base64 DER of a PEM or bare base64 certificate (SsoError when not X.509)."""
    body = re.sub(r"-----(BEGIN|END) CERTIFICATE-----|\s", "", cert)
    try:
        x509.load_der_x509_certificate(base64.b64decode(body, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise SsoError(
            "bad_config", "A signing certificate of the identity provider is not X.509."
        ) from exc
    return body


def _cert_bodies(certs: Iterable[str]) -> tuple[str, ...]:
    bodies = tuple(dict.fromkeys(_cert_body(cert) for cert in certs if cert.strip()))
    if not bodies:
        raise SsoError("bad_config", "The identity provider has no signing certificate.")
    return bodies


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SsoError("bad_config", f"The {what} is not an http(s) URL.")


def _idp_metadata_xml(idp: IdpConfig) -> str:
    """The IdP as pysaml2's metadata store knows it: its entity id and certificates."""
    keys = [
        md.KeyDescriptor(
            use="signing",
            key_info=ds.KeyInfo(
                x509_data=[ds.X509Data(x509_certificate=ds.X509Certificate(text=body))]
            ),
        )
        for body in _cert_bodies(idp.signing_certs)
    ]
    descriptor = md.IDPSSODescriptor(
        protocol_support_enumeration=NS_PROTOCOL,
        key_descriptor=keys,
        single_sign_on_service=[
            md.SingleSignOnService(binding=BINDING_HTTP_REDIRECT, location=idp.sso_url)
        ],
    )
    return str(md.EntityDescriptor(entity_id=idp.entity_id, idpsso_descriptor=[descriptor]))


def _security_context(sp: SpConfig, idp: IdpConfig) -> Any:
    """pysaml2's signature checker, trusting exactly the IdP's configured certificates."""
    xmlsec = xmlsec1_path()
    if not xmlsec:
        logger.error("SAML: xmlsec1 is not installed; responses cannot be verified")
        raise SsoError("unavailable", "SAML sign-in is not available on this server.")
    config = Config()
    config.load(
        {
            "entityid": sp.entity_id,
            "xmlsec_binary": xmlsec,
            "metadata": {"inline": [_idp_metadata_xml(idp)]},
            "only_use_keys_in_metadata": True,
            "delete_tmpfiles": True,
        }
    )
    return security_context(config)


# --- SP metadata and the request ------------------------------------------------------------


def sp_metadata(sp: SpConfig) -> str:
    """Our SP's metadata XML (entity id, HTTP-POST ACS, wanted NameID formats and the
    signature algorithms we accept), for the IdP's administrator. Unsigned: we hold
    no SP key (requests are not signed, assertions are not encrypted)."""
    _check_url(sp.acs_url, "assertion consumer service URL")
    extensions = md.Extensions()
    for algorithm in sorted(DIGEST_ALGORITHMS):
        extensions.add_extension_element(algsupport.DigestMethod(algorithm=algorithm))
    for algorithm in sorted(SIGNATURE_ALGORITHMS):
        extensions.add_extension_element(algsupport.SigningMethod(algorithm=algorithm))
    descriptor = md.SPSSODescriptor(
        protocol_support_enumeration=NS_PROTOCOL,
        authn_requests_signed="false",
        want_assertions_signed="true",
        name_id_format=[
            md.NameIDFormat(text=NAMEID_EMAIL),
            md.NameIDFormat(text=NAMEID_PERSISTENT),
        ],
        assertion_consumer_service=[
            md.AssertionConsumerService(
                binding=BINDING_HTTP_POST, location=sp.acs_url, index="0", is_default="true"
            )
        ],
    )
    entity = md.EntityDescriptor(
        entity_id=sp.entity_id, extensions=extensions, spsso_descriptor=[descriptor]
    )
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + str(entity)


def authn_request(sp: SpConfig, idp: IdpConfig, relay_state: str) -> tuple[str, str]:
    """The URL that sends the browser to the IdP with an AuthnRequest (HTTP-Redirect
    binding, unsigned) asking for an HTTP-POST response at our ACS, and the request
    id to keep server-side until :func:`complete`."""
    _check_url(idp.sso_url, "identity provider's sign-in URL")
    _check_url(sp.acs_url, "assertion consumer service URL")
    if len(relay_state.encode()) > MAX_RELAY_STATE_BYTES:
        raise SsoError("bad_request", "The SAML RelayState is longer than 80 bytes.")
    request_id = sid()
    request = samlp.AuthnRequest(
        id=request_id,
        version="2.0",
        issue_instant=instant(),
        destination=idp.sso_url,
        protocol_binding=BINDING_HTTP_POST,
        assertion_consumer_service_url=sp.acs_url,
        issuer=saml.Issuer(text=sp.entity_id, format=saml.NAMEID_FORMAT_ENTITY),
        name_id_policy=samlp.NameIDPolicy(allow_create="true"),
    )
    info = http_redirect_message(
        str(request), idp.sso_url, relay_state=relay_state, typ="SAMLRequest"
    )
    return dict(info["headers"])["Location"], request_id


# --- IdP metadata ---------------------------------------------------------------------------


def _safe_parse(xml: str | bytes, what: str, reason: str) -> Element:
    """defusedxml with every DTD refused: no entity of any kind is ever expanded."""
    try:
        return safe_fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ParseError, ValueError) as exc:
        raise SsoError(reason, f"The {what} is not well-formed XML without a DTD.") from exc


def parse_idp_metadata(xml: str) -> IdpConfig:
    """The one IdP described by a metadata document (an EntityDescriptor, or an
    EntitiesDescriptor holding exactly one IdP): its entity id, its SingleSignOnService
    for HTTP-Redirect and its signing certificates. SsoError("bad_metadata") otherwise,
    and for a DTD, entities, an expired validUntil or a certificate that is not X.509."""
    if len(xml.encode()) > MAX_METADATA_BYTES:
        raise SsoError("bad_metadata", "The SAML metadata is larger than 1 MiB.")
    root = _safe_parse(xml, "SAML metadata", "bad_metadata")
    if root.tag not in (
        f"{{{md.NAMESPACE}}}EntityDescriptor",
        f"{{{md.NAMESPACE}}}EntitiesDescriptor",
    ):
        raise SsoError("bad_metadata", "The document is not SAML 2.0 metadata.")
    store_ = InMemoryMetaData(ac_factory(), xml)
    try:
        store_.load()
    except Exception as exc:  # noqa: BLE001 - pysaml2 raises many types for bad metadata
        raise SsoError(
            "bad_metadata", "The SAML metadata could not be read (or has expired)."
        ) from exc
    idps = [entity_id for entity_id, entity in store_.items() if entity.get("idpsso_descriptor")]
    if len(idps) != 1:
        raise SsoError(
            "bad_metadata",
            f"The SAML metadata must describe exactly one identity provider ({len(idps)} found).",
        )
    entity_id = idps[0]
    services = store_.service(
        entity_id, "idpsso_descriptor", "single_sign_on_service", BINDING_HTTP_REDIRECT
    )
    if not services:
        raise SsoError(
            "bad_metadata", "The identity provider has no SingleSignOnService for HTTP-Redirect."
        )
    sso_url = services[0]["location"]
    _check_url(sso_url, "identity provider's sign-in URL")
    certs = tuple(cert for _name, cert in store_.certs(entity_id, "idpsso", "signing"))
    try:
        bodies = _cert_bodies(certs)
    except SsoError as exc:
        raise SsoError("bad_metadata", exc.message) from exc
    pem = tuple(
        "-----BEGIN CERTIFICATE-----\n"
        + "\n".join(textwrap.wrap(body, 64))
        + "\n-----END CERTIFICATE-----\n"
        for body in bodies
    )
    return IdpConfig(entity_id=entity_id, sso_url=sso_url, signing_certs=pem)


# --- the response ---------------------------------------------------------------------------


def _decode(saml_response_b64: str) -> bytes:
    if len(saml_response_b64) > MAX_RESPONSE_BYTES * 4 // 3 + 4:
        raise SsoError("malformed", "The SAML response is too large.")
    try:
        return base64.b64decode("".join(saml_response_b64.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SsoError("malformed", "The SAML response is not base64.") from exc


def _check_structure(root: Element) -> Element:
    """One Response with one Assertion, unique IDs, signatures only where SAML puts
    them. Returns the Assertion element."""
    if root.tag != RESPONSE_TAG:
        raise SsoError("malformed", "The SAML message is not a Response.")
    if any(el.tag == ENCRYPTED_ASSERTION_TAG for el in root.iter()):
        raise SsoError("unsupported", "Encrypted SAML assertions are not supported.")
    assertions = [el for el in root.iter() if el.tag == ASSERTION_TAG]
    children = [el for el in root if el.tag == ASSERTION_TAG]
    if len(assertions) != 1 or len(children) != 1:
        raise SsoError(
            "wrapped", "The SAML response must hold exactly one assertion, directly inside it."
        )
    assertion = children[0]
    ids = [el.get("ID") for el in root.iter() if el.get("ID") is not None]
    if len(ids) != len(set(ids)):
        raise SsoError("wrapped", "Two elements of the SAML response share an ID.")
    allowed_parents = {id(root), id(assertion)}
    for parent in root.iter():
        for child in parent:
            if child.tag == SIGNATURE_TAG and id(parent) not in allowed_parents:
                raise SsoError("wrapped", "The SAML response holds a misplaced signature.")
    return assertion


def _status(root: Element) -> None:
    code = root.find(f"{{{NS_PROTOCOL}}}Status/{{{NS_PROTOCOL}}}StatusCode")
    value = code.get("Value") if code is not None else None
    if value == samlp.STATUS_SUCCESS:
        return
    second = code.find(f"{{{NS_PROTOCOL}}}StatusCode") if code is not None else None
    detail = (second.get("Value") if second is not None else None) or value or "no status"
    raise SsoError("idp_error", f"The identity provider refused the sign-in ({detail[:120]}).")


def _text(element: Any) -> str:
    return (getattr(element, "text", None) or "").strip()


def _check_issuer(issuer: Any, idp: IdpConfig, *, required: bool) -> None:
    value = _text(issuer)
    if not value and not required:
        return
    if not hmac.compare_digest(value.encode(), idp.entity_id.encode()):
        raise SsoError("bad_issuer", "The SAML response comes from another identity provider.")


def _verify_signature(sec: Any, item: Any, xml: str, idp: IdpConfig) -> None:
    """pysaml2's check of ``item``'s enveloped signature against the IdP's certificates."""
    info = item.signature.signed_info
    if info is None:
        raise SsoError("bad_signature", "The SAML signature has no SignedInfo.")
    references = getattr(info, "reference", None) or []
    digests = {getattr(ref.digest_method, "algorithm", None) for ref in references}
    method = getattr(info.signature_method, "algorithm", None)
    if method not in SIGNATURE_ALGORITHMS or not digests or not digests <= DIGEST_ALGORITHMS:
        raise SsoError(
            "weak_signature", "The SAML signature uses an algorithm weaker than SHA-256."
        )
    try:
        sec.check_signature(
            item,
            node_name=item.c_namespace + ":" + item.c_tag,
            origdoc=xml,
            issuer=saml.Issuer(text=idp.entity_id),
        )
    except Exception as exc:  # noqa: BLE001 - pysaml2 signals a bad signature many ways
        logger.info("SAML signature refused: %s", type(exc).__name__)
        raise SsoError(
            "bad_signature",
            "The SAML signature is not valid for any certificate of the identity provider.",
        ) from exc


def _time(value: str | None, what: str) -> int:
    try:
        return calendar.timegm(str_to_time(value))
    except Exception as exc:  # noqa: BLE001 - any unparsable instant
        raise SsoError("malformed", f"The SAML {what} is not a valid time.") from exc


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.strip().encode(), b.encode())


def _check_conditions(assertion: Any, sp: SpConfig, now: float) -> int | None:
    """Audience and validity window; answers Conditions' NotOnOrAfter (or None)."""
    skew = sp.clock_skew_seconds
    conditions = assertion.conditions
    if conditions is None or not conditions.audience_restriction:
        raise SsoError("bad_audience", "The SAML assertion names no audience.")
    for restriction in conditions.audience_restriction:
        if not any(_same(a.text, sp.entity_id) for a in restriction.audience or []):
            raise SsoError("bad_audience", "The SAML assertion is meant for another service.")
    if conditions.condition:
        raise SsoError(
            "unsupported", "The SAML assertion has a condition this service cannot check."
        )
    if conditions.not_before and now + skew < _time(conditions.not_before, "NotBefore"):
        raise SsoError("not_yet_valid", "The SAML assertion is not valid yet.")
    not_on_or_after = None
    if conditions.not_on_or_after:
        not_on_or_after = _time(conditions.not_on_or_after, "NotOnOrAfter")
        if now - skew >= not_on_or_after:
            raise SsoError("expired", "The SAML assertion has expired.")
    return not_on_or_after


def _check_in_response_to(value: str | None, expected: str | None, idp: IdpConfig) -> None:
    if expected is None:
        if not idp.allow_idp_initiated:
            raise SsoError(
                "unsolicited", "This identity provider may not start a sign-in (no request)."
            )
        if value:
            raise SsoError("bad_in_response_to", "The SAML response answers an unknown request.")
        return
    if not _same(value, expected):
        raise SsoError("bad_in_response_to", "The SAML response answers another request.")


def _confirm_subject(
    assertion: Any, sp: SpConfig, idp: IdpConfig, expected_request_id: str | None, now: float
) -> int:
    """A bearer SubjectConfirmation for us; answers its NotOnOrAfter."""
    skew = sp.clock_skew_seconds
    subject = assertion.subject
    confirmations = [
        c
        for c in (subject.subject_confirmation if subject else None) or []
        if c.method == saml.SCM_BEARER
    ]
    if not confirmations:
        raise SsoError("bad_subject", "The SAML assertion has no bearer subject confirmation.")
    first_error: SsoError | None = None
    for confirmation in confirmations:
        data = confirmation.subject_confirmation_data
        try:
            if data is None or not _same(data.recipient, sp.acs_url):
                raise SsoError("bad_recipient", "The SAML assertion is meant for another address.")
            if not data.not_on_or_after:
                raise SsoError("malformed", "The SAML subject confirmation has no NotOnOrAfter.")
            not_on_or_after = _time(data.not_on_or_after, "NotOnOrAfter")
            if now - skew >= not_on_or_after:
                raise SsoError("expired", "The SAML assertion has expired.")
            if data.not_before and now + skew < _time(data.not_before, "NotBefore"):
                raise SsoError("not_yet_valid", "The SAML assertion is not valid yet.")
            _check_in_response_to(data.in_response_to, expected_request_id, idp)
            return not_on_or_after
        except SsoError as exc:
            first_error = first_error or exc
    assert first_error is not None  # noqa: S101 - the loop ran and every pass raised
    raise first_error


def _attributes(assertion: Any) -> dict[str, list[str]]:
    """Every attribute by its Name, and by its FriendlyName when that differs."""
    values: dict[str, list[str]] = {}
    for statement in assertion.attribute_statement or []:
        if statement.encrypted_attribute:
            raise SsoError("unsupported", "Encrypted SAML attributes are not supported.")
        for attribute in statement.attribute or []:
            texts = [_text(v) for v in attribute.attribute_value or [] if _text(v)]
            for key in dict.fromkeys(filter(None, (attribute.name, attribute.friendly_name))):
                values.setdefault(key, []).extend(texts)
    return values


def _first(attributes: dict[str, list[str]], names: Iterable[str]) -> str:
    for name in names:
        for value in attributes.get(name, []):
            return value
    return ""


def _email(name_id: Any, attributes: dict[str, list[str]], idp: IdpConfig) -> str:
    if idp.email_attribute:
        candidate = _first(attributes, [idp.email_attribute])
    elif name_id is not None and name_id.format == NAMEID_EMAIL and _text(name_id):
        candidate = _text(name_id)
    else:
        candidate = _first(attributes, EMAIL_ATTRIBUTES)
    try:
        validate_email(candidate)
    except ValidationError as exc:
        raise SsoError("no_email", "The identity provider sent no valid e-mail address.") from exc
    return candidate


def _subject(name_id: Any, attributes: dict[str, list[str]], idp: IdpConfig) -> str:
    if idp.subject_attribute:
        subject = _first(attributes, [idp.subject_attribute])
    elif name_id is None or name_id.format == NAMEID_TRANSIENT:
        subject = ""
    else:
        subject = _text(name_id)
    if not subject:
        raise SsoError(
            "bad_subject",
            "The SAML assertion has no stable subject (a transient or missing NameID).",
        )
    return subject


def _claims(assertion: Any, idp: IdpConfig) -> Claims:
    subject = assertion.subject
    if subject.encrypted_id is not None:
        raise SsoError("unsupported", "Encrypted SAML NameIDs are not supported.")
    name_id = subject.name_id
    attributes = _attributes(assertion)
    name = _first(attributes, [idp.name_attribute] if idp.name_attribute else NAME_ATTRIBUTES)
    if not name:
        name = " ".join(
            filter(
                None,
                (_first(attributes, GIVEN_NAME_ATTRIBUTES), _first(attributes, SURNAME_ATTRIBUTES)),
            )
        )
    groups = (
        tuple(dict.fromkeys(attributes.get(idp.groups_attribute, [])))
        if idp.groups_attribute
        else ()
    )
    authn = assertion.authn_statement[0]
    context = authn.authn_context
    return Claims(
        provider_kind="saml",
        subject=_subject(name_id, attributes, idp),
        email=_email(name_id, attributes, idp),
        email_verified=bool(idp.emails_verified),
        name=name,
        groups=groups,
        raw={
            "issuer": idp.entity_id,
            "assertion_id": assertion.id,
            "name_id": _text(name_id),
            "name_id_format": getattr(name_id, "format", None) or "",
            "session_index": authn.session_index or "",
            "authn_instant": authn.authn_instant or "",
            "authn_context": _text(getattr(context, "authn_context_class_ref", None)),
            "attributes": attributes,
        },
    )


def complete(
    sp: SpConfig, idp: IdpConfig, saml_response_b64: str, expected_request_id: str | None
) -> Claims:
    """Verify the ``SAMLResponse`` an HTTP-POST brought to our ACS and answer what its
    signed assertion says. ``expected_request_id``: the id :func:`authn_request`
    returned for this browser's sign-in, or None for an IdP-initiated response
    (refused unless ``idp.allow_idp_initiated``). Each assertion is accepted once."""
    xml_bytes = _decode(saml_response_b64)
    if len(xml_bytes) > MAX_RESPONSE_BYTES:
        raise SsoError("malformed", "The SAML response is too large.")
    root = _safe_parse(xml_bytes, "SAML response", "malformed")
    if root.tag != RESPONSE_TAG:
        raise SsoError("malformed", "The SAML message is not a Response.")
    _status(root)
    _check_structure(root)
    try:
        xml = xml_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SsoError("malformed", "The SAML response is not UTF-8.") from exc
    response = samlp.response_from_string(xml)
    if response is None or len(response.assertion) != 1:
        raise SsoError("malformed", "The SAML response could not be read.")
    assertion = response.assertion[0]
    _check_issuer(response.issuer, idp, required=False)
    _check_issuer(assertion.issuer, idp, required=True)

    if response.signature is None and assertion.signature is None:
        raise SsoError("unsigned", "The SAML response is not signed.")
    sec = _security_context(sp, idp)
    for item in (response, assertion):
        if item.signature is not None:
            _verify_signature(sec, item, xml, idp)

    now = clock.time()
    skew = sp.clock_skew_seconds
    if response.destination is not None or response.signature is not None:
        if not _same(response.destination, sp.acs_url):
            raise SsoError("bad_destination", "The SAML response is meant for another address.")
    for issued in (response.issue_instant, assertion.issue_instant):
        if now + skew < _time(issued, "IssueInstant"):
            raise SsoError("not_yet_valid", "The SAML response was issued in the future.")
    conditions_end = _check_conditions(assertion, sp, now)
    confirmation_end = _confirm_subject(assertion, sp, idp, expected_request_id, now)
    _check_in_response_to(response.in_response_to, expected_request_id, idp)
    if not assertion.authn_statement:
        raise SsoError("malformed", "The SAML assertion has no authentication statement.")
    claims = _claims(assertion, idp)

    # Last: a response refused above has not used up its assertion.
    expires = min(filter(None, (conditions_end, confirmation_end)))
    ttl = max(1, math.ceil(expires + skew - now) + 1)
    try:
        first_use = store.once(f"saml-assertion:{idp.entity_id}:{assertion.id}", ttl)
    except store.StoreUnavailable as exc:
        raise SsoError("unavailable", "The sign-in cannot be checked right now.") from exc
    if not first_use:
        raise SsoError("replayed", "This SAML assertion was already used.")
    return claims
