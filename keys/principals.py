"""Access for non-human principals: service accounts and API keys.

A service account's permissions are its role's, capped by the current role of
the member who granted it. A key's effective permissions are its own scopes
intersected with its owner's *current* permissions, so a key never outlives
what its owner may do (bounded delegation at every use).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import DatabaseError

from inferia import clock, store
from inferia.errors import AuthenticationFailed, ServiceUnavailable
from keys import apikeys
from keys.models import ApiKey, ServiceAccount
from orgs.access import Access, access_for_user, bounded_role_permissions
from orgs.models import Organization

if TYPE_CHECKING:
    from orgs.models import Membership, User

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


# A key minted by a key is bounded by its parent chain at every use. The services
# refuse to mint deeper than this; a longer chain (or a cycle, which the services
# cannot make) is refused at use: fail closed.
MAX_KEY_CHAIN_DEPTH = 8
# The first ancestors come with the key in one query; deeper ones load one by one.
PARENT_CHAIN = ("parent", "parent__parent", "parent__parent__parent")


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
                *PARENT_CHAIN,
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


def key_ancestors(key: ApiKey) -> list[ApiKey]:
    """The keys that minted ``key``, nearest first (empty for a key a person minted).

    Raises AUTHENTICATION_FAILED for a chain longer than ``MAX_KEY_CHAIN_DEPTH`` or
    a cycle: neither can be made through the services, so neither is trusted.
    """
    chain: list[ApiKey] = []
    seen = {key.pk}
    current = key.parent
    while current is not None:
        if current.pk in seen or len(chain) >= MAX_KEY_CHAIN_DEPTH:
            raise _refuse(key.prefix, "is no longer valid: the keys that created it are invalid")
        seen.add(current.pk)
        chain.append(current)
        current = current.parent
    return chain


def key_model_bounds(key: ApiKey) -> list[list[str]]:
    """The model restrictions a key is held to: its own and each ancestor's (a
    restriction is a list of patterns; an empty list restricts nothing)."""
    return [list(k.model_patterns) for k in (key, *key_ancestors(key)) if k.model_patterns]


@dataclass(frozen=True)
class _Owner:
    permissions: frozenset[str]
    user: User | None
    membership: Membership | None
    service_account: ServiceAccount | None


def _owner(key: ApiKey, org: Organization, *, disabled: str, left: str) -> _Owner:
    """The current permissions of whoever owns ``key``. Raises AUTHENTICATION_FAILED
    with ``disabled`` for a disabled service account, ``left`` when the owner left."""
    if key.service_account_id is not None:
        service_account = key.service_account
        if service_account is None or not service_account.is_active:
            raise AuthenticationFailed(disabled)
        return _Owner(service_account_permissions(service_account), None, None, service_account)
    owner_access = access_for_user(org, key.owner_user)
    if owner_access is None:
        raise AuthenticationFailed(left)
    return _Owner(owner_access.permissions, owner_access.user, owner_access.membership, None)


def _earliest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return min(known) if known else None


def access_for_key(key: ApiKey, org: Organization) -> Access | None:
    """The key's Access in ``org``: None when the key belongs elsewhere (404 to callers).

    Bounded delegation at every use: the effective permissions are the key's scopes
    intersected with its owner's current permissions and, for a key minted by a key,
    with its parent's effective permissions, up the chain (``key_ancestors``). The
    Access expires with the first key of the chain to expire.

    Raises AUTHENTICATION_FAILED when the owner is gone (personal keys die with
    their owner's membership; disabled service accounts' keys stop), or when a key
    above it is revoked, expired or its owner gone.
    """
    if key.org_id != org.pk:
        return None
    own = _owner(
        key,
        org,
        disabled=f"API key {key.prefix} belongs to a disabled service account",
        left=f"API key {key.prefix} is no longer valid: its owner left the organization",
    )
    permissions = frozenset(key.permissions) & own.permissions
    expires_at = key.expires_at
    owners = {(key.owner_user_id, key.service_account_id): own}
    refusal = f"API key {key.prefix} is no longer valid: the key that created it"
    for ancestor in key_ancestors(key):
        # One condition per line: any ancestor that could not act itself ends the child.
        if ancestor.is_revoked:
            raise AuthenticationFailed(f"{refusal} is revoked")
        if ancestor.is_expired:
            raise AuthenticationFailed(f"{refusal} is expired")
        if ancestor.org_id != org.pk:
            raise AuthenticationFailed(f"{refusal} belongs to another organization")
        owner_id = (ancestor.owner_user_id, ancestor.service_account_id)
        if owner_id not in owners:
            owners[owner_id] = _owner(
                ancestor,
                org,
                disabled=f"{refusal} belongs to a disabled service account",
                left=f"{refusal} lost its owner",
            )
        permissions &= frozenset(ancestor.permissions) & owners[owner_id].permissions
        expires_at = _earliest(expires_at, ancestor.expires_at)
    return Access(
        org=org,
        user=own.user,
        membership=own.membership,
        permissions=permissions,
        service_account=own.service_account,
        api_key=key,
        expires_at=expires_at,
    )


def note_key_use(key: ApiKey, ip: str | None) -> None:
    """Keep ``last_used_at`` fresh without a database write on every request."""
    if store.once(f"apikey-used:{key.pk}", LAST_USED_WRITE_SECONDS):
        ApiKey.all_orgs.filter(pk=key.pk).update(last_used_at=clock.now(), last_used_ip=ip)
