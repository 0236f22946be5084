"""Access for non-human principals: service accounts and API keys.

A service account's permissions are its role's, capped by the current role of
the member who granted it. A key's effective permissions are its own scopes
intersected with its owner's *current* permissions, so a key never outlives
what its owner may do (bounded delegation at every use).
"""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.db import DatabaseError

from inferia import clock
from inferia.errors import AuthenticationFailed, ServiceUnavailable
from keys import apikeys
from keys.models import ApiKey, ServiceAccount
from orgs.access import Access, access_for_user, bounded_role_permissions
from orgs.models import Organization

logger = logging.getLogger(__name__)
LAST_USED_WRITE_SECONDS = 60


def service_account_permissions(service_account: ServiceAccount) -> frozenset[str]:
    if not service_account.is_active:
        return frozenset()
    return bounded_role_permissions(service_account.role, service_account.granted_by_membership)


def access_for_service_account(service_account: ServiceAccount) -> Access:
    return Access(
        org=service_account.org,
        user=None,
        membership=None,
        permissions=service_account_permissions(service_account),
        service_account=service_account,
    )


def _refuse(prefix: str, why: str) -> AuthenticationFailed:
    return AuthenticationFailed(f"API key {prefix} {why}")


def authenticate_key(raw: str) -> ApiKey:
    """The active key for ``raw``, or AUTHENTICATION_FAILED naming only its prefix.

    Fails closed: a database error answers 503, never lets the key through.
    """
    public_id = apikeys.parse_public_id(raw)
    if public_id is None:
        raise AuthenticationFailed("API key is malformed")
    prefix = f"{apikeys.PREFIX}_{public_id}"
    try:
        # Cross-org by design: the key itself tells which org it belongs to.
        key = (
            ApiKey.all_orgs.select_related(
                "org",
                "owner_user",
                "service_account__role",
                "service_account__granted_by_membership__role",
                "service_account__org",
            )
            .filter(public_id=public_id)
            .first()
        )
    except DatabaseError as exc:
        raise ServiceUnavailable("Cannot verify credentials right now") from exc
    if key is None or not apikeys.matches(raw, key.secret_digest):
        raise _refuse(prefix, "is not valid")
    if key.is_revoked:
        raise _refuse(prefix, "is revoked")
    if key.is_expired:
        raise _refuse(prefix, "is expired")
    return key


def access_for_key(key: ApiKey, org: Organization) -> Access | None:
    """The key's Access in ``org``: None when the key belongs elsewhere (404 to callers).

    Raises AUTHENTICATION_FAILED when the owner is gone (personal keys die with
    their owner's membership; disabled service accounts' keys stop).
    """
    if key.org_id != org.pk:
        return None
    if key.service_account_id is not None:
        service_account = key.service_account
        if not service_account.is_active:
            raise _refuse(key.prefix, "belongs to a disabled service account")
        owner_permissions = service_account_permissions(service_account)
        user, membership = None, None
    else:
        owner_access = access_for_user(org, key.owner_user)
        if owner_access is None:
            raise _refuse(key.prefix, "is no longer valid: its owner left the organization")
        owner_permissions = owner_access.permissions
        user, membership, service_account = owner_access.user, owner_access.membership, None
    return Access(
        org=org,
        user=user,
        membership=membership,
        permissions=frozenset(key.permissions) & owner_permissions,
        service_account=service_account,
        api_key=key,
    )


def note_key_use(key: ApiKey, ip: str | None) -> None:
    """Keep ``last_used_at`` fresh without a database write on every request."""
    if cache.add(f"apikey-used:{key.pk}", 1, LAST_USED_WRITE_SECONDS):
        ApiKey.all_orgs.filter(pk=key.pk).update(last_used_at=clock.now(), last_used_ip=ip)
