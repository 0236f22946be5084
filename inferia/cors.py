"""Cross-origin (CORS) policy: one decision for the REST API and the gateway.

The operator lists exact origins (``INFERIA_CORS_ORIGINS``, read in
``inferia.settings``); nothing is allowed by default. ``cors_headers`` is the
one function deciding whether an origin may read a response and which
``Access-Control-*`` headers to send. Django applies it through
``CorsMiddleware`` (django-cors-headers' middleware with this decision) on
``CORS_URLS_REGEX`` paths; the gateway's plain ASGI app through ``gateway.cors``.

Invariants: an origin is never reflected unless it is listed (or ``*`` is
configured, which then answers ``*`` itself); ``*`` with credentials is refused
at startup (``inferia.cors_policy.validate_origins``); a disallowed origin gets no ``Access-Control-*``
header at all, only ``Vary: Origin``.
"""

from __future__ import annotations

from corsheaders.middleware import CorsMiddleware as _CorsHeadersMiddleware
from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.cache import patch_vary_headers


def origin_allowed(origin: str | None) -> bool:
    """Whether ``origin`` (the request's ``Origin`` header) may read responses."""
    if not origin:
        return False
    if settings.CORS_ALLOW_ALL_ORIGINS:
        return True
    return origin in settings.CORS_ALLOWED_ORIGINS


def cors_headers(origin: str | None, *, preflight: bool) -> list[tuple[str, str]]:
    """The ``Access-Control-*`` headers for a response to ``origin``; empty when the
    origin is not allowed. ``preflight`` (an OPTIONS request) adds the allowed
    methods, headers and max age. ``Vary: Origin`` is the caller's, on every response."""
    if not origin_allowed(origin):
        return []
    assert origin is not None  # noqa: S101 - origin_allowed refuses None
    headers = [
        (
            "Access-Control-Allow-Origin",
            "*" if settings.CORS_ALLOW_ALL_ORIGINS else origin,
        )
    ]
    if settings.CORS_ALLOW_CREDENTIALS:
        headers.append(("Access-Control-Allow-Credentials", "true"))
    if settings.CORS_EXPOSE_HEADERS:
        headers.append(("Access-Control-Expose-Headers", ", ".join(settings.CORS_EXPOSE_HEADERS)))
    if preflight:
        headers.append(("Access-Control-Allow-Headers", ", ".join(settings.CORS_ALLOW_HEADERS)))
        headers.append(("Access-Control-Allow-Methods", ", ".join(settings.CORS_ALLOW_METHODS)))
        if settings.CORS_PREFLIGHT_MAX_AGE:
            headers.append(("Access-Control-Max-Age", str(settings.CORS_PREFLIGHT_MAX_AGE)))
    return headers


class CorsMiddleware(_CorsHeadersMiddleware):
    """django-cors-headers (preflight short-circuit, ``CORS_URLS_REGEX``, sync and
    async) with the headers decided by ``cors_headers``, as on the gateway."""

    def add_response_headers(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        enabled = getattr(request, "_cors_enabled", None)
        if enabled is None:
            enabled = self.is_enabled(request)
        if not enabled:
            return response
        patch_vary_headers(response, ("origin",))
        for name, value in cors_headers(
            request.headers.get("origin"), preflight=request.method == "OPTIONS"
        ):
            response[name] = value
        return response
