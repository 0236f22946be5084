"""CORS defaults and the startup validation of ``INFERIA_CORS_ORIGINS`` (imported by
``inferia.settings``, so it imports nothing of Django but its exception)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

DEFAULT_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Ours, plus what the official OpenAI and Anthropic SDKs send from a browser.
DEFAULT_HEADERS = (
    "Authorization",
    "Content-Type",
    "X-API-Key",
    "api-key",
    "X-Request-ID",
    "OpenAI-Organization",
    "OpenAI-Project",
    "OpenAI-Beta",
    "X-Stainless-Lang",
    "X-Stainless-Package-Version",
    "X-Stainless-OS",
    "X-Stainless-Arch",
    "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version",
    "X-Stainless-Retry-Count",
    "X-Stainless-Timeout",
    "X-Stainless-Async",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
)
# Response headers a browser script may read (rate limits, request id, overhead).
EXPOSE_HEADERS = (
    "X-Request-ID",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Limit-Tokens",
    "X-RateLimit-Remaining-Tokens",
    "X-Inferia-Overhead-Ms",
)


def validate_origins(values: list[str], *, allow_credentials: bool) -> list[str]:
    """The configured origins, checked: each ``scheme://host[:port]`` exactly (no path,
    no trailing slash), or ``*`` alone. ``*`` with credentials is refused.

    Raises ``ImproperlyConfigured`` with the offending value.
    """
    origins = [value.strip() for value in values if value.strip()]
    if "*" in origins:
        if len(origins) > 1:
            raise ImproperlyConfigured(
                "INFERIA_CORS_ORIGINS: '*' stands alone; list exact origins or '*', not both"
            )
        if allow_credentials:
            raise ImproperlyConfigured(
                "INFERIA_CORS_ORIGINS='*' cannot be combined with "
                "INFERIA_CORS_ALLOW_CREDENTIALS=true: any web site could then make "
                "credentialed requests; list the exact origins instead"
            )
        return origins
    for origin in origins:
        try:
            parts = urlsplit(origin)
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"INFERIA_CORS_ORIGINS: {origin!r} is not an origin"
            ) from exc
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.path
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
            or origin != f"{parts.scheme}://{parts.netloc}".lower()
        ):
            raise ImproperlyConfigured(
                f"INFERIA_CORS_ORIGINS: {origin!r} is not an exact origin "
                "(lower-case scheme://host[:port], no path or trailing slash)"
            )
    return origins
