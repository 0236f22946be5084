"""What services and the audit log need to know about a request, without the request.

Services take ``meta: RequestMeta | None``, never an ``HttpRequest``: the
dashboard and the API build it with ``RequestMeta.from_http(request)``, the
gateway (a plain ASGI app) with ``RequestMeta.from_asgi(scope, request_id=...)``,
jobs and commands pass ``None``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_from(incoming: str | None, fallback: str | None = None) -> str:
    """The request id to echo: the caller's ``X-Request-ID`` when it is well formed
    (1-128 of ``A-Za-z0-9._:-``), else ``fallback`` or a fresh one. One rule for the
    Django edge and the gateway."""
    if incoming and _REQUEST_ID_RE.match(incoming):
        return incoming
    return fallback or uuid.uuid4().hex


def client_ip_from(remote: str | None, forwarded: str) -> str | None:
    """The client address; X-Forwarded-For is honoured only from trusted proxies."""
    if forwarded and remote in settings.INFERIA_TRUSTED_PROXIES:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        for hop in reversed(hops):
            if hop not in settings.INFERIA_TRUSTED_PROXIES:
                return hop
    return remote


def asgi_headers(scope: dict) -> dict[str, str]:
    """An ASGI scope's headers by lower-case name, repeated ones joined by commas."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


@dataclass(frozen=True)
class RequestMeta:
    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""
    # orgs.access.SESSION, ACCESS_TOKEN or API_KEY; "" when nobody is known yet.
    credential_kind: str = ""
    # The login family of the acting session or access token (None for API keys, jobs
    # and anonymous requests): "end the other sessions" keeps this one.
    family: str | None = None
    # scheme://host[:port] the client addressed (Host validated against ALLOWED_HOSTS);
    # "" for jobs, commands and the gateway. Links in mails follow it (public_url).
    base_url: str = ""

    @classmethod
    def from_http(cls, request: Any) -> RequestMeta | None:
        """From a Django ``HttpRequest`` or a DRF ``Request`` (None passes through)."""
        if request is None:
            return None
        if isinstance(request, RequestMeta):
            return request
        meta = request.META
        credential = getattr(request, "credential", None)
        access = getattr(request, "access", None)
        if credential is not None:
            kind = credential.kind
        elif access is not None:
            kind = access.credential_kind
        else:
            user = getattr(request, "user", None)
            kind = "session" if getattr(user, "is_authenticated", False) else ""
        return cls(
            ip=client_ip_from(
                meta.get("REMOTE_ADDR") or None, meta.get("HTTP_X_FORWARDED_FOR", "")
            ),
            user_agent=meta.get("HTTP_USER_AGENT", ""),
            request_id=getattr(request, "request_id", "") or "",
            credential_kind=kind,
            family=_login_family(request),
            base_url=_base_url(request),
        )

    @classmethod
    def from_asgi(
        cls,
        scope: dict,
        *,
        request_id: str = "",
        credential_kind: str = "",
        headers: dict[str, str] | None = None,
    ) -> RequestMeta:
        """From an ASGI HTTP scope (the gateway); ``headers``: the scope's headers by
        lower-case name (repeated ones joined by commas) when the caller has them."""
        if headers is None:
            headers = asgi_headers(scope)
        client = scope.get("client")
        return cls(
            ip=client_ip_from(client[0] if client else None, headers.get("x-forwarded-for", "")),
            user_agent=headers.get("user-agent", ""),
            request_id=request_id,
            credential_kind=credential_kind,
        )


def _base_url(request: Any) -> str:
    """``scheme://host:port`` of the request; "" when the Host header is not allowed."""
    from django.core.exceptions import DisallowedHost

    try:
        return f"{request.scheme}://{request.get_host()}"
    except (DisallowedHost, AttributeError, KeyError):
        return ""


def public_url(meta: RequestMeta | None) -> str:
    """The base of absolute links in mails: ``INFERIA_PUBLIC_URL`` when set, else the
    host and port the request that caused the mail addressed, else the local server's
    port (``INFERIA_LOCAL_URL``, from ``$PORT``)."""
    if settings.INFERIA_PUBLIC_URL:
        return settings.INFERIA_PUBLIC_URL
    if meta is not None and meta.base_url:
        return meta.base_url
    return settings.INFERIA_LOCAL_URL


def _login_family(request: Any) -> str | None:
    """The access JWT's ``fam`` claim (DRF sets ``request.auth`` on the Django request
    too), the API credential's family (``keys.resolver.Credential``), else the signed-in
    dashboard session's family."""
    from rest_framework_simplejwt.tokens import AccessToken

    from orgs.services.auth import FAMILY_CLAIM, SESSION_FAMILY_KEY

    token = getattr(request, "auth", None)
    if isinstance(token, AccessToken):
        claim = token.get(FAMILY_CLAIM)
        return str(claim) if claim else None
    family = getattr(token, "family", None)
    if family:
        return str(family)
    session = getattr(request, "session", None)
    user = getattr(request, "user", None)
    if session is not None and user is not None and user.is_authenticated:
        return session.get(SESSION_FAMILY_KEY)
    return None
