"""The one check of a SCIM bearer token: a token plus nothing else into a frozen ``Access``.

A SCIM token (``ifs_...``) names its org. It is valid while not revoked and while the
member who created it (``granted_by_membership``) still holds ``sso:manage``; its
permissions are ``SCIM_PERMISSIONS`` bounded by that member's current ones (bounded
delegation at every use). It can do nothing but SCIM: the API and the gateway take
``ifr_`` keys and access JWTs only (``keys.resolver``), so they refuse it.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import DatabaseError

from inferia import clock
from inferia.errors import AuthenticationFailed, ServiceUnavailable
from keys import apikeys
from orgs.access import PERMISSION_SET, SCIM_TOKEN, Access, membership_permissions
from scim.models import TOKEN_PREFIX, ScimToken

# Everything SCIM does in an org: read members (and teams), add and reactivate them,
# update them, remove them, manage teams and their members (groups).
SCIM_PERMISSIONS = frozenset(
    {"member:view", "member:invite", "member:update", "member:delete", "team:manage"}
)
LAST_USED_WRITE_SECONDS = 60


def _refuse(prefix: str, why: str) -> AuthenticationFailed:
    return AuthenticationFailed(f"SCIM token {prefix} {why}")


def scim_token_authenticate(raw: str) -> Access:
    """The Access of a SCIM token, or AUTHENTICATION_FAILED naming only its prefix.

    Compares the SHA-256 of the presented token with the stored one in constant
    time. Fails closed: a database error is SERVICE_UNAVAILABLE, never a pass.
    """
    public_id = apikeys.parse_public_id(raw, prefix=TOKEN_PREFIX)
    if public_id is None:
        raise AuthenticationFailed("SCIM token is missing or malformed")
    prefix = f"{TOKEN_PREFIX}_{public_id}"
    try:
        # Cross-org by design: the token itself tells which org it belongs to.
        token = (
            ScimToken.all_orgs.select_related(
                "org",
                "role",
                "granted_by_membership__role",
                "granted_by_membership__user",
                "granted_by_membership__granted_by_membership__role",
            )
            .filter(public_id=public_id)
            .first()
        )
        if token is None or not apikeys.matches(raw, token.secret_digest):
            raise _refuse(prefix, "is not valid")
        if token.is_revoked:
            raise _refuse(prefix, "is revoked")
        grantor = token.granted_by_membership
        if grantor is None:
            # Its creator left unbounded (an Owner): bounded by nobody, like their grants.
            granted = PERMISSION_SET
        elif not grantor.user.is_active:
            granted = frozenset()
        else:
            granted = membership_permissions(grantor)
        if "sso:manage" not in granted:
            raise _refuse(prefix, "is no longer valid: the member who created it lost sso:manage")
        _note_use(token)
    except DatabaseError as exc:
        raise ServiceUnavailable("Cannot verify credentials right now") from exc
    return Access(
        org=token.org,
        user=None,
        membership=grantor,
        permissions=SCIM_PERMISSIONS & granted,
        scim_token=token,
        credential_kind=SCIM_TOKEN,
    )


def _note_use(token: ScimToken) -> None:
    now = clock.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(
        seconds=LAST_USED_WRITE_SECONDS
    ):
        # One row, one column, no audit: bookkeeping like an API key's last use.
        ScimToken.all_orgs.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
