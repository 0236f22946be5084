"""SSRF guard for provider base URLs: one rule, applied when a base URL is saved
and again on every upstream connection.

The rule (``address_allowed``): an address is allowed when it is public; a
loopback, private, multicast, reserved or unspecified one only when the org
lists the host (``host`` or ``host:port``) in ``allowed_private_hosts`` *and*
the operator's ``INFERIA_PRIVATE_HOSTS_ALLOWED`` covers it; link-local and cloud
metadata addresses (``NEVER_ALLOWED``) never, whatever anyone lists. Every
resolved address must pass, so a name with one public and one private address
is refused too.

``check_base_url`` runs it when a base URL is saved; the gateway's upstream
client (``gateway/http.py``) runs it on the addresses each new connection is
about to use (resolve, check, connect to exactly those: DNS rebinding cannot
slip a private address in after validation) and, per request, on the addresses
of the pooled connection it may reuse, with the org's settings of that request,
so a host removed from a list is refused on the next call.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from urllib.parse import urlsplit

from inferia.errors import ValidationError
from inferia.private_hosts import operator_allows

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}
# Never reachable through a provider account, whatever an org or operator lists:
# link-local (AWS/GCP/Azure/OpenStack metadata at 169.254.169.254) and the other
# clouds' metadata and host endpoints.
NEVER_ALLOWED = tuple(
    ipaddress.ip_network(net)
    for net in (
        "169.254.0.0/16",  # IPv4 link-local, AWS/GCP/Azure/OpenStack metadata
        "fe80::/10",  # IPv6 link-local
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "168.63.129.16/32",  # Azure host (wire server)
    )
)


def _error(message: str) -> ValidationError:
    return ValidationError("Base URL refused", details={"base_url": [message]})


@functools.lru_cache(maxsize=4096)
def _classify(address: str) -> str:
    """``public``, ``private`` or ``never`` (cached: the hot path asks per request)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 carried in IPv6 (::ffff:a.b.c.d, 6to4 2002:aabb:ccdd::) is judged as that IPv4.
        ip = ip.ipv4_mapped or ip.sixtofour or ip
    if any(ip in net for net in NEVER_ALLOWED if net.version == ip.version):
        return "never"
    if ip.is_global and not (ip.is_multicast or ip.is_reserved):
        return "public"
    return "private"


def address_allowed(address: str, *, host: str, port: int, allowed_private_hosts) -> bool:
    """The one rule: may a connection for ``host:port`` go to ``address``?"""
    kind = _classify(address)
    if kind == "public":
        return True
    if kind == "never":
        return False
    listed = {entry.strip().lower() for entry in allowed_private_hosts or ()}
    if host not in listed and f"{host}:{port}" not in listed:
        return False
    return operator_allows(host, port, address)


def check_addresses(host: str, port: int, addresses, allowed_private_hosts) -> None:
    """Raise VALIDATION_ERROR unless every address passes ``address_allowed``."""
    host = host.lower().rstrip(".")
    if host in METADATA_HOSTS:
        raise _error(f"{host} is a cloud metadata endpoint")
    for address in addresses:
        if not address_allowed(
            address, host=host, port=port, allowed_private_hosts=allowed_private_hosts
        ):
            raise _error(
                f"{host} resolves to a non-public address; list it in the organization's "
                "allowed_private_hosts for a self-hosted model (link-local and metadata "
                "addresses are never allowed, and the operator's "
                "INFERIA_PRIVATE_HOSTS_ALLOWED must cover it)"
            )


def resolve_host(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _error(f"Host {host} does not resolve") from exc
    # The address of an AF_INET/AF_INET6 result is a str (typeshed allows int for others).
    return sorted({str(info[4][0]) for info in infos})


def host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    return host, parts.port or (443 if parts.scheme == "https" else 80)


def check_base_url(url: str, *, allowed_private_hosts: list[str]) -> str:
    """Return the normalized URL or raise VALIDATION_ERROR."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise _error("Use an http or https URL")
    if parts.username or parts.password:
        raise _error("Credentials in the URL are not allowed; use the secret field")
    if parts.query or parts.fragment:
        raise _error("Query strings and fragments are not allowed in a base URL")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise _error("The URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise _error("Invalid port") from exc
    check_addresses(host, port, resolve_host(host, port), allowed_private_hosts)
    return parts.geturl().rstrip("/")
