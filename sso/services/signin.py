"""The sign-in decision (``sign_in``) and the re-evaluation of the mapping rules at every SSO sign-in."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from audit import services as audit
from inferia import clock
from inferia.errors import PermissionDenied
from inferia.request_meta import RequestMeta
from orgs import access as acl
from orgs.access import bounded_role_permissions
from orgs.models import Membership, Organization, Role, Team, TeamMember, User
from orgs.scoping import org_scope
from orgs.signals import access_changed
from sso.claims import Claims
from sso.models import (
    GroupMapping,
    IdentityProvider,
    SsoIdentity,
    SsoRoleGrant,
    SsoTeamGrant,
)
from sso.services.domains import email_domain, verified_domains

# --- the sign-in decision ----------------------------------------------------------------


@dataclass
class _Decision:
    org: Organization
    provider: IdentityProvider
    claims: Claims
    meta: RequestMeta | None

    def record(self, action: str, outcome: str, user: User | None = None, **data: Any) -> None:
        audit.record(
            action=action,
            outcome=outcome,
            org=self.org,
            actor=user,
            actor_label="" if user else f"sso:{self.provider.name}",
            target=self.provider,
            status_code=200 if outcome == "success" else 403,
            meta=self.meta,
            data={
                "provider": self.provider.name,
                "kind": self.provider.kind,
                "subject": self.claims.subject[:200],
                **data,
            },
        )

    def refuse(self, reason: str, message: str) -> _Refused:
        """Raised out of the transaction; ``sign_in`` audits it after the rollback."""
        return _Refused(reason, message)


class _Refused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        self.reason, self.message = reason, message
        super().__init__(reason)


def _username_for(email: str, subject: str) -> str:
    base = re.sub(r"[^\w.@+-]", "", email.split("@", 1)[0])[:100] or "user"
    candidate = base
    while User.objects.filter(username__iexact=candidate).exists():
        candidate = f"{base}-{secrets.token_hex(3)}"
    return candidate


def sign_in(
    *, org: Organization, provider: IdentityProvider, claims: Claims, meta: RequestMeta | None
) -> User:
    """Who ``claims`` (verified by the protocol code) is in ``org``; returns the user.

    Linked (provider, subject): that user. Else an account with the e-mail is linked
    only when the e-mail is verified, its domain is verified by this org, the account
    is a member of this org and of no other (the org's IdP then speaks for it); else a
    new account is provisioned just in time under the same e-mail conditions. A
    linked user who is no longer a member is provisioned again under them. Then the
    mapping rules set roles and teams. Raises PERMISSION_DENIED with
    ``details.reason``; every decision is audited.
    """
    decision = _Decision(org=org, provider=provider, claims=claims, meta=meta)
    try:
        user = _sign_in(decision)
    except _Refused as refused:
        decision.record("auth:sso_login", "denied", reason=refused.reason)
        raise PermissionDenied(refused.message, details={"reason": refused.reason}) from None
    access_changed.send(sender=SsoIdentity, org_ids=[org.pk])
    return user


def _sign_in(decision: _Decision) -> User:
    org, provider, claims = decision.org, decision.provider, decision.claims
    if provider.org_id != org.pk or not provider.is_enabled:
        raise decision.refuse("provider_disabled", "This identity provider is not enabled")
    if not claims.subject:
        raise decision.refuse("no_subject", "The identity provider sent no subject")
    email = claims.email.strip().lower()
    domain_ok = bool(email) and email_domain(email) in verified_domains(org)
    email_trusted = claims.email_verified and domain_ok
    with org_scope(org), transaction.atomic():
        identity = (
            SsoIdentity.objects.select_for_update()
            .select_related("user")
            .filter(provider=provider, subject=claims.subject)
            .first()
        )
        user: User | None = identity.user if identity else None
        membership = None
        created_user = False
        if user is None and email:
            existing = list(User.objects.filter(email__iexact=email)[:2])
            if existing:
                if not claims.email_verified:
                    raise decision.refuse(
                        "email_unverified",
                        "An account with this e-mail exists; the identity provider did not "
                        "verify the e-mail, so it cannot be linked",
                    )
                if not domain_ok:
                    raise decision.refuse(
                        "domain_unverified",
                        "An account with this e-mail exists and its domain is not verified "
                        "by this organization, so it cannot be linked",
                    )
                if len(existing) > 1:
                    raise decision.refuse(
                        "email_ambiguous", "Several accounts use this e-mail; ask an admin"
                    )
                candidate = existing[0]
                member_here = Membership.objects.filter(user=candidate).exists()
                elsewhere = Membership.all_orgs.filter(user=candidate).exclude(org=org).exists()
                if not member_here or elsewhere:
                    raise decision.refuse(
                        "link_refused",
                        "An account with this e-mail exists; it can be linked only when it "
                        "belongs to this organization alone. Ask an admin",
                    )
                user = candidate
                identity = SsoIdentity.objects.create(
                    org=org, provider=provider, subject=claims.subject, user=user
                )
                decision.record("auth:sso_link", "success", user, via="verified_email")
        if user is None:
            if not email_trusted:
                reason = "email_unverified" if domain_ok else "domain_unverified"
                raise decision.refuse(
                    reason,
                    "No account is linked to this identity, and new accounts are created only "
                    "for verified e-mail addresses of the organization's verified domains",
                )
            user = User(username=_username_for(email, claims.subject), email=email)
            user.first_name = claims.name[:150]
            user.set_unusable_password()
            user.save()
            created_user = True
            identity = SsoIdentity.objects.create(
                org=org, provider=provider, subject=claims.subject, user=user
            )
            decision.record("auth:sso_provision", "success", user, op="user_create")
        if identity is None or user is None:  # every branch above set both or raised
            raise decision.refuse("no_account", "No account for this identity")
        if not user.is_active:
            raise decision.refuse("user_inactive", "This account is deactivated")
        membership = (
            Membership.objects.select_for_update(of=("self",))
            .select_related("role")
            .filter(user=user)
            .first()
        )
        jit_membership = False
        if membership is None:
            if not email_trusted:
                raise decision.refuse(
                    "not_a_member",
                    "You are not a member of this organization; ask an admin for an invitation",
                )
            membership = Membership.objects.create(org=org, user=user, role=provider.default_role)
            SsoRoleGrant.objects.create(
                org=org, membership=membership, provider=provider, role=provider.default_role
            )
            jit_membership = True
            decision.record(
                "auth:sso_provision",
                "success",
                user,
                op="membership_create",
                role=provider.default_role.slug,
            )
        _apply_mappings(decision, membership, user)
        SsoIdentity.objects.filter(pk=identity.pk).update(last_login_at=clock.now())
        decision.record(
            "auth:sso_login",
            "success",
            user,
            created_user=created_user,
            created_membership=jit_membership,
        )
    return user


def _rule_usable(rule: GroupMapping) -> bool:
    """Bounded delegation at every use: the rule's maker (still a member) holds today
    every permission of the role it grants (and is an Owner for the Owner role), and
    ``team:manage`` for its team."""
    grantor = rule.granted_by_membership
    if grantor is None:
        return False
    held = bounded_role_permissions(grantor.role, grantor.granted_by_membership, grantor)
    if rule.role is not None:
        if not set(rule.role.permissions) <= held:
            return False
        is_owner_grantor = grantor.role.is_builtin and grantor.role.slug == acl.OWNER
        if rule.role.is_builtin and rule.role.slug == acl.OWNER and not is_owner_grantor:
            return False
    return not (rule.team is not None and "team:manage" not in held)


def _wider(role: Role, than: Role) -> bool:
    """Strictly more permissions: SSO raises a manual role only to a superset of it."""
    return set(role.permissions) > set(than.permissions)


def _best_role(roles: list[Role]) -> Role | None:
    """The mapped role with the most permissions (ties: the first rule's)."""
    best = None
    for role in roles:
        if best is None or len(set(role.permissions)) > len(set(best.permissions)):
            best = role
    return best


def _is_owner_role(role: Role) -> bool:
    return role.is_builtin and role.slug == acl.OWNER


def _apply_mappings(decision: _Decision, membership: Membership, user: User) -> None:
    """Re-evaluate the provider's rules against the groups of this sign-in."""
    provider = decision.provider
    groups = set(decision.claims.groups)
    rules = list(
        GroupMapping.objects.filter(provider=provider)
        .select_related(
            "role", "team", "granted_by_membership__role", "granted_by_membership__user"
        )
        .order_by("created_at")
    )
    matching = [rule for rule in rules if rule.group in groups]
    usable = []
    for rule in matching:
        if _rule_usable(rule):
            usable.append(rule)
        else:
            decision.record(
                "auth:sso_mapping",
                "denied",
                user,
                reason="rule_grantor_lacks_permissions",
                group=rule.group,
            )
    _sync_role(decision, membership, user, [r.role for r in usable if r.role is not None], usable)
    _sync_teams(decision, user, {r.team.pk: r for r in usable if r.team is not None})


def _sync_role(
    decision: _Decision,
    membership: Membership,
    user: User,
    mapped_roles: list[Role],
    rules: list[GroupMapping],
) -> None:
    grant = (
        SsoRoleGrant.objects.select_related("role", "replaced_role")
        .filter(membership=membership)
        .first()
    )
    if grant is not None and grant.role_id != membership.role_id:
        grant.delete()  # someone changed the role by hand since: the manual role stands
        grant = None
    mapped = _best_role(mapped_roles)
    current = membership.role
    if grant is None:
        if mapped is None or mapped.pk == current.pk:
            return
        if not _wider(mapped, current):
            decision.record(
                "auth:sso_mapping",
                "denied",
                user,
                reason="manual_role_kept",
                role=current.slug,
                mapped=mapped.slug,
            )
            return
        target, replaced, keep_grant = mapped, current, True
    else:
        fallback = grant.replaced_role or decision.provider.default_role
        if grant.replaced_role is not None:
            wider = mapped is not None and _wider(mapped, fallback)
            target = mapped if (mapped is not None and wider) else fallback
            keep_grant = target.pk != fallback.pk
        else:
            target, keep_grant = (mapped or fallback), True
        replaced = grant.replaced_role
    if target.pk == current.pk:
        return
    if _is_owner_role(current) and not _is_owner_role(target):
        owners = Membership.objects.select_for_update().filter(
            role__org__isnull=True, role__slug=acl.OWNER
        )
        if len(list(owners)) <= 1:
            decision.record(
                "auth:sso_mapping", "denied", user, reason="last_owner_kept", role=current.slug
            )
            return
    grantor = next(
        (r.granted_by_membership for r in rules if r.role is not None and r.role.pk == target.pk),
        None,
    )
    membership.role = target
    if _is_owner_role(target):
        membership.granted_by_membership = None
    elif grantor is not None:
        membership.granted_by_membership = grantor
    membership.save(update_fields=["role", "granted_by_membership", "updated_at"])
    if keep_grant:
        SsoRoleGrant.objects.update_or_create(
            membership=membership,
            defaults={
                "org": decision.org,
                "provider": decision.provider,
                "role": target,
                "replaced_role": replaced,
            },
        )
    elif grant is not None:
        grant.delete()
    audit.record(
        action="member:update",
        outcome="success",
        org=decision.org,
        actor=user,
        actor_label=f"sso:{decision.provider.name}",
        target=membership,
        meta=decision.meta,
        data={
            "role_before": current.slug,
            "role_after": target.slug,
            "user": user.username,
            "via": "sso",
            "groups": sorted(decision.claims.groups)[:50],
        },
    )


def _sync_teams(decision: _Decision, user: User, wanted: dict[Any, GroupMapping]) -> None:
    granted = {g.team_id: g for g in SsoTeamGrant.objects.filter(user=user)}
    for team_id, rule in wanted.items():
        team = rule.team
        if team is None:
            continue
        if team_id in granted:
            if not TeamMember.objects.filter(team=team, user=user).exists():
                TeamMember.objects.create(org=decision.org, team=team, user=user)
            continue
        if TeamMember.objects.filter(team=team, user=user).exists():
            continue  # a manual team membership: SSO neither records nor removes it
        TeamMember.objects.create(org=decision.org, team=team, user=user)
        SsoTeamGrant.objects.create(
            org=decision.org, team=team, user=user, provider=decision.provider
        )
        _team_record(decision, user, team, "member_add")
    for team_id, grant in granted.items():
        if team_id in wanted:
            continue
        TeamMember.objects.filter(team_id=team_id, user=user).delete()
        grant.delete()
        _team_record(decision, user, grant.team, "member_remove")


def _team_record(decision: _Decision, user: User, team: Team, op: str) -> None:
    audit.record(
        action="team:manage",
        outcome="success",
        org=decision.org,
        actor=user,
        actor_label=f"sso:{decision.provider.name}",
        target=team,
        meta=decision.meta,
        data={"op": op, "user": user.username, "via": "sso"},
    )
