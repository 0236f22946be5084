"""Bearer authentication and pagination (imported by DRF settings: keep DRF views out)."""

from __future__ import annotations

import hmac
from typing import cast

from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

from inferia.errors import AuthenticationFailed
from inferia.request_types import BearerHttpRequest

# Named by every 401 that asks for a credential, on the API and the gateway alike.
CREDENTIAL_HELP = (
    "Send an Inferia API key as 'Authorization: Bearer <key>', 'X-API-Key: <key>' "
    "or 'api-key: <key>'"
)


def credential_from(authorization: str, x_api_key: str = "", api_key: str = "") -> str | None:
    """The credential of ``Authorization: Bearer <x>``, ``X-API-Key: <x>`` or Azure's
    ``api-key: <x>`` (the API's and the gateway's one rule); None when there is none.

    The same credential in several of them is that credential; two different ones
    are AUTHENTICATION_FAILED (ambiguous: neither wins). An ``Authorization`` header
    of another scheme is not an Inferia credential and is ignored."""
    scheme, _, bearer = authorization.partition(" ")
    found = [
        value.strip()
        for value in (bearer if scheme.lower() == "bearer" else "", x_api_key, api_key)
        if value.strip()
    ]
    if not found:
        return None
    first = found[0]
    for other in found[1:]:
        if not hmac.compare_digest(first.encode(), other.encode()):
            raise AuthenticationFailed(
                f"Two different credentials were sent. {CREDENTIAL_HELP}, one key only"
            )
    return first


def bearer_credential(request: HttpRequest) -> str | None:
    """The credential of a Django request (``credential_from``); raises on two different ones."""
    meta = request.META
    return credential_from(
        meta.get("HTTP_AUTHORIZATION", ""),
        meta.get("HTTP_X_API_KEY", ""),
        meta.get("HTTP_API_KEY", ""),
    )


def presents_credential(request: HttpRequest) -> bool:
    """Whether the request sent anything in a credential header (never raises)."""
    try:
        return bearer_credential(request) is not None
    except AuthenticationFailed:
        return True


class BearerAuthentication(BaseAuthentication):
    """An access JWT or an API key, in ``Authorization: Bearer``, ``X-API-Key`` or ``api-key``.

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
