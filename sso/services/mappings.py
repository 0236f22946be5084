"""Group mapping rules: IdP group -> role and/or team, bounded by the rule's maker."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from inferia.errors import Conflict, PermissionDenied, ValidationError
from inferia.request_meta import RequestMeta
from orgs import access as acl
from orgs.access import Access
from orgs.models import Role, Team
from sso.models import (
    GroupMapping,
    IdentityProvider,
)
from sso.services.common import config_record, manage_require

# --- group mapping rules -----------------------------------------------------------------


def mapping_create(
    *,
    access: Access,
    provider: IdentityProvider,
    group: str,
    role: Role | None = None,
    team: Team | None = None,
    meta: RequestMeta | None = None,
) -> GroupMapping:
    """A rule: IdP group -> role and/or team. Its maker must hold every permission of
    the role (only an Owner maps to Owner) and ``team:manage`` for a team."""
    actor_membership = manage_require(access)
    group = group.strip()
    if not group:
        raise ValidationError("Give a group", details={"group": ["Required."]})
    if role is None and team is None:
        raise ValidationError(
            "Give a role or a team", details={"role": ["Give a role, a team or both."]}
        )
    if role is not None:
        if role.org_id not in (None, access.org.pk):
            raise ValidationError("Unknown role", details={"role": ["No such role."]})
        if role.is_builtin and role.slug == acl.OWNER and not access.is_owner:
            raise PermissionDenied("Only an Owner can map a group to the Owner role")
        access.require_all(role.permissions, what="map a group to a role with")
    if team is not None:
        access.require("team:manage")
    try:
        with transaction.atomic():
            rule = GroupMapping.objects.create(
                org=access.org,
                provider=provider,
                group=group,
                role=role,
                team=team,
                granted_by_membership=actor_membership,
            )
            config_record(
                access,
                "sso:manage",
                rule,
                meta,
                op="mapping_create",
                provider=provider.name,
                group=group,
                role=role.slug if role else None,
                team=team.slug if team else None,
            )
    except IntegrityError as exc:
        raise Conflict(
            "This group has a rule already", details={"group": ["Already mapped."]}
        ) from exc
    return rule


def mapping_delete(*, access: Access, rule: GroupMapping, meta: RequestMeta | None = None) -> None:
    """Delete a rule; what it granted goes at each member's next SSO sign-in."""
    manage_require(access)
    with transaction.atomic():
        config_record(access, "sso:manage", rule, meta, op="mapping_delete", group=rule.group)
        rule.delete()
