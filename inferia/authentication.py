"""Bearer authentication and pagination (imported by DRF settings: keep DRF views out)."""

from __future__ import annotations

from typing import cast

from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

from inferia.request_types import BearerHttpRequest


def credential_from(authorization: str, api_key: str) -> str | None:
    """The credential of ``Authorization: Bearer <x>``, else of ``X-API-Key`` (the API's
    and the gateway's one rule)."""
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return credential.strip()
    return api_key.strip() or None


def bearer_credential(request: HttpRequest) -> str | None:
    return credential_from(
        request.META.get("HTTP_AUTHORIZATION", ""), request.META.get("HTTP_X_API_KEY", "")
    )


class BearerAuthentication(BaseAuthentication):
    """An access JWT or an API key, in ``Authorization: Bearer`` or ``X-API-Key``.

    Checked by the one resolver (``keys.resolver.authenticate``): a key, or an
    access JWT (signature, expiry, issuer, audience, type, ``ver``). For a key,
    ``request.auth`` is the ApiKey and ``request.user`` its owner (None for a
    service account); for a JWT ``request.auth`` is the ``resolver.Credential``.
    """

    def authenticate(self, request: Request):
        from audit.services import client_ip
        from keys import principals, resolver

        raw = bearer_credential(request._request)
        if raw is None:
            return None
        credential = resolver.authenticate(raw)
        # OrgAPIView resolves this credential in the path's org (keys.resolver.resolve).
        django_request = cast(BearerHttpRequest, request._request)
        django_request.credential = credential
        if credential.api_key is not None:
            principals.note_key_use(credential.api_key, client_ip(django_request))
            return credential.user, credential.api_key
        return credential.user, credential

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
