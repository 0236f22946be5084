"""Bearer authentication and pagination (imported by DRF settings: keep DRF views out)."""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request


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

    Told apart by format (keys start with ``ifr_``). For a JWT the signature,
    expiry, issuer, audience and type (``access``) are checked, then its
    ``ver`` claim, its login family and the absolute session lifetime
    (``orgs.services.auth.access_token_verify``, shared with the gateway). For a key, ``request.auth`` is
    the ApiKey and ``request.user`` its owner (None for a service account).
    """

    def authenticate(self, request: Request):
        from audit.services import client_ip
        from keys import apikeys, principals
        from orgs.services.auth import access_token_verify

        raw = bearer_credential(request._request)
        if raw is None:
            return None
        if apikeys.looks_like_key(raw):
            key = principals.authenticate_key(raw)
            principals.note_key_use(key, client_ip(request._request))
            return key.owner_user, key
        return access_token_verify(raw)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
