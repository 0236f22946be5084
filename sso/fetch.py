"""Outbound HTTP GETs of the SSO code (SAML metadata URLs; usable for OIDC discovery
and JWKS): the SSRF rule of ``keys/ssrf.py`` with the org's ``allowed_private_hosts``.

The host is resolved once, every address is checked by ``ssrf.check_addresses``, and
the connection goes to exactly that checked address (the URL carries the IP; the
``Host`` header and TLS SNI/certificate check carry the name), so DNS rebinding
after the check cannot slip a private address in. No redirects, no proxies from the
environment, a timeout and a size cap.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import httpx

from inferia.errors import ValidationError
from keys import ssrf
from sso.errors import SsoError

MAX_BYTES = 1_000_000
TIMEOUT_SECONDS = 10.0


def guarded_get(
    url: str,
    *,
    allowed_private_hosts: tuple[str, ...] | list[str],
    max_bytes: int = MAX_BYTES,
    timeout: float = TIMEOUT_SECONDS,
) -> bytes:
    """GET ``url`` under the SSRF rule; the body, at most ``max_bytes``.

    Raises VALIDATION_ERROR (``base_url``-style details) for a refused address and
    ``SsoError("fetch_failed", ...)`` for anything the server answered or did not.
    """
    parts = urlsplit(url.strip())
    # check_base_url refuses a query string (a provider's base URL has none); a
    # metadata URL may carry one: the rule is applied to the rest of it.
    check_url(
        urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
        field="url",
        allowed_private_hosts=tuple(allowed_private_hosts),
    )
    host, port = ssrf.host_and_port(url)
    addresses = ssrf.resolve_host(host, port)
    ssrf.check_addresses(host, port, addresses, list(allowed_private_hosts))
    address = addresses[0]
    literal = f"[{address}]" if ":" in address else address
    pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    try:
        with httpx.Client(trust_env=False, follow_redirects=False, timeout=timeout) as client:
            with client.stream(
                "GET",
                pinned,
                headers={"Host": host_header, "Accept": "application/json, application/xml"},
                extensions={"sni_hostname": host},
            ) as response:
                if response.status_code != 200:
                    raise SsoError("fetch_failed", f"{host} answered HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise SsoError("fetch_failed", f"The answer of {host} is too large")
                return bytes(body)
    except httpx.HTTPError as exc:
        raise SsoError(
            "fetch_failed", f"Could not fetch from {host}: {type(exc).__name__}"
        ) from exc


def check_url(url: str, *, field: str, allowed_private_hosts: tuple[str, ...]) -> str:
    """``ssrf.check_base_url`` with the error filed under ``field``."""
    try:
        return ssrf.check_base_url(url, allowed_private_hosts=list(allowed_private_hosts))
    except ValidationError as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        raise ValidationError(
            exc.message, details={field: details.get("base_url", [exc.message])}
        ) from exc
