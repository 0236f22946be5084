"""Identity providers for the OIDC tests, both over real HTTP on 127.0.0.1.

- :class:`NodeProvider`: the certified ``oidc-provider`` package (npm) run by
  ``tests/sso/oidc_op/server.mjs`` with Node.js, with the clients, users and
  signing keys the test gives it (keys generated here, so a test can rotate them).
- :class:`CraftedProvider`: a small OpenID provider in this process whose ID tokens
  the test writes (wrong audience, expired, ``alg: none``, unknown key...). Its
  authorization and token endpoints still do the protocol: the code is bound to
  the PKCE challenge, the client authenticates with its secret, and the nonce of
  the authorization request is handed to the token factory; only the ID token's
  content is up to the test.

Ports come from this helper's range 9150-9199, split between xdist workers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from inferia import clock
from tests import ports
from tests.conftest import require_or_skip

OP_DIR = Path(__file__).resolve().parent / "oidc_op"
PORTS = range(9150, 9200)  # INFERIA_TEST_PORTS overrides (tests/ports.py)
CLIENT_ID = "inferia-test"
CLIENT_SECRET = "oidc-client-" + "Zx9" * 12  # distinctive, so a leak is easy to find
USER_PASSWORD = "correct horse battery staple"


def free_port() -> int:
    return ports.free_port(PORTS)


def oidc_config(provider, **overrides):
    """The relying party's configuration for ``provider`` (its port listed as private)."""
    from sso.oidc import OidcConfig

    values = {
        "issuer": provider.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scopes": ("openid", "email", "profile", "groups"),
        "allowed_private_hosts": (f"127.0.0.1:{provider.port}",),
    }
    values.update(overrides)
    return OidcConfig(**values)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig"}, private=True)


def ec_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig"}, private=True)


def public_jwks(*keys) -> dict:
    return {"keys": [key.as_dict(private=False) for key in keys]}


def sign(claims: dict, key, alg: str = "RS256", **header) -> str:
    return jwt.encode({"alg": alg, "kid": key.kid, **header}, claims, key, algorithms=[alg])


def unsigned(claims: dict, **header) -> str:
    """A JWT with ``alg: none`` and an empty signature."""
    head = b64url(json.dumps({"alg": "none", **header}).encode())
    return f"{head}.{b64url(json.dumps(claims).encode())}."


def hmac_signed(claims: dict, secret: bytes, **header) -> str:
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", **header}).encode())
    body = b64url(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


# --- driving a provider's pages -------------------------------------------------------


def sign_in_with_forms(
    authorization_url: str,
    redirect_uri: str,
    *,
    username: str,
    password: str = USER_PASSWORD,
    consent: str = "confirm",
) -> dict[str, str]:
    """Follow the provider's pages as a browser would (an httpx client with cookies):
    submit the login form, then ``consent`` (``confirm`` or ``abort``); return the
    query the provider sends back to ``redirect_uri``."""
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        response = browser.get(authorization_url)
        for _ in range(12):
            if response.status_code in (302, 303):
                location = urljoin(str(response.url), response.headers["location"])
                if location.startswith(redirect_uri):
                    query = parse_qs(urlsplit(location).query)
                    return {name: values[0] for name, values in query.items()}
                response = browser.get(location)
                continue
            assert response.status_code == 200, response.text
            actions = re.findall(r'action="([^"]+)"', response.text)
            if any(action.endswith("/login") for action in actions):
                action = next(a for a in actions if a.endswith("/login"))
                data = {"username": username, "password": password}
            else:
                action = next(a for a in actions if a.endswith(f"/{consent}"))
                data = {}
            response = browser.post(urljoin(str(response.url), action), data=data)
        raise AssertionError("the provider never redirected back")


# --- the real provider --------------------------------------------------------------------


def node_available() -> None:
    """Skip (fail in CI) unless Node.js and the provider's npm packages are installed."""
    if shutil.which("node") is None:
        require_or_skip("the OIDC tests need Node.js (node) for the test identity provider")
    if not (OP_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        require_or_skip(
            "the OIDC tests need the oidc-provider npm package: run `npm ci` in tests/sso/oidc_op"
        )


DEFAULT_USERS = {
    "alice": {
        "password": USER_PASSWORD,
        "claims": {
            "email": "alice@acme.test",
            "email_verified": True,
            "name": "Alice Archer",
            "groups": ["engineering", "inferia-admins"],
        },
    },
    "mallory": {
        "password": USER_PASSWORD,
        "claims": {"email": "ceo@acme.test", "email_verified": False, "name": "Mallory"},
    },
    "nobody": {"password": USER_PASSWORD, "claims": {"email": "nobody@acme.test"}},
}


class NodeProvider:
    """oidc-provider in a Node.js process on 127.0.0.1:``port``."""

    def __init__(
        self,
        *,
        redirect_uris: list[str],
        keys: list,
        users: dict | None = None,
        conform_id_token_claims: bool = True,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.redirect_uris = redirect_uris
        self.users = users or DEFAULT_USERS
        self.conform = conform_id_token_claims
        self.keys = keys
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.gettempdir()) / f"oidc-op-{self.port}.log"

    def start(self) -> NodeProvider:
        config = {
            "issuer": self.issuer,
            "port": self.port,
            "clients": [
                {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": self.redirect_uris,
                    "token_endpoint_auth_method": "client_secret_basic",
                }
            ],
            "users": self.users,
            "jwks": {"keys": [key.as_dict(private=True) for key in self.keys]},
            "conformIdTokenClaims": self.conform,
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            ["node", str(OP_DIR / "server.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=OP_DIR,
        )
        log.close()
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(config).encode())
        self.process.stdin.close()
        ready: list[bytes] = []
        reader = threading.Thread(
            target=lambda: ready.append(self.process.stdout.readline()), daemon=True
        )
        reader.start()
        reader.join(timeout=30)
        if not ready or not ready[0].startswith(b"READY"):
            self.stop()
            raise RuntimeError(
                f"oidc-provider did not start: {self.log_path.read_text(errors='replace')[-2000:]}"
            )
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def rotate(self, keys: list) -> None:
        """Restart on the same issuer with another key set (the old keys are gone)."""
        self.stop()
        self.keys = keys
        self.start()


# --- the crafted provider -----------------------------------------------------------------

TokenFactory = Callable[[dict[str, Any]], dict[str, Any]]


class _LocalServer:
    """An HTTP server on 127.0.0.1 in a thread of the test process."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class CraftedProvider(_LocalServer):
    """A minimal OpenID provider whose ID tokens (and JWKS) the test decides.

    ``token_factory(defaults)`` gets the claims a correct ID token would carry
    (iss, sub, aud, exp, iat, nonce of the authorization request) and returns the
    token endpoint's JSON answer. ``jwks`` is served as is at ``/jwks``;
    ``discovery`` overrides entries of the discovery document; ``userinfo`` is
    the userinfo answer (``None``: no userinfo endpoint). ``hits`` counts requests
    per path.
    """

    def __init__(self, key) -> None:
        super().__init__(self._handler())
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.key = key
        self.jwks: dict = public_jwks(key)
        self.discovery: dict[str, Any] = {}
        self.userinfo: dict[str, Any] | None = None
        self.token_factory: TokenFactory = self.good_token
        self.hits: Counter[str] = Counter()
        # path -> (status, headers, body): answers served as they are (redirects, huge bodies).
        self.raw_routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.codes: dict[str, dict[str, str]] = {}
        self.token_requests: list[dict[str, str]] = []

    def claims(self, nonce: str, **overrides) -> dict[str, Any]:
        now = int(clock.time())
        claims = {
            "iss": self.issuer,
            "sub": "user-42",
            "aud": CLIENT_ID,
            "exp": now + 300,
            "iat": now,
            "nonce": nonce,
            "email": "dana@acme.test",
            "email_verified": True,
            "name": "Dana",
            "groups": ["ml-platform"],
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def good_token(self, defaults: dict[str, Any]) -> dict[str, Any]:
        return self.answer(sign(defaults, self.key))

    @staticmethod
    def answer(id_token: str, access_token: str = "at-opaque-123") -> dict[str, Any]:  # noqa: S107
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }

    def document(self) -> dict[str, Any]:
        base = self.issuer
        document = {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "jwks_uri": f"{base}/jwks",
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
        }
        if self.userinfo is not None:
            document["userinfo_endpoint"] = f"{base}/userinfo"
        document.update(self.discovery)
        return document

    def authorize(self, authorization_url: str) -> dict[str, str]:
        """The browser's round trip through /authorize; returns the callback's query."""
        response = httpx.get(authorization_url, follow_redirects=False, timeout=10)
        assert response.status_code == 302, response.text
        query = parse_qs(urlsplit(response.headers["location"]).query)
        return {name: values[0] for name, values in query.items()}

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 (the base class's name)
                pass

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                parts = urlsplit(self.path)
                provider.hits[parts.path] += 1
                if parts.path in provider.raw_routes:
                    status, headers, body = provider.raw_routes[parts.path]
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                    return None
                if parts.path == "/.well-known/openid-configuration":
                    return self._json(200, provider.document())
                if parts.path == "/jwks":
                    return self._json(200, provider.jwks)
                if parts.path == "/userinfo" and provider.userinfo is not None:
                    return self._json(200, provider.userinfo)
                if parts.path == "/authorize":
                    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = params
                    back = {"code": code, "state": params["state"]}
                    self.send_response(302)
                    self.send_header("Location", f"{params['redirect_uri']}?{urlencode(back)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return self._json(404, {"error": "not_found"})

            def do_POST(self):  # noqa: N802
                parts = urlsplit(self.path)
                provider.hits[parts.path] += 1
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                provider.token_requests.append(form)
                if parts.path != "/token":
                    return self._json(404, {"error": "not_found"})
                expected = (
                    "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                )
                if not hmac.compare_digest(self.headers.get("Authorization", ""), expected):
                    return self._json(401, {"error": "invalid_client"})
                request = provider.codes.pop(form.get("code", ""), None)
                if request is None:
                    return self._json(400, {"error": "invalid_grant"})
                challenge = b64url(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
                if (
                    request.get("code_challenge_method") != "S256"
                    or challenge != request.get("code_challenge")
                    or form.get("redirect_uri") != request.get("redirect_uri")
                ):
                    return self._json(400, {"error": "invalid_grant", "error_description": "PKCE"})
                defaults = provider.claims(request["nonce"])
                return self._json(200, provider.token_factory(defaults))

        return Handler


class CallbackServer(_LocalServer):
    """The relying party's redirect URI for the browser test: records each callback query."""

    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 (the base class's name)
                pass

            def do_GET(self):  # noqa: N802
                parts = urlsplit(self.path)
                if parts.path != "/callback":
                    self.send_response(404)
                    self.end_headers()
                    return
                server.queries.append({k: v[0] for k, v in parse_qs(parts.query).items()})
                body = b"<!doctype html><title>Back at Inferia</title><h1>Back at Inferia</h1>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)
        self.url = f"http://127.0.0.1:{self.port}/callback"
