"""Request types for annotations: what Inferia's middleware, the dashboard's page guard
(``orgs.pages.org_page``) and ``OrgAPIView`` add to Django's and DRF's requests.

Nothing here is instantiated: the classes only tell the type checker which attributes
a view can rely on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest
from rest_framework.request import Request

if TYPE_CHECKING:
    from keys.resolver import Credential
    from orgs.access import Access
    from orgs.models import Organization, User


class InferiaRequest(HttpRequest):
    """Past ``RequestIdMiddleware``: ``request_id`` is set."""

    request_id: str


class BearerHttpRequest(HttpRequest):
    """The Django request under DRF once ``BearerAuthentication`` found a credential:
    the resolver's ``credential`` is set on it (``OrgAPIView`` resolves it in the org)."""

    credential: Credential


class OrgHttpRequest(InferiaRequest):
    """The Django request under an ``OrgAPIView`` past ``initial()``: ``access`` is set
    on it too, for the middleware's request log and audit."""

    access: Access


class SignedInRequest(InferiaRequest):
    """A view that runs only for a signed-in user (``login_required`` or a page guard)."""

    user: User


class OrgPageRequest(SignedInRequest):
    """A dashboard view behind ``org_page``: the member's ``access`` and the ``org``."""

    access: Access
    org: Organization


class SignedInAPIRequest(Request):
    """A DRF request of a ``UserAPIView`` (``SignedInUser``): a user, never a key."""

    user: User


class OrgAPIRequest(Request):
    """A DRF request of an ``OrgAPIView`` past ``initial()``: ``access`` is set."""

    access: Access
    _request: OrgHttpRequest
