"""A real SAML 2.0 identity provider for the tests, built with pysaml2's ``Server``.

It has its own RSA key pair and self-signed certificate (generated here), trusts our
SP through the metadata ``sso.saml.sp_metadata`` produces, and serves its
SingleSignOnService over HTTP on 127.0.0.1: a GET with an HTTP-Redirect AuthnRequest
answers the HTTP-POST binding's auto-submitting form, carrying a signed Response for
the person "signed in" at the IdP. ``response()`` makes the same responses without the
HTTP round trip, with the knobs the attack tests need (signing, audience, times, a
mutation of the assertion before it is signed).
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import html
import html.parser
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from sso import saml as sso_saml
from tests.ports import port_range

# Ports for servers the tests start (this repository's test range for the SAML IdP;
# INFERIA_TEST_PORTS overrides it, tests/ports.py).
PORTS = port_range(range(9200, 9250)) or range(9200, 9250)

# The entity ids of the protocol tests (tests/sso/test_saml_*.py).
SP_ENTITY_ID = "https://inferia.example.com/sso/acme/saml/metadata"
IDP_ENTITY_ID = "https://idp.example.com/saml2/idp"


def make_key_and_cert(common_name: str) -> tuple[bytes, bytes]:
    """A fresh RSA key (PEM) and a self-signed certificate for it (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Person:
    """The person signed in at the IdP, and what it releases about them."""

    name_id: str = "ada@acme.example.com"
    name_id_format: str = NAMEID_FORMAT_EMAILADDRESS
    attributes: dict[str, list[str]] = field(
        default_factory=lambda: {
            "mail": ["ada@acme.example.com"],
            "displayName": ["Ada Lovelace"],
            "groups": ["engineering", "admins"],
        }
    )


class _MutatingServer(Server):
    """pysaml2's IdP, with a hook on the assertion before it is signed."""

    mutate_assertion: Callable[[saml.Assertion], None] | None = None

    def setup_assertion(self, *args: Any, **kwargs: Any) -> saml.Assertion:
        assertion = super().setup_assertion(*args, **kwargs)
        if self.mutate_assertion is not None:
            self.mutate_assertion(assertion)
        return assertion


class TestIdp:
    """One IdP: ``entity_id``, its key pair, its pysaml2 ``Server``."""

    __test__ = False  # not a test class

    def __init__(
        self,
        *,
        entity_id: str,
        sso_url: str,
        sp_metadata_xml: str,
        key_and_cert: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.entity_id = entity_id
        self.sso_url = sso_url
        self.person = Person()
        # For the login page (IdpHttpServer(login_page=True)): user name -> (password, Person).
        self.users: dict[str, tuple[str, Person]] = {}
        self.key_pem, self.cert_pem = key_and_cert or make_key_and_cert(entity_id)
        self._dir = tempfile.TemporaryDirectory(prefix="inferia-test-idp-")
        folder = Path(self._dir.name)
        (folder / "idp.key").write_bytes(self.key_pem)
        (folder / "idp.crt").write_bytes(self.cert_pem)
        config = IdPConfig()
        config.load(
            {
                "entityid": entity_id,
                "xmlsec_binary": sso_saml.xmlsec1_path(),
                "key_file": str(folder / "idp.key"),
                "cert_file": str(folder / "idp.crt"),
                "metadata": {"inline": [sp_metadata_xml]},
                "service": {
                    "idp": {
                        "endpoints": {"single_sign_on_service": [(sso_url, BINDING_HTTP_REDIRECT)]},
                        "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                        "policy": {
                            "default": {
                                "lifetime": {"minutes": 5},
                                "attribute_restrictions": None,
                                "name_form": saml.NAME_FORMAT_URI,
                            }
                        },
                        "sign_response": True,
                        "sign_assertion": True,
                        "signing_algorithm": SIG_RSA_SHA256,
                        "digest_algorithm": DIGEST_SHA256,
                    }
                },
                "allow_unknown_attributes": True,
            }
        )
        self.config = config
        self.server = _MutatingServer(config=config)

    def metadata(self) -> str:
        """This IdP's metadata XML, as an org admin would paste it."""
        return str(entity_descriptor(self.config))

    def idp_config(self) -> sso_saml.IdpConfig:
        return sso_saml.IdpConfig(
            entity_id=self.entity_id,
            sso_url=self.sso_url,
            signing_certs=(self.cert_pem.decode(),),
        )

    # --- responses ---------------------------------------------------------------------------

    def response_xml(
        self,
        *,
        in_response_to: str | None,
        destination: str,
        audience: str,
        sign_response: bool = True,
        sign_assertion: bool = True,
        sign_alg: str = SIG_RSA_SHA256,
        digest_alg: str = DIGEST_SHA256,
        mutate: Callable[[saml.Assertion], None] | None = None,
        person: Person | None = None,
    ) -> str:
        """A Response XML (signed as asked). ``destination`` is where it is posted:
        pysaml2 uses it as both Destination and SubjectConfirmationData/@Recipient;
        ``mutate`` changes the assertion before anything is signed."""
        person = person or self.person
        self.server.mutate_assertion = mutate
        try:
            response = self.server.create_authn_response(
                identity=dict(person.attributes),
                in_response_to=in_response_to,
                destination=destination,
                sp_entity_id=audience,
                name_id=NameID(format=person.name_id_format, text=person.name_id),
                authn={
                    "class_ref": saml.AUTHN_PASSWORD_PROTECTED,
                    "authn_auth": self.entity_id,
                },
                sign_response=sign_response,
                sign_assertion=sign_assertion,
                sign_alg=sign_alg,
                digest_alg=digest_alg,
            )
        finally:
            self.server.mutate_assertion = None
        return str(response)

    def response(self, **kwargs: Any) -> str:
        """:meth:`response_xml`, base64-encoded as the HTTP-POST binding carries it."""
        return encode(self.response_xml(**kwargs))

    def trusting(self, sp_metadata_xml: str) -> TestIdp:
        """The same IdP (entity id, address, key pair, users), now trusting the SP of
        ``sp_metadata_xml``: what its administrator does with the SP's metadata."""
        other = TestIdp(
            entity_id=self.entity_id,
            sso_url=self.sso_url,
            sp_metadata_xml=sp_metadata_xml,
            key_and_cert=(self.key_pem, self.cert_pem),
        )
        other.person, other.users = self.person, self.users
        return other

    def answer_redirect(self, query: str, person: Person | None = None) -> str:
        """The IdP's SSO endpoint: an HTTP-Redirect AuthnRequest in, the HTTP-POST
        form (HTML) with a signed Response for the signed-in person out."""
        person = person or self.person
        params = {k: v[0] for k, v in parse_qs(query).items()}
        request = self.server.parse_authn_request(params["SAMLRequest"], BINDING_HTTP_REDIRECT)
        args = self.server.response_args(request.message, [BINDING_HTTP_POST])
        response = self.server.create_authn_response(
            identity=dict(person.attributes),
            in_response_to=args["in_response_to"],
            destination=args["destination"],
            sp_entity_id=args["sp_entity_id"],
            name_id=NameID(format=person.name_id_format, text=person.name_id),
            authn={"class_ref": saml.AUTHN_PASSWORD_PROTECTED, "authn_auth": self.entity_id},
        )
        http = self.server.apply_binding(
            BINDING_HTTP_POST,
            str(response),
            destination=args["destination"],
            relay_state=params.get("RelayState", ""),
            response=True,
        )
        return http["data"]


def encode(xml: str) -> str:
    return base64.b64encode(xml.encode()).decode()


def decode(b64: str) -> str:
    return base64.b64decode(b64).decode()


# --- the IdP over HTTP ------------------------------------------------------------------------


def _login_page(query: str, error: str = "") -> bytes:
    alert = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Test SAML IdP</title></head><body><h1>Sign in to the test SAML IdP</h1>{alert}
<form method="post" action="/sso/login"><input type="hidden" name="query" value="{html.escape(query)}">
<label>Username <input name="username" autocomplete="off" required></label>
<label>Password <input name="password" type="password" required></label>
<button type="submit">Sign in</button></form></body></html>""".encode()


class IdpHttpServer:
    """The IdP's SingleSignOnService on 127.0.0.1 (a port of ``PORTS``), in a thread.

    By default a GET of an AuthnRequest answers at once for ``idp.person``; with
    ``login_page=True`` it shows a sign-in form first (``idp.users``: user name ->
    (password, Person)), whose POST answers with the HTTP-POST binding's form for that
    person, as an IdP's own login page does."""

    def __init__(self, *, login_page: bool = False) -> None:
        self.idp: TestIdp | None = None
        self.requests: list[str] = []
        self.login_page = login_page
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _answer(self, query: str, person: Person | None = None) -> None:
                assert owner.idp is not None
                try:
                    body = owner.idp.answer_redirect(query, person).encode()
                except Exception as exc:  # noqa: BLE001 - the IdP refuses, as a real one would
                    self.send_error(400, type(exc).__name__)
                    return
                self._send(200, body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                assert owner.idp is not None
                if parts.path != "/sso":
                    self.send_error(404)
                    return
                owner.requests.append(self.path)
                if owner.login_page:
                    self._send(200, _login_page(parts.query))
                    return
                self._answer(parts.query)

            def do_POST(self) -> None:  # noqa: N802
                assert owner.idp is not None
                if not owner.login_page or urlsplit(self.path).path != "/sso/login":
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                query = form.get("query", "")
                password, person = owner.idp.users.get(form.get("username", ""), ("", None))
                if person is None or not hmac.compare_digest(
                    password.encode(), form.get("password", "").encode()
                ):
                    self._send(401, _login_page(query, "Unknown user or wrong password."))
                    return
                self._answer(query, person)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        last_error: OSError | None = None
        for port in PORTS:
            try:
                self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError as exc:
                last_error = exc
        else:
            raise RuntimeError(f"no free port in {PORTS}") from last_error
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def sso_url(self) -> str:
        return self.base_url + "/sso"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class AcsHttpServer:
    """Our ACS's address for the test: it receives the browser's form POST over HTTP
    and keeps the fields, which the test hands to ``sso.saml.complete``."""

    def __init__(self) -> None:
        self.posts: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                fields = parse_qs(self.rfile.read(length).decode())
                owner.posts.append({k: v[0] for k, v in fields.items()})
                owner.content_types.append(self.headers.get("Content-Type", ""))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.content_types: list[str] = []
        for port in reversed(PORTS):
            try:
                self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError:
                continue
        else:
            raise RuntimeError(f"no free port in {PORTS}")
        self.acs_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/acs"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FormParser(html.parser.HTMLParser):
    """The HTTP-POST binding's form: its action and its hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.method = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.action = values.get("action") or ""
            self.method = (values.get("method") or "").lower()
        elif tag == "input" and values.get("name"):
            self.fields[values["name"] or ""] = values.get("value") or ""
