"""Outbound HTTP GETs of the SSO code (SAML metadata URLs; usable for OIDC discovery
and JWKS): the SSRF rule of ``keys/ssrf.py`` with the org's ``allowed_private_hosts``.

The connection is ``keys.ssrf_http.guarded_client``'s (the one guarded client for
tenant-configured URLs: every address checked by ``ssrf.check_addresses`` when the
connection opens and connected to as checked, so DNS rebinding cannot slip a private
address in; no redirects, no proxies from the environment, a timeout and a size cap).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import httpx

from inferia.errors import ValidationError
from keys import ssrf
from keys.ssrf_http import AddressRefused, ResponseTooLarge, guarded_client
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
    host, _port = ssrf.host_and_port(url)
    try:
        with guarded_client(
            allowed_private_hosts=allowed_private_hosts,
            timeout_seconds=timeout,
            max_response_bytes=max_bytes,
        ) as client:
            with client.stream(
                "GET", url, headers={"Accept": "application/json, application/xml"}
            ) as response:
                if response.status_code != 200:
                    raise SsoError("fetch_failed", f"{host} answered HTTP {response.status_code}")
                return response.read()
    except AddressRefused as exc:
        raise ValidationError(
            "The address is not allowed", details={"url": [f"{host}: address not allowed"]}
        ) from exc
    except ResponseTooLarge as exc:
        raise SsoError("fetch_failed", f"The answer of {host} is too large") from exc
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
