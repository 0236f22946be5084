"""Where an API sign-in may end: a loopback address of the client's own machine
(RFC 8252 section 7.3), never another host, so the one-time code cannot be sent away."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from inferia.errors import ValidationError


def loopback_redirect_uri(value: str) -> str:
    """``http://127.0.0.1:PORT/path`` or ``http://[::1]:PORT/path`` (``localhost`` too);
    no credentials, query or fragment. Raises VALIDATION_ERROR on ``redirect_uri``."""
    parts = urlsplit(value.strip())
    problem = None
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port, problem = None, "Invalid port."
    if parts.scheme != "http":
        problem = "Use http on a loopback address (RFC 8252)."
    elif host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                problem = "Only a loopback address (127.0.0.1, [::1], localhost) is allowed."
        except ValueError:
            problem = "Only a loopback address (127.0.0.1, [::1], localhost) is allowed."
    if problem is None and (parts.username or parts.password or parts.query or parts.fragment):
        problem = "No credentials, query or fragment."
    if problem is None and port is None:
        problem = "Give the port your client listens on."
    if problem:
        raise ValidationError("Invalid redirect_uri", details={"redirect_uri": [problem]})
    return parts.geturl()
