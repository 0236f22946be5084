"""Local servers that speak the documented APIs of three secret managers, over real
HTTP(S) on 127.0.0.1, for the vendors' official clients to talk to in tests.

- HashiCorp Vault KV v2: ``GET /v1/<mount>/data/<path>`` with ``X-Vault-Token``;
  403 ``{"errors": ["permission denied"]}``, 404 ``{"errors": []}``.
- Google Secret Manager REST: ``GET /v1/projects/{p}/secrets/{s}/versions/{v}:access``
  -> ``{"name", "payload": {"data": base64, "dataCrc32c"}}``; 404/403 in Google's
  error shape.
- Azure Key Vault: ``GET /secrets/{name}[/{version}]?api-version=...`` over HTTPS
  (self-signed certificate made here), with Key Vault's challenge: a request
  without a bearer token gets 401 and ``WWW-Authenticate``; 404 ``SecretNotFound``,
  403 ``Forbidden``.

Each server keeps what it was asked in ``requests`` (path and the auth header's
presence, never logged elsewhere) and its secrets in plain dicts a test changes.
"""

from __future__ import annotations

import abc
import base64
import datetime
import ipaddress
import json
import re
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        return

    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.owner.requests.append(
            {"path": self.path, "authorized": bool(self._auth_header())}
        )
        self.server.owner.handle(self)

    def _auth_header(self) -> str:
        return self.headers.get("X-Vault-Token") or self.headers.get("Authorization") or ""


class _Server(abc.ABC):
    scheme = "http"

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self):
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @abc.abstractmethod
    def handle(self, request: _Handler) -> None:
        """Answer one request (each server speaks its vendor's API)."""


class VaultServer(_Server):
    """KV v2. ``secrets[(mount, path)] = {key: value}``; ``tokens[token] = [path prefixes]``."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.versions: dict[tuple[str, str], int] = {}
        self.tokens: dict[str, list[str]] = {}

    def put(self, mount: str, path: str, data: dict[str, str]) -> None:
        self.secrets[(mount, path)] = dict(data)
        self.versions[(mount, path)] = self.versions.get((mount, path), 0) + 1

    def handle(self, request: _Handler) -> None:
        match = re.fullmatch(r"/v1/([^/]+)/data/(.+)", urlparse(request.path).path)
        token = request.headers.get("X-Vault-Token", "")
        if match is None:
            request._send(404, {"errors": []})
            return
        mount, path = match[1], unquote(match[2])
        allowed = self.tokens.get(token)
        if allowed is None or not any(f"{mount}/{path}".startswith(p) for p in allowed):
            request._send(403, {"errors": ["permission denied"]})
            return
        data = self.secrets.get((mount, path))
        if data is None:
            request._send(404, {"errors": []})
            return
        request._send(
            200,
            {
                "request_id": str(uuid.uuid4()),
                "lease_id": "",
                "renewable": False,
                "lease_duration": 0,
                "data": {
                    "data": data,
                    "metadata": {
                        "created_time": "2026-01-01T00:00:00.000000Z",
                        "custom_metadata": None,
                        "deletion_time": "",
                        "destroyed": False,
                        "version": self.versions[(mount, path)],
                    },
                },
                "wrap_info": None,
                "warnings": None,
                "auth": None,
            },
        )


class GcpSecretManagerServer(_Server):
    """``secrets["projects/p/secrets/s"] = [version 1 value, version 2 value, ...]``;
    ``denied`` holds secret names the caller may not access."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, list[str]] = {}
        self.denied: set[str] = set()

    def handle(self, request: _Handler) -> None:
        match = re.fullmatch(
            r"/v1/(projects/[^/]+/secrets/[^/]+)/versions/([^/:]+):access",
            urlparse(request.path).path,
        )
        if match is None:
            self._error(request, 404, "NOT_FOUND", "Not found")
            return
        secret, version = match[1], match[2]
        if secret in self.denied:
            self._error(
                request,
                403,
                "PERMISSION_DENIED",
                f"Permission 'secretmanager.versions.access' denied for resource "
                f"'{secret}/versions/{version}' (or it may not exist).",
            )
            return
        values = self.secrets.get(secret, [])
        number = len(values) if version == "latest" else int(version)
        if not values or not 1 <= number <= len(values):
            self._error(
                request,
                404,
                "NOT_FOUND",
                f"Secret Version [{secret}/versions/{version}] not found.",
            )
            return
        data = values[number - 1].encode()
        request._send(
            200,
            {
                "name": f"{secret}/versions/{number}",
                "payload": {
                    "data": base64.b64encode(data).decode(),
                    "dataCrc32c": str(_crc32c(data)),
                },
            },
        )

    @staticmethod
    def _error(request: _Handler, code: int, status: str, message: str) -> None:
        request._send(code, {"error": {"code": code, "message": message, "status": status}})


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as Secret Manager sends it (bitwise; tiny payloads)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files); the certificate is its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "inferia-test-key-vault")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "vault.pem", directory / "vault.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class AzureKeyVaultServer(_Server):
    """HTTPS. ``secrets[name] = [version values]`` (names case-insensitive, as Azure's);
    ``tokens[token] = set of readable names`` or ``None`` for all."""

    scheme = "https"
    TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    CHALLENGE = (
        f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
        'resource="https://vault.azure.net"'
    )

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.cert_path, key_path = self_signed_certificate(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, key_path)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.secrets: dict[str, list[str]] = {}
        self.tokens: dict[str, set[str] | None] = {}
        self.versions: dict[str, list[str]] = {}

    def put(self, name: str, value: str) -> str:
        name = name.lower()
        self.secrets.setdefault(name, []).append(value)
        version = uuid.uuid4().hex
        self.versions.setdefault(name, []).append(version)
        return version

    def handle(self, request: _Handler) -> None:
        parsed = urlparse(request.path)
        match = re.fullmatch(r"/secrets/([^/]+)(?:/([^/]*))?", parsed.path)
        if "api-version=" not in parsed.query or match is None:
            request._send(400, {"error": {"code": "BadParameter", "message": "bad request"}})
            return
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            request._send(
                401,
                {
                    "error": {
                        "code": "Unauthorized",
                        "message": "AKV10000: Request is missing a Bearer or PoP token.",
                    }
                },
                {"WWW-Authenticate": self.CHALLENGE},
            )
            return
        name, version = match[1].lower(), (match[2] or "")
        readable = self.tokens[auth[7:]]
        if readable is not None and name not in readable:
            request._send(
                403,
                {
                    "error": {
                        "code": "Forbidden",
                        "message": "Caller is not authorized to perform action on resource.",
                        "innererror": {"code": "ForbiddenByRbac"},
                    }
                },
            )
            return
        versions = self.versions.get(name, [])
        index = (
            len(versions) - 1
            if not version
            else (versions.index(version) if version in versions else -1)
        )
        if index < 0:
            request._send(
                404,
                {
                    "error": {
                        "code": "SecretNotFound",
                        "message": f"A secret with (name/id) {name} was not found in this key vault.",
                    }
                },
            )
            return
        request._send(
            200,
            {
                "value": self.secrets[name][index],
                "id": f"{self.url}/secrets/{name}/{versions[index]}",
                "attributes": {
                    "enabled": True,
                    "created": 1767225600,
                    "updated": 1767225600,
                    "recoveryLevel": "Recoverable+Purgeable",
                },
            },
        )
