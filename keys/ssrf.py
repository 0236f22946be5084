"""SSRF guard for provider base URLs.

A base URL whose host resolves to a loopback, private, link-local (cloud
metadata), multicast, reserved or unspecified address is refused unless the
org lists the host (``host`` or ``host:port``) in ``allowed_private_hosts``.
Every resolved address must pass, so a name with one public and one private
address is refused too.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from inferia.errors import ValidationError

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


def _error(message: str) -> ValidationError:
    return ValidationError("Base URL refused", details={"base_url": [message]})


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 carried in IPv6 (::ffff:a.b.c.d, 6to4 2002:aabb:ccdd::) is judged as that IPv4.
        ip = ip.ipv4_mapped or ip.sixtofour or ip
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


def resolve_host(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _error(f"Host {host} does not resolve") from exc
    return sorted({info[4][0] for info in infos})


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
    allowed = {entry.strip().lower() for entry in allowed_private_hosts}
    listed = host in allowed or f"{host}:{port}" in allowed
    if not listed:
        if host in METADATA_HOSTS:
            raise _error(f"{host} is a cloud metadata endpoint")
        for address in resolve_host(host, port):
            if not _is_public(address):
                raise _error(
                    f"{host} resolves to a non-public address; list it in the organization's "
                    "allowed_private_hosts for a self-hosted model"
                )
    return parts.geturl().rstrip("/")
