"""The one resolver: a credential plus an org into one frozen ``Access``.

Every edge is a thin adapter around it: ``inferia.api.OrgAPIView`` (JSON errors),
``orgs.pages.org_page`` (sessions: redirects; it calls the user part,
``orgs.access.resolve_member``, directly since ``orgs`` does not import ``keys``)
and the gateway (``gateway.principals`` caches the result under the org's epoch).
What one edge refuses for a credential, every edge refuses, with the same code:

- ``authenticate(raw)``: an API key (prefix ``ifr_``) or an access JWT, else
  AUTHENTICATION_FAILED; 503 SERVICE_UNAVAILABLE when the database cannot confirm.
- ``resolve(credential, org)``: membership, role, bounded delegation, key scopes,
  the org's 2FA policy (``orgs.access.require_two_factor``: also for a person's
  personal keys, never for service-account keys), expiry; a key minted by a key
  is bounded by its parent chain (``keys.principals.access_for_key``). A key of another org,
  a non-member or an unknown org: NOT_FOUND.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import DatabaseError

from inferia.errors import AuthenticationFailed, NotFound, ServiceUnavailable
from keys import apikeys, delegation
from keys.principals import access_for_key, authenticate_key
from orgs.access import (
    ACCESS_TOKEN,
    API_KEY,
    SESSION,
    Access,
    require_two_factor,
    resolve_member,
    user_for_access_token,
)
from orgs.models import Membership, Organization

if TYPE_CHECKING:
    from keys.models import ApiKey
    from orgs.models import User


@dataclass(frozen=True)
class Credential:
    """Who proved themselves, before an org is known."""

    kind: str  # orgs.access.SESSION, ACCESS_TOKEN or API_KEY
    user: User | None
    api_key: ApiKey | None = None
    expires_at: datetime | None = None
    # The login an access JWT belongs to ("end my other sessions" keeps this one).
    family: str | None = None
    # A delegated credential's one model (``keys.delegation``).
    model_bound: str | None = None


def session_credential(user: User) -> Credential:
    return Credential(kind=SESSION, user=user)


def authenticate(raw: str) -> Credential:
    """Check a bearer credential (API key or access JWT) without an org.

    Raises AUTHENTICATION_FAILED (a key is named by its prefix only) or
    SERVICE_UNAVAILABLE when the database cannot answer (fail closed).
    """
    try:
        if apikeys.looks_like_key(raw):
            key = authenticate_key(raw)
            return Credential(
                kind=API_KEY, user=key.owner_user, api_key=key, expires_at=key.expires_at
            )
        user, expires_at, family = user_for_access_token(raw)
        return Credential(kind=ACCESS_TOKEN, user=user, expires_at=expires_at, family=family)
    except DatabaseError as exc:
        raise ServiceUnavailable("Cannot verify credentials right now") from exc


def resolve(credential: Credential, org: Organization | None) -> Access:
    """The frozen Access of ``credential`` in ``org`` (None: an unknown org).

    Raises NOT_FOUND (unknown org, not a member, a key of another org),
    AUTHENTICATION_FAILED (the key's owner left or was deactivated, a disabled
    service account), TWO_FACTOR_REQUIRED, SERVICE_UNAVAILABLE.
    """
    try:
        if credential.api_key is None:
            member = resolve_member(
                org,
                credential.user,
                credential_kind=credential.kind,
                expires_at=credential.expires_at,
            )
            return replace(member, model_bound=credential.model_bound)
        access = access_for_key(credential.api_key, org) if org is not None else None
        if access is None:
            raise NotFound("Organization not found")
        # The key's Access expires with the first key of its chain (access_for_key).
        access = replace(access, credential_kind=API_KEY, model_bound=credential.model_bound)
        require_two_factor(access)
        return access
    except DatabaseError as exc:
        raise ServiceUnavailable("Cannot verify credentials right now") from exc


def authenticate_delegated(raw: str) -> tuple[Credential, str]:
    """A delegated credential (``keys.delegation``; the gateway alone accepts one): the
    uploader's key or user as it is now, bound to one model; and the org id it names.
    AUTHENTICATION_FAILED when forged, expired, or the key or user is gone."""
    from keys.models import ApiKey
    from orgs.models import User

    grant = delegation.verify(raw)
    try:
        if grant.key_id is not None:
            key = (
                ApiKey.all_orgs.select_related(
                    "org", "owner_user", "service_account__role", "service_account__org"
                )
                .filter(pk=grant.key_id, org_id=grant.org_id)
                .first()
            )
            if key is None or key.is_revoked or key.is_expired:
                raise AuthenticationFailed("Delegated credential's API key is no longer valid")
            credential = Credential(
                kind=API_KEY,
                user=key.owner_user,
                api_key=key,
                expires_at=key.expires_at,
                model_bound=grant.model,
            )
        else:
            user = (
                User.objects.filter(pk=grant.user_id, is_active=True).first()
                if grant.user_id is not None
                else None
            )
            if user is None:
                raise AuthenticationFailed("Delegated credential's user is no longer active")
            credential = Credential(kind=ACCESS_TOKEN, user=user, model_bound=grant.model)
    except DatabaseError as exc:
        raise ServiceUnavailable("Cannot verify credentials right now") from exc
    return credential, grant.org_id


def resolve_slug(credential: Credential, slug: str) -> Access:
    """``resolve`` for the org named in a path (``/api/v1/orgs/{org}/...``)."""
    try:
        org = Organization.objects.filter(slug=slug).first()
    except DatabaseError as exc:
        raise ServiceUnavailable("Cannot verify credentials right now") from exc
    return resolve(credential, org)


def gateway_org_id(raw: str, org_hint: str):
    """The org a gateway call is for, before anything else is read (the gateway
    reads the org's epoch next, then resolves): a key's own org; for an access
    token the ``OpenAI-Organization`` slug, or the user's only membership.
    Raises AUTHENTICATION_FAILED or NOT_FOUND."""
    if delegation.looks_delegated(raw):
        return authenticate_delegated(raw)[1]
    if apikeys.looks_like_key(raw):
        from keys.models import ApiKey

        public_id = apikeys.parse_public_id(raw)
        if public_id is None:
            raise AuthenticationFailed("API key is malformed")
        # Cross-org by design: the key names its org.
        org_id = (
            ApiKey.all_orgs.filter(public_id=public_id).values_list("org_id", flat=True).first()
        )
        if org_id is None:
            raise AuthenticationFailed(f"API key {apikeys.PREFIX}_{public_id} is not valid")
        return org_id
    user, _expires_at, _family = user_for_access_token(raw)
    memberships = Membership.all_orgs.filter(user=user)
    if org_hint:
        memberships = memberships.filter(org__slug=org_hint)
    found = list(memberships.values_list("org_id", flat=True)[:2])
    if len(found) != 1:
        raise NotFound("Organization not found; send its slug in the OpenAI-Organization header")
    return found[0]


def resolve_for_org_id(raw: str, org_id) -> Access:
    """``authenticate`` then ``resolve`` in the org with this id (the gateway's cold path;
    the one edge that also accepts a delegated credential)."""
    if delegation.looks_delegated(raw):
        credential, delegated_org = authenticate_delegated(raw)
        if str(delegated_org) != str(org_id):
            raise NotFound("Organization not found")
    else:
        credential = authenticate(raw)
    try:
        org = Organization.objects.filter(pk=org_id).first()
    except DatabaseError as exc:
        raise ServiceUnavailable("Cannot verify credentials right now") from exc
    return resolve(credential, org)
