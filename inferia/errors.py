"""Error codes, the one exception family, and the renderers of the error envelope.

Every failure leaves the server as
``{"error": {"code": ..., "message": ..., "details": ...}}``. Services raise
``InferiaError`` subclasses; views never build error JSON themselves.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

logger = logging.getLogger("inferia.errors")


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED"
    OTP_REQUIRED = "OTP_REQUIRED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    TWO_FACTOR_REQUIRED = "TWO_FACTOR_REQUIRED"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    CONFLICT = "CONFLICT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    RATE_LIMITED = "RATE_LIMITED"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    UPSTREAM_ERROR = "UPSTREAM_ERROR"
    UPSTREAM_TIMEOUT = "UPSTREAM_TIMEOUT"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class InferiaError(Exception):
    """Base of every error a client may see; carries code, message, details, status."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    status: int = 500
    default_message = "Internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
        retry_after: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.retry_after = retry_after
        super().__init__(self.message)


class ValidationError(InferiaError):
    code, status, default_message = ErrorCode.VALIDATION_ERROR, 400, "Invalid input"


class AuthenticationFailed(InferiaError):
    code, status, default_message = (
        ErrorCode.AUTHENTICATION_FAILED,
        401,
        "Invalid credentials",
    )


class OtpRequired(InferiaError):
    code, status, default_message = (
        ErrorCode.OTP_REQUIRED,
        401,
        "A one-time code from your authenticator app is required",
    )


class PermissionDenied(InferiaError):
    code, status, default_message = ErrorCode.PERMISSION_DENIED, 403, "Permission denied"


class TwoFactorRequired(InferiaError):
    code, status, default_message = (
        ErrorCode.TWO_FACTOR_REQUIRED,
        403,
        "This organization requires two-factor authentication; set it up at /api/v1/auth/2fa/setup",
    )


class NotFound(InferiaError):
    code, status, default_message = ErrorCode.NOT_FOUND, 404, "Not found"


class Conflict(InferiaError):
    code, status, default_message = ErrorCode.CONFLICT, 409, "Conflict"


class PayloadTooLarge(InferiaError):
    code, status, default_message = (
        ErrorCode.PAYLOAD_TOO_LARGE,
        413,
        "Request body is too large",
    )


class RateLimited(InferiaError):
    code, status, default_message = ErrorCode.RATE_LIMITED, 429, "Too many requests"


class UpstreamError(InferiaError):
    """A service we call on the caller's behalf (an identity provider) failed."""

    code, status, default_message = ErrorCode.UPSTREAM_ERROR, 502, "The upstream service failed"


class ServiceUnavailable(InferiaError):
    code, status, default_message = (
        ErrorCode.SERVICE_UNAVAILABLE,
        503,
        "Service temporarily unavailable",
    )


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": str(code), "message": message, "details": details}}


def error_response(
    code: str, message: str, status: int, details: Any = None, retry_after: int | None = None
) -> JsonResponse:
    response = JsonResponse(error_body(code, message, details), status=status)
    if retry_after is not None:
        response["Retry-After"] = str(max(1, int(retry_after)))
    return response


def database_unavailable(exc: Exception) -> ServiceUnavailable:
    """Fail closed: nothing is allowed when the database (or the shared store) cannot
    answer (503, retry in 5 s). The one rule for DRF views and for what fails around them (the request's
    own audit record, middleware): never a 500."""
    logger.error("database unavailable: %s", type(exc).__name__)
    return ServiceUnavailable(retry_after=5)


def response_for_error(error: InferiaError) -> JsonResponse:
    return error_response(error.code, error.message, error.status, error.details, error.retry_after)


def _flatten_details(detail: Any) -> Any:
    """DRF ErrorDetail trees -> plain {field: [messages]}."""
    if isinstance(detail, dict):
        return {str(key): _flatten_details(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten_details(item) for item in detail]
    return str(detail)


_DRF_MAP: list[tuple[type[Exception], ErrorCode, int]] = [
    (drf_exceptions.NotAuthenticated, ErrorCode.AUTHENTICATION_FAILED, 401),
    (drf_exceptions.AuthenticationFailed, ErrorCode.AUTHENTICATION_FAILED, 401),
    (drf_exceptions.PermissionDenied, ErrorCode.PERMISSION_DENIED, 403),
    (drf_exceptions.NotFound, ErrorCode.NOT_FOUND, 404),
    (drf_exceptions.MethodNotAllowed, ErrorCode.METHOD_NOT_ALLOWED, 405),
    (drf_exceptions.NotAcceptable, ErrorCode.VALIDATION_ERROR, 406),
    (drf_exceptions.UnsupportedMediaType, ErrorCode.UNSUPPORTED_MEDIA_TYPE, 415),
    (drf_exceptions.Throttled, ErrorCode.RATE_LIMITED, 429),
]


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """The one DRF exception handler: every exception becomes the envelope."""
    headers: dict[str, str] = {}
    if isinstance(exc, InferiaError):
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, int(exc.retry_after)))
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return Response(
            error_body(exc.code, exc.message, exc.details), status=exc.status, headers=headers
        )
    if isinstance(exc, drf_exceptions.ValidationError):
        details = _flatten_details(exc.detail)
        if isinstance(details, list):
            details = {"non_field_errors": details}
        return Response(
            error_body(ErrorCode.VALIDATION_ERROR, "Invalid input", details), status=400
        )
    if isinstance(exc, drf_exceptions.ParseError):
        return Response(
            error_body(ErrorCode.VALIDATION_ERROR, f"Malformed request body: {exc.detail}"),
            status=400,
        )
    if isinstance(exc, Http404):
        return Response(error_body(ErrorCode.NOT_FOUND, "Not found"), status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return Response(error_body(ErrorCode.PERMISSION_DENIED, "Permission denied"), status=403)
    from inferia.store.windows import StoreUnavailable

    if isinstance(exc, DatabaseError | StoreUnavailable):
        # Fail closed: nothing is allowed when the database (or the shared store:
        # login throttles, epochs) cannot answer.
        error = database_unavailable(exc)
        return Response(
            error_body(error.code, error.message),
            status=error.status,
            headers={"Retry-After": str(error.retry_after)},
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body(ErrorCode.PAYLOAD_TOO_LARGE, "Request body is too large"), status=413
        )
    for exc_type, code, status in _DRF_MAP:
        if isinstance(exc, exc_type):
            detail = getattr(exc, "detail", "")
            message = str(detail) if detail else code.title()
            if isinstance(exc, drf_exceptions.Throttled):
                # DRF's Throttled.__init__ sets .wait; djangorestframework-stubs omit it.
                wait = exc.wait  # type: ignore[attr-defined]
                if wait:
                    headers["Retry-After"] = str(int(wait) + 1)
            if status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="api"'
                from inferia.authentication import CREDENTIAL_HELP

                message = f"Authentication credentials were not provided or are invalid. {CREDENTIAL_HELP}"
            return Response(error_body(code, message), status=status, headers=headers)
    request = context.get("request")
    request_id = getattr(request, "request_id", None) if request is not None else None
    logger.exception("unhandled error request_id=%s", request_id)
    return Response(
        error_body(ErrorCode.INTERNAL_ERROR, f"Internal error (request id {request_id})", None),
        status=500,
    )


# Django-level handlers, for failures outside DRF (unknown URL, crash in a page).
def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(ErrorCode.VALIDATION_ERROR, "Bad request", 400)


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(ErrorCode.PERMISSION_DENIED, "Permission denied", 403)


def _is_api_path(path: str) -> bool:
    """Clients of the REST API and the gateway get the JSON envelope; people get pages."""
    return path.startswith(("/api/", "/healthz", "/readyz"))


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api_path(request.path):
        return error_response(ErrorCode.NOT_FOUND, "Not found", 404)
    # A dashboard URL nobody routes: the site's own 404 page, not JSON.
    from django.shortcuts import render

    return render(
        request,
        "errors/error.html",
        {"status": 404, "title": "Not found", "message": ""},
        status=404,
    )


def handler500(request: HttpRequest) -> JsonResponse:
    request_id = getattr(request, "request_id", None)
    return error_response(
        ErrorCode.INTERNAL_ERROR, f"Internal error (request id {request_id})", 500
    )
