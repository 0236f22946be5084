"""The permission vocabulary, the built-in roles, and the one ``Access`` object.

Every question "may this principal do X in this org" is answered by an
``Access`` built in ``access_for_user``: the API permission class, the pages
and admin all ask ``access.can(...)``/``access.require(...)``, never a role name.
Default deny: a name not in the effective set is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from inferia.errors import (
    NotFound,
    PermissionDenied,
    TwoFactorRequired,
    ValidationError,
)

if TYPE_CHECKING:
    from orgs.models import Membership, Organization, User
    from orgs.policy import OrgPolicy

# How the caller proved who they are (``Access.credential_kind``).
SESSION, ACCESS_TOKEN, API_KEY, SCIM_TOKEN = "session", "jwt", "api_key", "scim_token"

PERMISSIONS: tuple[str, ...] = (
    "org:view",
    "org:update",
    "org:delete",
    "billing:manage",
    "policy:manage",
    "member:view",
    "member:invite",
    "member:update",
    "member:delete",
    "team:manage",
    "service_account:manage",
    "sso:manage",
    "api_key:create",
    "api_key:revoke",
    "api_key:view",
    "provider_account:view",
    "provider_account:manage",
    "model:read",
    "model:write",
    "model:delete",
    "deployment:view",
    "deployment:create",
    "deployment:update",
    "deployment:delete",
    "knowledge_base:view",
    "knowledge_base:create",
    "knowledge_base:add_data",
    "knowledge_base:delete",
    "inference:run",
    "inference:stream",
    "usage:view",
    "metrics:read",
    "cache:manage",
    "audit_log:view",
)
PERMISSION_SET: frozenset[str] = frozenset(PERMISSIONS)

# One line per permission: what holding it lets a user, a role or a key do. The
# dashboard's scope and role pickers show these (grouped by resource); a test keeps
# this table and ``PERMISSIONS`` equal.
PERMISSION_DESCRIPTIONS: dict[str, str] = {
    "org:view": "See the organization and its overview.",
    "org:update": "Change the organization's name and settings (limits, 2FA policy).",
    "org:delete": "Delete the organization.",
    "billing:manage": "Manage billing.",
    "policy:manage": "Edit model access rules and custom roles.",
    "member:view": "See members, teams, roles and service accounts.",
    "member:invite": "Invite people and revoke invitations.",
    "member:update": "Change members' roles.",
    "member:delete": "Remove members.",
    "team:manage": "Create and delete teams, add and remove their members.",
    "service_account:manage": "Create, disable and delete service accounts.",
    "sso:manage": "Connect identity providers (SSO), claim e-mail domains, map IdP groups "
    "to roles and teams, enforce SSO, manage SCIM provisioning tokens.",
    "api_key:create": "Mint API keys (each bounded by its owner's permissions).",
    "api_key:revoke": "Revoke other people's API keys.",
    "api_key:view": "See every API key of the organization.",
    "provider_account:view": "See provider accounts (never their secrets).",
    "provider_account:manage": "Add, edit, test and delete provider accounts and their secrets.",
    "model:read": "List the models and see who may use them.",
    "model:write": "Register and change models.",
    "model:delete": "Remove models.",
    "deployment:view": "See deployments, their routing versions and health.",
    "deployment:create": "Launch new model deployments (named endpoints routing to models).",
    "deployment:update": "Change a deployment's routing, roll it back, stop or resume it.",
    "deployment:delete": "Terminate running deployments (stops what their launcher started).",
    "knowledge_base:view": "List knowledge bases and search those the access rules grant.",
    "knowledge_base:create": "Create knowledge bases (the creator is granted the new one).",
    "knowledge_base:add_data": "Upload documents to the knowledge bases the access rules grant.",
    "knowledge_base:delete": "Delete knowledge bases.",
    "inference:run": "Call models through the gateway.",
    "inference:stream": "Stream answers (stream: true) through the gateway.",
    "usage:view": "See usage, costs and the request log.",
    "metrics:read": "Scrape the organization's Prometheus metrics (/metrics).",
    "cache:manage": "Turn the gateway's response cache on or off, set its TTL and size, purge it.",
    "audit_log:view": "Read and export the audit log.",
}
RESOURCE_LABELS: dict[str, str] = {
    "org": "Organization",
    "billing": "Billing",
    "policy": "Policy",
    "member": "Members",
    "team": "Teams",
    "service_account": "Service accounts",
    "sso": "Single sign-on and provisioning",
    "api_key": "API keys",
    "provider_account": "Provider accounts",
    "model": "Models",
    "deployment": "Deployments",
    "knowledge_base": "Knowledge bases",
    "inference": "Inference",
    "usage": "Usage",
    "metrics": "Metrics",
    "cache": "Response cache",
    "audit_log": "Audit log",
}


def permission_groups(names: Iterable[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """``names`` grouped by resource in vocabulary order, each with its description:
    ``[("API keys", [("api_key:create", "Mint API keys ..."), ...]), ...]``."""
    wanted = set(names)
    groups: dict[str, list[tuple[str, str]]] = {}
    for name in PERMISSIONS:
        if name in wanted:
            resource = name.split(":", 1)[0]
            groups.setdefault(RESOURCE_LABELS.get(resource, resource), []).append(
                (name, PERMISSION_DESCRIPTIONS[name])
            )
    return list(groups.items())


# Names used by older API-key clients. ``read_metrics`` grants both what it always
# granted (the usage view) and the metrics scrape it is named after.
ALIASES: dict[str, str | tuple[str, ...]] = {
    "read_models": "model:read",
    "write_models": "model:write",
    "delete_models": "model:delete",
    "run_inference": "inference:run",
    "use_streaming": "inference:stream",
    "read_metrics": ("usage:view", "metrics:read"),
    "manage_cache": "cache:manage",
    "view_audit_logs": "audit_log:view",
    "manage_users": "member:update",
}

# Vocabulary permissions that may also be granted on a single object (guardian codenames).
OBJECT_GRANTS: dict[str, str] = {"provider_account:manage": "manage_provideraccount"}

_READ = frozenset(p for p in PERMISSIONS if p.endswith((":view", ":read")))

OWNER, ADMIN, MEMBER, VIEWER = "owner", "admin", "member", "viewer"
BUILTIN_ROLES: dict[str, tuple[str, frozenset[str]]] = {
    OWNER: ("Owner", PERMISSION_SET),
    ADMIN: ("Admin", PERMISSION_SET - {"org:delete", "billing:manage"}),
    MEMBER: ("Member", _READ | {"inference:run", "inference:stream", "api_key:create"}),
    VIEWER: ("Viewer", _READ),
}


def normalize_permissions(
    names: Iterable[str], *, field_name: str = "permissions"
) -> frozenset[str]:
    """Map aliases to vocabulary names; unknown names raise VALIDATION_ERROR."""
    result: set[str] = set()
    unknown: list[str] = []
    for name in names:
        canonical = ALIASES.get(name, name)
        expanded = (canonical,) if isinstance(canonical, str) else canonical
        if all(isinstance(c, str) and c in PERMISSION_SET for c in expanded):
            result.update(expanded)
        else:
            unknown.append(str(name))
    if unknown:
        raise ValidationError(
            "Unknown permission name",
            details={field_name: [f"Unknown permission: {name}" for name in unknown]},
        )
    return frozenset(result)


@dataclass(frozen=True)
class Access:
    """What one principal may do in one organization, frozen for a request."""

    org: Organization
    user: User | None
    membership: Membership | None
    permissions: frozenset[str] = field(default_factory=frozenset)
    # Set when the principal is a service account and/or the request used an API key.
    service_account: Any = None
    api_key: Any = None
    # Set when the principal is an org's identity provider provisioning through SCIM
    # (``scim.models.ScimToken``); ``membership`` is then the membership of the member
    # who created the token, whose current role bounds it (``scim.auth``).
    scim_token: Any = None
    # The credential that proved it: ``session``, ``jwt`` or ``api_key``, and when it
    # stops being valid (a key's expiry, an access token's ``exp``); caches of this
    # Access (the gateway's) check ``expires_at`` on every use.
    credential_kind: str = SESSION
    expires_at: datetime | None = None
    # A delegated credential (``keys.delegation``: knowledge-base ingestion acting as the
    # uploader) may call this one model and nothing else.
    model_bound: str | None = None

    @property
    def policy(self) -> OrgPolicy:
        """The org's typed policy knobs (``orgs.policy.OrgPolicy``)."""
        return self.org.policy

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    @property
    def actor_label(self) -> str:
        if self.scim_token is not None:
            return f"scim:{self.scim_token.prefix}"
        if self.user is not None:
            who = self.user.username
        elif self.service_account is not None:
            who = f"sa:{self.service_account.slug}"
        else:
            who = "operator"
        return f"{who} via {self.api_key.prefix}" if self.api_key is not None else who

    def require_human(self) -> tuple[User, Membership]:
        """Grants of roles and ownership need a user acting as themselves, not a key.

        Returns that user and their membership (no longer optional); raises
        PERMISSION_DENIED otherwise.
        """
        if self.user is None or self.membership is None or self.api_key is not None:
            raise PermissionDenied("This action needs a signed-in user, not an API key")
        return self.user, self.membership

    def require_grantor(self) -> None:
        """Grants that are not roles (a team's membership, which carries access rules)
        come from a person acting as themselves or from the org's directory (a SCIM
        token, bounded by the member who created it); never from an API key.

        Raises PERMISSION_DENIED otherwise.
        """
        if self.scim_token is not None and self.api_key is None:
            return
        self.require_human()

    @property
    def is_owner(self) -> bool:
        return self.membership is not None and self.membership.role.slug == OWNER

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def require(self, permission: str) -> None:
        """Raise PERMISSION_DENIED unless ``permission`` is held."""
        if permission not in PERMISSION_SET:
            raise PermissionDenied(f"Unknown permission {permission}")
        if permission not in self.permissions:
            raise PermissionDenied(f"Missing permission {permission}")

    def can_on(self, permission: str, obj: Any) -> bool:
        """``permission`` from the role, or granted on this one object (django-guardian).

        Object grants apply to users acting as themselves, never through a key.
        """
        if self.can(permission):
            return True
        codename = OBJECT_GRANTS.get(permission)
        if codename is None or self.user is None or self.api_key is not None:
            return False
        from guardian.core import ObjectPermissionChecker

        return ObjectPermissionChecker(self.user).has_perm(codename, obj)

    def require_on(self, permission: str, obj: Any) -> None:
        if not self.can_on(permission, obj):
            raise PermissionDenied(f"Missing permission {permission}")

    def require_all(self, permissions: Iterable[str], *, what: str = "grant") -> None:
        """Bounded delegation: nobody grants a permission they do not hold."""
        missing = sorted(set(permissions) - self.permissions)
        if missing:
            raise PermissionDenied(
                f"Cannot {what} permissions you do not hold: {', '.join(missing)}",
                details={"missing_permissions": missing},
            )


def membership_permissions(membership: Membership) -> frozenset[str]:
    """Effective permissions of a membership.

    The role's permissions, bounded again at every use by the current role of
    the member who granted it, and of whoever granted theirs, up the chain
    (bounded delegation: a grantor may have lost a permission since, directly
    or through their own grantor). Owners and self-created memberships are
    unbounded; a cycle of grants is bounded by every role in it.
    """
    return bounded_role_permissions(membership.role, membership.granted_by_membership, membership)


def bounded_role_permissions(role, grantor: Membership | None, holder=None) -> frozenset[str]:
    """A role's permissions capped by the grantor's current role, and theirs, up the chain."""
    permissions = frozenset(role.permissions) & PERMISSION_SET
    seen = {holder.pk} if holder is not None else set()
    while grantor is not None and grantor.pk not in seen:
        seen.add(grantor.pk)
        permissions &= frozenset(grantor.role.permissions)
        grantor = grantor.granted_by_membership
    return permissions


def access_for_user(org: Organization, user: User | None) -> Access | None:
    """The Access of ``user`` in ``org``, or None when they are not an active member."""
    from orgs.models import Membership

    if user is None or not user.is_active:
        return None
    membership = (
        Membership.all_orgs.select_related("role", "user", "granted_by_membership__role")
        .filter(org=org, user=user)
        .first()
    )
    if membership is None:
        return None
    return Access(
        org=org,
        user=user,
        membership=membership,
        permissions=membership_permissions(membership),
    )


def require_two_factor(access: Access) -> None:
    """The org's 2FA policy, one rule for every edge and every credential of a person.

    When the org requires 2FA, a user without a confirmed TOTP device is refused
    TWO_FACTOR_REQUIRED whether they come with a session, an access token or one of
    their personal API keys (a key must not be a way around the org's policy).
    Service-account keys have no person behind them and are not affected. The
    exception carries ``access`` so that edges can audit the refusal.
    """
    user = access.user
    if access.org.require_2fa and user is not None and not user.has_confirmed_totp:
        error = TwoFactorRequired()
        error.access = access  # type: ignore[attr-defined]
        raise error


def resolve_member(
    org: Organization | None,
    user: User | None,
    *,
    credential_kind: str = SESSION,
    expires_at: datetime | None = None,
) -> Access:
    """The Access of a signed-in person (session or access token) in ``org``.

    Raises NOT_FOUND when the org is unknown or the user is not an active member
    (the same answer, so membership cannot be probed), TWO_FACTOR_REQUIRED per
    ``require_two_factor``. The full dispatcher for every credential, API keys
    included, is ``keys.resolver``; this is its user part.
    """
    access = access_for_user(org, user) if org is not None else None
    if access is None:
        raise NotFound("Organization not found")
    access = replace(access, credential_kind=credential_kind, expires_at=expires_at)
    require_two_factor(access)
    return access


def user_for_access_token(raw: str) -> tuple[User, datetime | None, str | None]:
    """The active user an access JWT speaks for, when the token expires, and its
    login family.

    The one JWT check is ``orgs.services.auth.access_token_verify`` (signature,
    expiry, issuer, audience, type, the ``ver`` claim, the login family not ended,
    the absolute session lifetime). Anything wrong: AUTHENTICATION_FAILED.
    """
    from orgs.services.auth import FAMILY_CLAIM, access_token_verify

    user, token = access_token_verify(raw)
    exp = token.get("exp")
    expires_at = datetime.fromtimestamp(int(exp), tz=UTC) if exp is not None else None
    family = token.get(FAMILY_CLAIM)
    return user, expires_at, str(family) if family else None


def sync_builtin_roles(role_model) -> None:
    """Make the built-in role rows match ``BUILTIN_ROLES`` (migration and post_migrate)."""
    for slug, (name, permissions) in BUILTIN_ROLES.items():
        role_model.objects.update_or_create(
            org=None, slug=slug, defaults={"name": name, "permissions": sorted(permissions)}
        )
