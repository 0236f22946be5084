"""The operator's cap on the private hosts orgs may list (``INFERIA_PRIVATE_HOSTS_ALLOWED``).

Shared plumbing so that both the org settings (``orgs``: refuse an entry the cap
does not cover when it is saved) and the SSRF guard (``keys.ssrf``: check every
resolved address at connect time) read one rule. Cap entries are ``*``, a host,
a ``host:port`` or a CIDR; a host entry covers every port of that host.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def _split(entry: str) -> tuple[str, int | None]:
    """``host[:port]`` (``[v6]:port`` or a bare IPv6 address too) into host and port."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, int(port) if port.isdigit() else None
    return entry, None


def operator_allows(host: str, port: int, address: str) -> bool:
    """May a connection for ``host:port`` (an org listed it) go to private ``address``?"""
    for entry in settings.INFERIA_PRIVATE_HOSTS_ALLOWED:
        entry = entry.strip().lower()
        if entry == "*" or entry in (host, f"{host}:{port}"):
            return True
        if "/" in entry:
            try:
                network = ipaddress.ip_network(entry, strict=False)
                ip = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                continue
            if ip.version == network.version and ip in network:
                return True
    return False


def listing_error(entry: str) -> str | None:
    """Why an org may not list ``entry`` in ``allowed_private_hosts`` (None: it may).

    A host name under a CIDR cap is accepted here (its addresses are only known
    when resolved) and checked at every connection.
    """
    host, port = _split(entry)
    if not host:
        return f"{entry!r} is not a host or host:port"
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    for cap in settings.INFERIA_PRIVATE_HOSTS_ALLOWED:
        cap = cap.strip().lower()
        if cap == "*":
            return None
        if "/" in cap:
            try:
                network = ipaddress.ip_network(cap, strict=False)
            except ValueError:
                continue
            if literal is None or (literal.version == network.version and literal in network):
                return None
            continue
        cap_host, cap_port = _split(cap)
        if cap_host == host and (cap_port is None or cap_port == port):
            return None
    return f"{entry} is not among the hosts the operator lets organizations list"
