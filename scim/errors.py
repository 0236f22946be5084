"""SCIM's error shape (RFC 7644 section 3.12) for everything under ``/scim/v2``.

Identity providers parse ``{"schemas": [ERROR_SCHEMA], "status": "409", "scimType":
"uniqueness", "detail": "..."}``, not the contract's envelope, so the SCIM edge
renders the same exception family (``inferia.errors``) in this shape instead.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

from inferia.errors import Conflict, InferiaError, ValidationError, database_unavailable

logger = logging.getLogger("inferia.errors")

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
SCIM_MEDIA_TYPE = "application/scim+json"


class ScimInvalid(ValidationError):
    """A request SCIM refuses with a ``scimType`` (invalidSyntax, invalidValue,
    invalidPath, noTarget, mutability, tooMany)."""

    def __init__(self, message: str, *, scim_type: str = "invalidValue", details: Any = None):
        super().__init__(message, details=details)
        self.scim_type = scim_type


def scim_type_of(error: InferiaError) -> str | None:
    from scim.filters import InvalidFilter
    from scim.services import Uniqueness

    if isinstance(error, ScimInvalid):
        return error.scim_type
    if isinstance(error, InvalidFilter):
        return "invalidFilter"
    if isinstance(error, Uniqueness):
        return "uniqueness"
    if isinstance(error, ValidationError):
        return "invalidValue"
    if isinstance(error, Conflict):
        return None
    return None


def _detail(message: str, details: Any) -> str:
    if isinstance(details, dict) and details:
        parts = []
        for field, messages in details.items():
            listed = messages if isinstance(messages, list) else [messages]
            parts.append(f"{field}: {' '.join(str(m) for m in listed)}")
        return f"{message} ({'; '.join(parts)})"
    return message


def scim_error_body(status: int, detail: str, scim_type: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return body


def scim_error_response(
    status: int, detail: str, scim_type: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        scim_error_body(status, detail, scim_type),
        status=status,
        headers=headers,
        content_type=SCIM_MEDIA_TYPE,
    )


_DRF_MAP: list[tuple[type[Exception], int, str | None]] = [
    (drf_exceptions.ParseError, 400, "invalidSyntax"),
    (drf_exceptions.NotAuthenticated, 401, None),
    (drf_exceptions.AuthenticationFailed, 401, None),
    (drf_exceptions.PermissionDenied, 403, None),
    (drf_exceptions.NotFound, 404, None),
    (drf_exceptions.MethodNotAllowed, 405, None),
    (drf_exceptions.NotAcceptable, 406, None),
    (drf_exceptions.UnsupportedMediaType, 415, None),
]


def scim_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """The SCIM edge's DRF exception handler: every exception in SCIM's error shape."""
    headers: dict[str, str] = {}
    if isinstance(exc, InferiaError):
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, int(exc.retry_after)))
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="scim"'
        return scim_error_response(
            exc.status, _detail(exc.message, exc.details), scim_type_of(exc), headers
        )
    if isinstance(exc, DatabaseError):
        error = database_unavailable(exc)
        return scim_error_response(
            error.status, error.message, None, {"Retry-After": str(error.retry_after)}
        )
    for exc_type, status, scim_type in _DRF_MAP:
        if isinstance(exc, exc_type):
            detail = str(getattr(exc, "detail", "")) or exc_type.__name__
            if status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="scim"'
            return scim_error_response(status, detail, scim_type, headers)
    request = context.get("request")
    request_id = getattr(request, "request_id", None) if request is not None else None
    logger.exception("unhandled SCIM error request_id=%s", request_id)
    return scim_error_response(500, f"Internal error (request id {request_id})")
