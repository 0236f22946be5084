"""What an attacker tries against our ACS, each refused by ``sso.saml.complete`` with
its own reason: tampering after signing, no signature, another key, another IdP,
weak algorithms, replies meant for another SP / address / request, stale or early
assertions, XML signature wrapping, comment truncation, entity expansion (in a
response and in IdP metadata), encrypted or malformed input.

The responses come from the real pysaml2 IdP of ``saml_idp``; an attack that needs
a change before signing uses its ``mutate`` hook (the IdP signs the changed
assertion), one after signing edits the signed XML."""

from __future__ import annotations

import datetime as dt
import re
import textwrap
import time
from dataclasses import replace

import pytest
from saml2.xmldsig import DIGEST_SHA1, SIG_RSA_SHA1

from inferia import clock
from sso import saml
from sso.errors import SsoError
from tests.sso.saml_idp import IDP_ENTITY_ID, SP_ENTITY_ID, Person, TestIdp, encode

EVE = "eve@evil.example.net"
ADA = "ada@acme.example.com"
ASSERTION = re.compile(r"<ns1:Assertion .*?</ns1:Assertion>", re.DOTALL)


def refused(sp, config, response_b64, request_id) -> str:
    with pytest.raises(SsoError) as error:
        saml.complete(sp, config, response_b64, request_id)
    assert error.value.message and "Traceback" not in error.value.message
    return error.value.reason


def iso(offset_seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(clock.time() + offset_seconds, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def confirmation_data(assertion):
    return assertion.subject.subject_confirmation[0].subject_confirmation_data


@pytest.fixture
def request_id(sp, idp_config) -> str:
    return saml.authn_request(sp, idp_config, "state")[1]


@pytest.fixture
def issue(idp, sp, request_id):
    """A response of the IdP to our request (its XML); keywords override the defaults."""

    def make(**overrides) -> str:
        args = {
            "in_response_to": request_id,
            "destination": sp.acs_url,
            "audience": SP_ENTITY_ID,
        } | overrides
        return idp.response_xml(**args)

    return make


def test_the_untouched_response_is_accepted(db, sp, idp_config, issue, request_id):
    """The baseline every attack below starts from (and the XML edits keep it valid)."""
    xml = issue()
    same = xml.replace(ADA, ADA)  # the edit path of the tampering tests, changing nothing
    assert saml.complete(sp, idp_config, encode(same), request_id).email == ADA


def test_an_encoding_declaration_and_line_breaks_are_fine(db, sp, idp_config, issue, request_id):
    xml = issue().replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-8"?>')
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    wrapped_b64 = "\r\n".join(textwrap.wrap(encode(xml), 76))  # as some IdPs post it
    assert saml.complete(sp, idp_config, wrapped_b64, request_id).email == ADA


# --- signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signed",
    [{}, {"sign_response": False}, {"sign_assertion": False}],
    ids=["both", "assertion", "response"],
)
def test_an_attribute_changed_after_signing_is_refused(
    db, sp, idp_config, issue, request_id, signed
):
    xml = issue(**signed)
    assert xml.count(">Ada Lovelace<") == 1
    tampered = xml.replace(">Ada Lovelace<", ">Eve<")
    assert refused(sp, idp_config, encode(tampered), request_id) == "bad_signature"
    renamed = xml.replace(f">{ADA}<", f">{EVE}<")  # the NameID and the mail attribute
    assert refused(sp, idp_config, encode(renamed), request_id) == "bad_signature"


def test_an_unsigned_response_is_refused(db, sp, idp_config, issue, request_id):
    xml = issue(sign_response=False, sign_assertion=False)
    assert "Signature" not in xml
    assert refused(sp, idp_config, encode(xml), request_id) == "unsigned"


def test_a_stripped_signature_is_refused(db, sp, idp_config, issue, request_id):
    xml = issue(sign_response=False)
    stripped = re.sub(r"<ns2:Signature .*?</ns2:Signature>", "", xml, flags=re.DOTALL)
    assert refused(sp, idp_config, encode(stripped.replace(ADA, EVE)), request_id) == "unsigned"


@pytest.mark.parametrize(
    "signed",
    [{}, {"sign_response": False}, {"sign_assertion": False}],
    ids=["both", "assertion", "response"],
)
def test_a_response_signed_by_another_key_is_refused(
    db, sp, idp, idp_config, servers, request_id, signed
):
    """Same entity id, the attacker's key; its certificate rides in the KeyInfo."""
    impostor = TestIdp(
        entity_id=IDP_ENTITY_ID, sso_url=idp.sso_url, sp_metadata_xml=saml.sp_metadata(sp)
    )
    xml = impostor.response_xml(
        in_response_to=request_id, destination=sp.acs_url, audience=SP_ENTITY_ID, **signed
    )
    impostor_cert = "".join(impostor.cert_pem.decode().splitlines()[1:-1])
    assert impostor_cert in xml
    assert refused(sp, idp_config, encode(xml), request_id) == "bad_signature"
    # Trusting the impostor's certificate too (key rotation) accepts it: the key decided.
    both = replace(
        idp_config, signing_certs=(*idp_config.signing_certs, impostor.cert_pem.decode())
    )
    assert saml.complete(sp, both, encode(xml), request_id).email == ADA


def test_another_idp_is_refused(db, sp, idp, idp_config, request_id):
    other = TestIdp(
        entity_id="https://other-idp.example.org/idp",
        sso_url=idp.sso_url,
        sp_metadata_xml=saml.sp_metadata(sp),
    )
    xml = other.response_xml(
        in_response_to=request_id, destination=sp.acs_url, audience=SP_ENTITY_ID
    )
    assert refused(sp, idp_config, encode(xml), request_id) == "bad_issuer"


def test_sha1_signatures_are_refused(db, sp, idp_config, issue, request_id):
    xml = issue(sign_alg=SIG_RSA_SHA1, digest_alg=DIGEST_SHA1)
    assert "rsa-sha1" in xml
    assert refused(sp, idp_config, encode(xml), request_id) == "weak_signature"


def test_without_xmlsec1_nothing_is_accepted(
    db, sp, idp_config, issue, request_id, monkeypatch, tmp_path
):
    xml = issue()
    monkeypatch.setenv("PATH", str(tmp_path))  # no xmlsec1 on the PATH
    assert saml.xmlsec1_path() is None
    assert refused(sp, idp_config, encode(xml), request_id) == "unavailable"


# --- meant for someone else -------------------------------------------------------------------


def test_a_response_for_another_sp_is_refused(db, sp, idp_config, issue, request_id):
    def other_sp(assertion):
        assertion.conditions.audience_restriction[0].audience[
            0
        ].text = "https://other-sp.example.com/saml/metadata"

    xml = issue(mutate=other_sp)
    assert "<ns1:Audience>https://other-sp.example.com/saml/metadata<" in xml
    assert refused(sp, idp_config, encode(xml), request_id) == "bad_audience"


def test_an_assertion_without_audience_is_refused(db, sp, idp_config, issue, request_id):
    def no_audience(assertion):
        assertion.conditions.audience_restriction = []

    assert refused(sp, idp_config, encode(issue(mutate=no_audience)), request_id) == "bad_audience"


def test_a_wrong_recipient_is_refused(db, sp, idp_config, issue, request_id):
    def elsewhere(assertion):
        confirmation_data(assertion).recipient = "https://evil.example.net/acs"

    xml = issue(mutate=elsewhere)
    assert 'Recipient="https://evil.example.net/acs"' in xml
    assert f'Destination="{sp.acs_url}"' in xml
    assert refused(sp, idp_config, encode(xml), request_id) == "bad_recipient"


def test_a_wrong_destination_is_refused(db, sp, idp_config, issue, request_id):
    def recipient_is_ours(assertion):
        confirmation_data(assertion).recipient = sp.acs_url

    xml = issue(destination="https://evil.example.net/acs", mutate=recipient_is_ours)
    assert refused(sp, idp_config, encode(xml), request_id) == "bad_destination"


def test_a_signed_response_without_destination_is_refused(db, sp, idp_config, issue, request_id):
    """SAML bindings 3.5.5.2: a signed HTTP-POST message names its Destination."""

    def recipient_is_ours(assertion):
        confirmation_data(assertion).recipient = sp.acs_url

    signed = issue(destination="", mutate=recipient_is_ours)
    assert "Destination=" not in signed
    assert refused(sp, idp_config, encode(signed), request_id) == "bad_destination"
    # Only the assertion signed: the envelope's Destination is optional.
    envelope_unsigned = issue(destination="", mutate=recipient_is_ours, sign_response=False)
    assert saml.complete(sp, idp_config, encode(envelope_unsigned), request_id).email == ADA


# --- time ---------------------------------------------------------------------------------------


def test_an_expired_assertion_is_refused(db, sp, idp_config, issue, request_id):
    def expired(assertion):
        assertion.conditions.not_before = iso(-600)
        assertion.conditions.not_on_or_after = iso(-300)
        confirmation_data(assertion).not_on_or_after = iso(-300)

    assert refused(sp, idp_config, encode(issue(mutate=expired)), request_id) == "expired"


def test_a_subject_confirmation_past_its_time_is_refused(db, sp, idp_config, issue, request_id):
    def stale(assertion):
        confirmation_data(assertion).not_on_or_after = iso(-120)

    assert refused(sp, idp_config, encode(issue(mutate=stale)), request_id) == "expired"


def test_a_subject_confirmation_without_end_is_refused(db, sp, idp_config, issue, request_id):
    def endless(assertion):
        confirmation_data(assertion).not_on_or_after = None

    assert refused(sp, idp_config, encode(issue(mutate=endless)), request_id) == "malformed"


def test_a_little_clock_skew_is_allowed(db, sp, idp_config, issue, request_id):
    def just_expired(assertion):
        assertion.conditions.not_on_or_after = iso(-30)
        confirmation_data(assertion).not_on_or_after = iso(-30)

    assert saml.complete(sp, idp_config, encode(issue(mutate=just_expired)), request_id).email
    strict = replace(sp, clock_skew_seconds=10)
    second = saml.authn_request(sp, idp_config, "s")[1]
    xml = issue(mutate=just_expired, in_response_to=second)
    assert refused(strict, idp_config, encode(xml), second) == "expired"


def test_an_assertion_used_after_its_lifetime_is_refused(
    db, sp, idp_config, issue, request_id, clock_shift
):
    xml = issue()  # valid for 5 minutes
    clock_shift(5 * 60 + 61)
    assert refused(sp, idp_config, encode(xml), request_id) == "expired"


def test_an_assertion_not_valid_yet_is_refused(db, sp, idp_config, issue, request_id):
    def early(assertion):
        assertion.conditions.not_before = iso(600)
        assertion.conditions.not_on_or_after = iso(900)

    assert refused(sp, idp_config, encode(issue(mutate=early)), request_id) == "not_yet_valid"


# --- answers to another request ---------------------------------------------------------------


def test_a_response_to_another_request_is_refused(db, sp, idp_config, issue, request_id):
    xml = issue(in_response_to="id-SomeoneElsesRequest1")
    assert refused(sp, idp_config, encode(xml), request_id) == "bad_in_response_to"


def test_an_assertion_answering_another_request_is_refused(db, sp, idp_config, issue, request_id):
    """The (unsigned) envelope names our request; the signed assertion another."""

    def other(assertion):
        confirmation_data(assertion).in_response_to = "id-SomeoneElsesRequest1"

    xml = issue(mutate=other, sign_response=False)
    assert f'InResponseTo="{request_id}"' in xml
    assert refused(sp, idp_config, encode(xml), request_id) == "bad_in_response_to"


def test_a_solicited_response_replayed_as_unsolicited_is_refused(db, sp, idp_config, issue):
    xml = issue()
    allowed = replace(idp_config, allow_idp_initiated=True)
    assert refused(sp, allowed, encode(xml), None) == "bad_in_response_to"
    assert refused(sp, idp_config, encode(xml), None) == "unsolicited"


# --- XML signature wrapping (only the signed assertion is ever read) ----------------------------


def _evil(assertion: str, *, new_id: str | None = None, keep_signature: bool = False) -> str:
    """The attacker's copy of a signed assertion: Eve's e-mail, maybe another ID,
    maybe without its signature."""
    evil = assertion.replace(ADA, EVE)
    if new_id:
        evil = re.sub(r' ID="[^"]+"', f' ID="{new_id}"', evil, count=1)
    if not keep_signature:
        evil = re.sub(r"<ns2:Signature .*?</ns2:Signature>", "", evil, flags=re.DOTALL)
    return evil


def _wrapping_attacks(xml: str) -> dict[str, str]:
    original = ASSERTION.search(xml).group(0)
    signature = re.search(r"<ns2:Signature .*?</ns2:Signature>", original, re.DOTALL).group(0)
    issuer_end = xml.index("</ns1:Issuer>") + len("</ns1:Issuer>")
    head = xml[:issuer_end]
    with_object = signature.replace(
        "</ns2:Signature>", f"<ns2:Object>{original}</ns2:Object></ns2:Signature>"
    )
    evil_with_object = _evil(original, new_id="id-evil").replace(
        "</ns1:Issuer>", "</ns1:Issuer>" + with_object, 1
    )
    return {
        # an unsigned evil assertion beside the signed one, first
        "two assertions": xml.replace(original, _evil(original, new_id="id-evil") + original),
        # the evil assertion takes the signed one's ID and place; the original hides in Extensions
        "original in Extensions": head
        + f"<ns0:Extensions>{original}</ns0:Extensions>"
        + xml[issuer_end:].replace(original, _evil(original, keep_signature=True)),
        # the original inside the evil assertion's signature, as a ds:Object
        "original in ds:Object": xml.replace(original, evil_with_object),
        # the original in the evil assertion's Advice
        "original in Advice": xml.replace(
            original,
            _evil(original, new_id="id-evil").replace(
                "</ns1:Subject>", f"</ns1:Subject><ns1:Advice>{original}</ns1:Advice>", 1
            ),
        ),
        # the signed assertion's signature copied onto the evil one, nothing else kept
        "signature moved": xml.replace(
            original, _evil(original, new_id="id-evil", keep_signature=True)
        ),
        # the same ID and signature, the content Eve's
        "same id, changed content": xml.replace(original, _evil(original, keep_signature=True)),
    }


@pytest.mark.parametrize(
    "attack",
    [
        "two assertions",
        "original in Extensions",
        "original in ds:Object",
        "original in Advice",
        "signature moved",
        "same id, changed content",
    ],
)
def test_signature_wrapping_is_refused(db, sp, idp_config, issue, request_id, attack):
    xml = issue(sign_response=False)  # only the assertion is signed: the classic target
    attacked = _wrapping_attacks(xml)[attack]
    assert EVE in attacked
    reason = refused(sp, idp_config, encode(attacked), request_id)
    assert reason in {"wrapped", "bad_signature"}, reason


def test_a_signed_response_wrapped_in_an_evil_one_is_refused(db, sp, idp_config, issue, request_id):
    xml = issue(sign_assertion=False)  # only the envelope is signed
    original_response = xml[xml.index("<ns0:Response") :]
    root_open = original_response[: original_response.index(">") + 1]
    evil_root = re.sub(r' ID="[^"]+"', ' ID="id-evil-response"', root_open, count=1)
    evil_assertion = _evil(ASSERTION.search(xml).group(0), new_id="id-evil-assertion")
    issuer = re.search(r"<ns1:Issuer .*?</ns1:Issuer>", xml).group(0)
    attacked = (
        evil_root
        + issuer
        + f"<ns0:Extensions>{original_response}</ns0:Extensions>"
        + '<ns0:Status><ns0:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></ns0:Status>'
        + evil_assertion
        + "</ns0:Response>"
    )
    assert refused(sp, idp_config, encode(attacked), request_id) == "wrapped"


def test_a_comment_cannot_truncate_the_name(db, sp, idp, idp_config, issue, request_id):
    """The IdP signed ``ada@acme.example.com.evil.test`` (Eve's address there); a
    comment inserted after signing leaves the signature valid (comments are not
    canonicalized) and must not cut the value down to Ada's address."""
    idp.person = Person(
        name_id="ada@acme.example.com.evil.test",
        attributes={"mail": ["ada@acme.example.com.evil.test"]},
    )
    xml = issue()
    commented = xml.replace(f"{ADA}.evil.test", f"{ADA}<!---->.evil.test")
    assert commented.count("<!---->") == 2
    claims = saml.complete(sp, idp_config, encode(commented), request_id)
    assert claims.email == "ada@acme.example.com.evil.test"
    assert claims.subject == "ada@acme.example.com.evil.test"


# --- hostile XML --------------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
"""


def test_an_entity_expansion_bomb_in_a_response_is_refused_at_once(
    db, sp, idp_config, issue, request_id
):
    xml = issue().replace('<?xml version="1.0"?>\n', "")
    bomb = BILLION_LAUGHS + xml.replace(">Ada Lovelace<", ">&lol9;<")
    started = time.monotonic()
    assert refused(sp, idp_config, encode(bomb), request_id) == "malformed"
    assert time.monotonic() - started < 1


def test_an_external_entity_in_a_response_is_refused(db, sp, idp_config, issue, request_id):
    xml = issue().replace('<?xml version="1.0"?>\n', "")
    xxe = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n' + xml.replace(
        ">Ada Lovelace<", ">&x;<"
    )
    assert refused(sp, idp_config, encode(xxe), request_id) == "malformed"


def test_an_entity_expansion_bomb_in_idp_metadata_is_refused_at_once(idp):
    metadata = idp.metadata().replace('<?xml version="1.0"?>', "")
    bomb = BILLION_LAUGHS + metadata.replace(IDP_ENTITY_ID, "&lol9;", 1)
    started = time.monotonic()
    with pytest.raises(SsoError) as error:
        saml.parse_idp_metadata(bomb)
    assert error.value.reason == "bad_metadata"
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "metadata",
    [
        "not xml at all",
        '<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><m>&x;</m>',
        "<html><body>login</body></html>",
    ],
    ids=["not xml", "external entity", "not metadata"],
)
def test_metadata_that_is_not_an_idp_is_refused(metadata):
    with pytest.raises(SsoError) as error:
        saml.parse_idp_metadata(metadata)
    assert error.value.reason == "bad_metadata"


def test_metadata_without_idp_or_redirect_sso_or_valid_cert_is_refused(idp, sp):
    metadata = idp.metadata()
    cases = {
        "an SP's metadata": saml.sp_metadata(sp),
        "no HTTP-Redirect SSO": metadata.replace(
            "bindings:HTTP-Redirect", "bindings:HTTP-Artifact"
        ),
        "a broken certificate": re.sub(
            r"(<ns\d:X509Certificate>)[^<]+", r"\1TUlJQ2Jyb2tlbg==", metadata
        ),
        "expired": metadata.replace(
            "<ns0:EntityDescriptor ", '<ns0:EntityDescriptor validUntil="2020-01-01T00:00:00Z" ', 1
        ),
        "two IdPs": (
            '<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">'
            + metadata.replace('<?xml version="1.0"?>', "")
            + metadata.replace('<?xml version="1.0"?>', "").replace(
                IDP_ENTITY_ID, "https://b.example.org/idp"
            )
            + "</md:EntitiesDescriptor>"
        ),
    }
    for case, xml in cases.items():
        assert xml != metadata, case
        with pytest.raises(SsoError) as error:
            saml.parse_idp_metadata(xml)
        assert error.value.reason == "bad_metadata", case


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("not base64 !!", "malformed"),
        (encode("<html>hello</html>"), "malformed"),
        (encode("<unclosed"), "malformed"),
        (encode("<a>" + "x" * (300 * 1024) + "</a>"), "malformed"),
    ],
    ids=["not base64", "not a response", "not xml", "too large"],
)
def test_garbage_is_refused(db, sp, idp_config, request_id, payload, reason):
    assert refused(sp, idp_config, payload, request_id) == reason


def test_an_encrypted_assertion_is_refused(db, sp, idp_config, issue, request_id):
    xml = issue(sign_response=False)
    encrypted = ASSERTION.sub(
        "<ns1:EncryptedAssertion><xenc:EncryptedData "
        'xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"/></ns1:EncryptedAssertion>',
        xml,
    )
    assert refused(sp, idp_config, encode(encrypted), request_id) == "unsupported"
