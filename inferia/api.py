"""Shared REST plumbing: bearer authentication, pagination and the org-scoped base view.

``OrgAPIView`` hands the credential and ``{org}`` to the one resolver
(``keys.resolver``: membership, delegation, key scopes, 2FA policy), checks the declared
``required_permissions`` and activates the tenant scope. It owns
``get_queryset``/``get_object``; endpoints implement ``get_scoped_queryset``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar, cast

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from rest_framework import generics
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from audit import services as audit

# Re-exported: the DRF settings name them here.
from inferia.authentication import (  # noqa: E402,F401
    CREDENTIAL_HELP,
    BearerAuthentication,
    Pagination,
    bearer_credential,
    presents_credential,
)
from inferia.errors import (
    AuthenticationFailed,
    NotFound,
    PermissionDenied,
    TwoFactorRequired,
    ValidationError,
)
from inferia.request_meta import RequestMeta
from inferia.request_types import OrgAPIRequest
from inferia.serializers import InputSerializer, unknown_fields
from orgs.access import Access
from orgs.scoping import activate, deactivate

# Any member of the org may call it; the service applies finer rules (e.g. "own").
ANY_MEMBER = "*member"


def request_meta(request: Request) -> RequestMeta | None:
    """What a service records about this API request (ip, user agent, request id,
    credential kind): services take this, never the request."""
    return RequestMeta.from_http(request._request)


def request_access(request: Request) -> Access:
    """The ``Access`` that ``OrgAPIView.initial`` resolved for this request.

    Permission classes get DRF's plain ``Request``; a request that reached them
    without an Access (a view wired outside ``OrgAPIView``) is refused, never let through.
    """
    access = getattr(request, "access", None)
    if not isinstance(access, Access):
        raise AuthenticationFailed(
            f"Authentication credentials were not provided. {CREDENTIAL_HELP}"
        )
    return access


class RequiredPermission(BasePermission):
    """Enforce ``view.required_permissions[method]``; no declaration means refusal."""

    def has_permission(self, request: Request, view: Any) -> bool:
        method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
        if method is None:
            raise PermissionDenied("A request without a method is not allowed")
        if not hasattr(view, method.lower()):
            return True  # let DRF answer 405
        permission = view.required_permissions.get(method)
        access = request_access(request)
        if permission is None:
            raise PermissionDenied(f"{method} is not allowed here")
        if permission == ANY_MEMBER:
            return True
        if not access.can(permission):
            audit.record(
                action=permission,
                outcome="denied",
                org=access.org,
                actor=access.user,
                actor_label=access.actor_label,
                status_code=403,
                meta=request_meta(request),
                data={"path": request.path, "method": request.method},
            )
            raise PermissionDenied(f"Missing permission {permission}")
        return True


class SignedInUser(BasePermission):
    """A user with an access token; API keys are for org endpoints only."""

    def has_permission(self, request: Request, view: Any) -> bool:
        from keys.models import ApiKey

        if isinstance(request.auth, ApiKey):
            raise PermissionDenied("API keys cannot be used here; sign in as a user")
        if request.user is None:
            raise AuthenticationFailed(
                f"Authentication credentials were not provided. {CREDENTIAL_HELP}"
            )
        return True


class HasPrincipal(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        if request.auth is None:
            raise AuthenticationFailed(
                f"Authentication credentials were not provided. {CREDENTIAL_HELP}"
            )
        return True


def _outcome(status: int) -> str:
    if status < 400:
        return "allowed"
    return "denied" if status in (401, 403, 404, 405, 409, 429) else "failure"


class AuditedRequestMixin:
    """Every request that presented credentials leaves one audit record.

    Services record what they change; a request that recorded nothing (a read,
    a refusal before any service ran) gets one record here, named after the
    permission it needed (or ``api:<view>`` outside an org).
    """

    def _audit_dispatch(self, request: HttpRequest, handler, *args: Any, **kwargs: Any):
        started = time.perf_counter()
        before = audit.recorded_count()
        response = handler(request, *args, **kwargs)
        if audit.recorded_count() == before and presents_credential(request):
            access = getattr(request, "access", None)
            method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
            declared = getattr(self, "required_permissions", {}).get(method)
            action = (
                declared if declared and declared != ANY_MEMBER else f"api:{type(self).__name__}"
            )
            user = getattr(request, "user", None)
            audit.record(
                action=action,
                outcome=_outcome(response.status_code),
                org=access.org if access is not None else None,
                actor=access.user
                if access is not None
                else (user if getattr(user, "pk", None) else None),
                actor_label=access.actor_label if access is not None else "",
                status_code=response.status_code,
                target_type="path",
                target_id=request.path[:100],
                meta=RequestMeta.from_http(request),
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        return response


class JsonErrorsMixin:
    """Errors are JSON in the envelope whatever format was asked: an audit export
    (``?format=csv``) that fails answers ``application/json``, not a CSV rendering."""

    def handle_exception(self, exc: Exception):
        response = super().handle_exception(exc)  # type: ignore[misc]
        request = getattr(self, "request", None)
        if isinstance(request, Request):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return response


class RawBody:
    """``input_serializers`` value: the handler parses a body of its own format
    (the YAML import) and refuses unknown keys itself."""


RAW_BODY = RawBody()
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
InputDeclaration = type[InputSerializer] | RawBody | None


class InputGrammarMixin:
    """One grammar for every write: the body may hold only the declared fields.

    ``input_serializers`` maps each write method to its ``InputSerializer``
    (``None``: the method takes no body; ``RAW_BODY``: the handler parses it).
    Before any handler runs, a key the serializer does not take (read-only
    fields included) is a VALIDATION_ERROR naming it. A POST/PUT/PATCH without a
    declaration takes no body (default deny; ``inferia.checks`` also refuses to
    start with an undeclared one); a DELETE body is checked only when declared.
    OPTIONS describes the endpoint without reading any credential.
    """

    input_serializers: ClassVar[dict[str, InputDeclaration]] = {}

    def _input_declaration(self, method: str) -> InputDeclaration:
        return self.input_serializers.get(method)

    def check_input(self, request: Request) -> None:
        method = request.method or ""
        if method not in WRITE_METHODS or not hasattr(self, method.lower()):
            return  # DRF answers 405 for a method the view does not handle
        declared = self._input_declaration(method)
        if isinstance(declared, RawBody):
            return
        if declared is None and method == "DELETE":
            return  # a DELETE body has no meaning unless the view declares one
        data = request.data
        if declared is None:
            if isinstance(data, Mapping):
                if data:
                    details = unknown_fields(None, data)
                    raise ValidationError(
                        f"{method} here takes no fields: {', '.join(details)}", details=details
                    )
            elif data not in (None, "", b""):
                raise ValidationError(f"{method} here takes no request body")
            return
        unknown = unknown_fields(declared(), data)
        if unknown:
            raise ValidationError(f"Unknown field(s): {', '.join(unknown)}", details=unknown)

    def input(self, request: Request, **kwargs: Any) -> dict[str, Any]:
        """The validated body of this request, by the method's declared serializer."""
        declared = self._input_declaration(request.method or "")
        if declared is None or isinstance(declared, RawBody):
            raise ImproperlyConfigured(
                f"{type(self).__name__} declares no input serializer for {request.method}"
            )
        serializer = declared(data=request.data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def options_initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """``APIView.initial`` for OPTIONS: negotiation only, no credential, no permission.

        The answer (methods and the declared input fields) is the same for every
        caller and tenant, like the public OpenAPI schema.
        """
        view = cast(generics.GenericAPIView, self)
        view.format_kwarg = view.get_format_suffix(**kwargs)
        request.accepted_renderer, request.accepted_media_type = view.perform_content_negotiation(
            request
        )
        request.version, request.versioning_scheme = view.determine_version(
            request, *args, **kwargs
        )


class UserAPIView(JsonErrorsMixin, AuditedRequestMixin, InputGrammarMixin, generics.GenericAPIView):
    """An endpoint for a signed-in user, outside an organization."""

    permission_classes = [SignedInUser]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any):
        return self._audit_dispatch(request, super().dispatch, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if request.method == "OPTIONS":
            self.options_initial(request, *args, **kwargs)
            return
        super().initial(request, *args, **kwargs)
        self.check_input(request)


class ScopedRequestMixin(AuditedRequestMixin):
    """``dispatch`` for views whose ``initial`` activates a tenant scope (``_scope_token``):
    the request is audited, and the scope ends with it whatever happened."""

    _scope_token: Any = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any):
        self._scope_token = None
        try:
            return self._audit_dispatch(request, super().dispatch, *args, **kwargs)  # type: ignore[misc]
        finally:
            if self._scope_token is not None:
                deactivate(self._scope_token)


class OrgAPIView(JsonErrorsMixin, ScopedRequestMixin, InputGrammarMixin, generics.GenericAPIView):
    """Base of every ``/api/v1/orgs/{org}/...`` endpoint."""

    required_permissions: ClassVar[dict[str, str]] = {}
    permission_classes = [HasPrincipal, RequiredPermission]
    # Past ``initial()`` the request carries the resolved ``access``.
    request: OrgAPIRequest
    lookup_field = "pk"
    lookup_url_kwarg = "id"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for owned in ("get_queryset", "get_object", "initial", "dispatch"):
            if owned in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} overrides {owned}; implement get_scoped_queryset instead"
                )

    def get_scoped_queryset(self):
        raise ImproperlyConfigured(f"{type(self).__name__} must implement get_scoped_queryset")

    def get_queryset(self):
        return self.get_scoped_queryset()

    def get_object(self):
        queryset = self.filter_queryset(self.get_queryset())
        obj = queryset.filter(pk=self.kwargs[self.lookup_url_kwarg]).first()
        if obj is None:
            raise NotFound()
        return obj

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        from keys import resolver

        if request.method == "OPTIONS":
            self.options_initial(request, *args, **kwargs)
            return
        self.perform_authentication(request)
        credential = getattr(request._request, "credential", None)
        if request.auth is None or credential is None:
            raise AuthenticationFailed(
                f"Authentication credentials were not provided. {CREDENTIAL_HELP}"
            )
        # The one resolver decides; this edge only audits a 2FA refusal and answers.
        try:
            access = resolver.resolve_slug(credential, kwargs.get("org", ""))
        except TwoFactorRequired as exc:
            refused: Access = exc.access  # type: ignore[attr-defined]
            audit.record(
                action="auth:2fa_required",
                outcome="denied",
                org=refused.org,
                actor=refused.user,
                actor_label=refused.actor_label,
                status_code=403,
                meta=request_meta(request),
                data={"path": request.path, "method": request.method},
            )
            raise
        org_request = cast(OrgAPIRequest, request)
        org_request.access = access
        org_request._request.access = access
        self._scope_token = activate(access.org)
        super().initial(request, *args, **kwargs)
        self.check_input(request)
