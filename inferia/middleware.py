"""Request id, body size limit, and the error envelope for Django's own failures."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from inferia.errors import ErrorCode, database_unavailable, error_response, response_for_error
from inferia.request_meta import request_id_from

if TYPE_CHECKING:
    from inferia.request_types import InferiaRequest


def _wants_envelope(request: HttpRequest) -> bool:
    # /scim/ answers in SCIM's own error shape (scim/errors.py), which identity providers parse.
    return not request.path.startswith(("/admin/", "/static/", "/scim/"))


class RequestIdMiddleware:
    """Echo a sane client ``X-Request-ID`` or mint one; put it on every response.

    Also turns Django's bare 405 responses (outside DRF) into the error envelope.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: InferiaRequest) -> HttpResponse:
        request.request_id = request_id_from(request.headers.get("X-Request-ID"))
        response = self.get_response(request)
        if (
            response.status_code == 405
            and _wants_envelope(request)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            allow = response.get("Allow")
            response = error_response(
                ErrorCode.METHOD_NOT_ALLOWED, f"Method {request.method} not allowed", 405
            )
            if allow:
                response["Allow"] = allow
        response["X-Request-ID"] = request.request_id
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RequestDataTooBig):
            return error_response(ErrorCode.PAYLOAD_TOO_LARGE, "Request body is too large", 413)
        if isinstance(exception, DatabaseError) and _wants_envelope(request):
            # Outside a DRF view's own handler (e.g. writing the request's audit record).
            return response_for_error(database_unavailable(exception))
        return None


def _view_body_limit(request: HttpRequest) -> int | None:
    """The larger body a view allows for this method, if it declares one: a view (class or
    function) with ``body_limit_bytes(method) -> int | None`` (the document upload)."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return None
    view = getattr(match.func, "view_class", match.func)
    allowance = getattr(view, "body_limit_bytes", None)
    return allowance(request.method or "") if callable(allowance) else None


class BodySizeLimitMiddleware:
    """Refuse a declared body over ``INFERIA_MAX_BODY_BYTES`` before reading it, unless
    the view it is for allows more (only ever more, and only for itself)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.INFERIA_MAX_BODY_BYTES  # per request: settings may change at run time
        declared = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(declared)
        except ValueError:
            return error_response(ErrorCode.VALIDATION_ERROR, "Invalid Content-Length", 400)
        if length < 0:
            return error_response(ErrorCode.VALIDATION_ERROR, "Invalid Content-Length", 400)
        if length > limit:
            # Resolved only for a body over the general limit: the usual request pays nothing.
            limit = max(limit, _view_body_limit(request) or 0)
        if length > limit:
            return error_response(
                ErrorCode.PAYLOAD_TOO_LARGE, f"Request body is larger than {limit} bytes", 413
            )
        return self.get_response(request)


class SessionLifetimeMiddleware:
    """Signs a Django session out (dashboard and admin) once its login was ended
    elsewhere (logout, "end other sessions", deactivation) or outlived
    ``INFERIA_SESSION_ABSOLUTE_HOURS``. Runs after AuthenticationMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from django.contrib.auth import logout
        from django.contrib.auth.models import AnonymousUser

        from orgs.services.auth import dashboard_session_valid

        if request.user.is_authenticated and not dashboard_session_valid(request):
            logout(request)
            request.user = AnonymousUser()
        return self.get_response(request)
