"""Organizations, members, roles, teams and invitations.

Rules about who acts live here: nobody grants a permission they lack, an
Admin cannot create, change or remove an Owner, and the last Owner stays.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ForeignObjectRel, Model
from django.db.models.deletion import RestrictedError

from audit import services as audit
from inferia import clock, private_hosts
from inferia.errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from inferia.request_meta import RequestMeta, public_url
from orgs import access as acl
from orgs.access import Access
from orgs.models import (
    Invitation,
    Membership,
    Organization,
    Role,
    Team,
    TeamMember,
    User,
    token_digest,
)
from orgs.scoping import org_scope
from orgs.services import cache, two_factor
from orgs.signals import member_removed

# --- organizations -------------------------------------------------------------------


def _builtin(slug: str) -> Role:
    return Role.objects.get(org__isnull=True, slug=slug)


def organization_create(
    *, user: User, slug: str, name: str, meta: RequestMeta | None = None
) -> Organization:
    """Create an org; its creator becomes its first Owner. CONFLICT if the slug is taken."""
    try:
        with transaction.atomic():
            org = Organization.objects.create(slug=slug, name=name)
            with org_scope(org):
                Membership.objects.create(org=org, user=user, role=_builtin(acl.OWNER))
            audit.record(
                action="org:create",
                outcome="success",
                org=org,
                actor=user,
                target=org,
                meta=meta,
            )
    except IntegrityError as exc:
        raise Conflict(
            "An organization with this slug already exists", details={"slug": ["Already taken."]}
        ) from exc
    return org


AUDIT_RETENTION_FLOOR_DAYS = 30  # the database's prune function has the same floor


def audit_retention_change_check(access: Access, settings_changes: dict[str, Any]) -> None:
    """Changing ``audit_retention_days`` needs the Owner (an Admin could otherwise erase
    the trail of what they did), and never below the floor of 30 days.

    Raises PERMISSION_DENIED or VALIDATION_ERROR.
    """
    if "audit_retention_days" not in settings_changes:
        return
    days = settings_changes["audit_retention_days"]
    if days is not None and (not isinstance(days, int) or days < AUDIT_RETENTION_FLOOR_DAYS):
        raise ValidationError(
            "Audit retention is too short",
            details={"audit_retention_days": [f"At least {AUDIT_RETENTION_FLOOR_DAYS} days."]},
        )
    if days != access.org.policy.audit_retention_days and not access.is_owner:
        raise PermissionDenied("Only the Owner may change the audit retention")


def enforce_sso_change_check(access: Access, settings_changes: dict[str, Any]) -> None:
    """Changing ``enforce_sso`` needs ``sso:manage`` (besides ``org:update``) and a
    signed-in user; turning it on needs an enabled identity provider (else nobody but
    the Owners could sign in) and an Owner with confirmed 2FA (the break-glass path is
    password + 2FA).

    Raises PERMISSION_DENIED or VALIDATION_ERROR on ``enforce_sso``.
    """
    if "enforce_sso" not in settings_changes:
        return
    wanted = bool(settings_changes["enforce_sso"])
    if wanted == access.org.policy.enforce_sso:
        return
    access.require("sso:manage")
    access.require_human()
    if not wanted:
        return
    # orgs does not import sso (imports point sso -> orgs): the model by its label.
    from django.apps import apps

    providers = apps.get_model("sso", "IdentityProvider").all_orgs
    if not providers.filter(org=access.org, is_enabled=True).exists():
        raise ValidationError(
            "Connect an identity provider first",
            details={"enforce_sso": ["Add and enable an identity provider before enforcing SSO."]},
        )
    owners_with_2fa = Membership.all_orgs.filter(
        org=access.org,
        role__org__isnull=True,
        role__slug=acl.OWNER,
        user__is_active=True,
        user__totpdevice__confirmed=True,
    )
    if not owners_with_2fa.exists():
        raise ValidationError(
            "An Owner needs two-factor authentication first",
            details={
                "enforce_sso": [
                    "Owners keep password + 2FA as the break-glass sign-in: at least one "
                    "Owner must have two-factor authentication on."
                ]
            },
        )


def private_hosts_check(entries: list[str] | None) -> None:
    """An org lists only private hosts the operator's ``INFERIA_PRIVATE_HOSTS_ALLOWED``
    covers (the SSRF guard applies the same cap at every connection).

    Raises VALIDATION_ERROR naming each refused entry.
    """
    problems = [error for error in map(private_hosts.listing_error, entries or ()) if error]
    if problems:
        raise ValidationError("Private hosts refused", details={"allowed_private_hosts": problems})


def organization_update(
    *, access: Access, changes: dict[str, Any], meta: RequestMeta | None = None
) -> Organization:
    """Update name, ``require_2fa`` and policy settings (merged into ``org.settings``).

    Changing ``require_2fa`` needs a signed-in user (PERMISSION_DENIED for a key);
    turning it on needs the acting user's own confirmed TOTP first
    (VALIDATION_ERROR on ``require_2fa``), so nobody locks themself out.

    Raises as ``audit_retention_change_check`` does (retention: Owner only, floor)
    and as ``cache.settings_check`` does (the ``cache_*`` knobs need ``cache:manage``).
    """
    org = access.org
    audit_retention_change_check(access, changes.get("settings") or {})
    enforce_sso_change_check(access, changes.get("settings") or {})
    cache.settings_check(access, changes.get("settings") or {})
    private_hosts_check((changes.get("settings") or {}).get("allowed_private_hosts"))
    if "require_2fa" in changes and bool(changes["require_2fa"]) != org.require_2fa:
        user, _membership = access.require_human()
        if changes["require_2fa"] and not user.has_confirmed_totp:
            raise ValidationError(
                "Turn on two-factor authentication for your own account before requiring it",
                details={
                    "require_2fa": [
                        "Enable two-factor authentication for your account first, "
                        "or you would be locked out of this organization."
                    ]
                },
            )
    fields: list[str] = []
    before = {"name": org.name, "require_2fa": org.require_2fa, "settings": dict(org.settings)}
    if "name" in changes:
        org.name = changes["name"]
        fields.append("name")
    if "require_2fa" in changes:
        org.require_2fa = changes["require_2fa"]
        fields.append("require_2fa")
    if "settings" in changes:
        org.settings = {**org.settings, **changes["settings"]}
        fields.append("settings")
    if not fields:
        return org
    with transaction.atomic():
        org.save(update_fields=[*fields, "updated_at"])
        audit.record(
            action="org:update",
            outcome="success",
            org=org,
            actor=access.user,
            target=org,
            meta=meta,
            data={"changed": fields, "before": before},
        )
    return org


def organization_delete(
    *,
    access: Access,
    otp_code: str | None,
    password: str | None,
    meta: RequestMeta | None = None,
) -> None:
    """Delete the org and everything it owns; needs ``org:delete`` and a fresh code."""
    access.require("org:delete")
    if access.user is None:
        raise PermissionDenied("Deleting an organization needs a person's fresh code")
    two_factor.verify_fresh(user=access.user, otp_code=otp_code, password=password, meta=meta)
    org = access.org
    with transaction.atomic():
        audit.record(
            action="org:delete",
            outcome="success",
            actor=access.user,
            target=org,
            meta=meta,
            data={"slug": org.slug},
        )
        org.delete()


def ownership_transfer(
    *,
    access: Access,
    target: Membership,
    otp_code: str | None,
    password: str | None,
    meta: RequestMeta | None = None,
) -> Membership:
    """Make ``target`` an Owner and the acting Owner an Admin; needs a signed-in
    Owner (never an API key) and a fresh code."""
    user, own = access.require_human()
    if not access.is_owner:
        raise PermissionDenied("Only an Owner can transfer ownership")
    if target.pk == own.pk:
        raise ValidationError(
            "You already own this organization", details={"member_id": ["Is you."]}
        )
    two_factor.verify_fresh(user=user, otp_code=otp_code, password=password, meta=meta)
    with transaction.atomic():
        target.role = _builtin(acl.OWNER)
        target.granted_by_membership = None
        target.save(update_fields=["role", "granted_by_membership", "updated_at"])
        own.role = _builtin(acl.ADMIN)
        own.granted_by_membership = target
        own.save(update_fields=["role", "granted_by_membership", "updated_at"])
        audit.record(
            action="org:transfer_ownership",
            outcome="success",
            org=access.org,
            actor=access.user,
            target=target,
            meta=meta,
        )
    return target


# --- members -------------------------------------------------------------------------


def _owner_count() -> int:
    return Membership.objects.filter(role__org__isnull=True, role__slug=acl.OWNER).count()


def _guard_owner_change(access: Access, membership: Membership, new_role: Role | None) -> None:
    touches_owner = membership.role.slug == acl.OWNER and membership.role.is_builtin
    makes_owner = new_role is not None and new_role.is_builtin and new_role.slug == acl.OWNER
    if (touches_owner or makes_owner) and not access.is_owner:
        raise PermissionDenied("Only an Owner can create, change or remove an Owner")
    if touches_owner and not makes_owner and _owner_count() <= 1:
        raise Conflict("An organization must keep at least one Owner")


def member_change_role(
    *, access: Access, membership: Membership, role: Role, meta: RequestMeta | None = None
) -> Membership:
    """Give ``membership`` another role; the actor must hold every permission of it.

    Needs a signed-in user (never an API key). The grant records its grantor, so it
    stays bounded by the grantor's current role; changing your own role keeps the
    grantor you had (nobody unbinds themself by re-granting their own role).
    """
    access.require("member:update")
    _user, actor_membership = access.require_human()
    if role.org_id not in (None, access.org.pk):
        raise NotFound("Role not found")
    access.require_all(role.permissions, what="grant a role with")
    with transaction.atomic():
        membership = (
            Membership.objects.select_for_update().select_related("role").get(pk=membership.pk)
        )
        # Lock the owners so two demotions in parallel cannot both pass the check.
        list(
            Membership.objects.select_for_update().filter(
                role__slug=acl.OWNER, role__org__isnull=True
            )
        )
        _guard_owner_change(access, membership, role)
        before = membership.role.slug
        membership.role = role
        if role.is_builtin and role.slug == acl.OWNER:
            membership.granted_by_membership = None
        elif membership.pk != actor_membership.pk:
            membership.granted_by_membership = actor_membership
        # else: your own role change keeps your existing grantor.
        membership.save(update_fields=["role", "granted_by_membership", "updated_at"])
        audit.record(
            action="member:update",
            outcome="success",
            org=access.org,
            actor=access.user,
            target=membership,
            meta=meta,
            data={"role_before": before, "role_after": role.slug, "user": membership.user.username},
        )
    return membership


def member_remove(
    *, access: Access, membership: Membership, meta: RequestMeta | None = None
) -> None:
    """Remove a member (anyone may leave; removing others needs ``member:delete``).

    Needs a signed-in user (never an API key) or the org's directory (a SCIM token,
    ``scim.services``: it removes, never leaves, and is bound by its creator's
    membership, which ``access.membership`` then is). The member's personal API keys
    are revoked with the membership (``member_removed``), so they stay dead if the
    person joins again.
    """
    actor_membership: Membership | None
    if access.scim_token is not None and access.api_key is None:
        actor_membership = access.membership
        leaving = False
    else:
        _user, actor_membership = access.require_human()
        leaving = membership.pk == actor_membership.pk
    if not leaving:
        access.require("member:delete")
    with transaction.atomic():
        membership = (
            Membership.objects.select_for_update()
            .select_related("role", "user")
            .get(pk=membership.pk)
        )
        list(
            Membership.objects.select_for_update().filter(
                role__slug=acl.OWNER, role__org__isnull=True
            )
        )
        if not leaving:
            _guard_owner_change(access, membership, None)
        elif (
            membership.role.slug == acl.OWNER and membership.role.is_builtin and _owner_count() <= 1
        ):
            raise Conflict("An organization must keep at least one Owner")
        # Grants this member made (role assignments, service accounts' roles: every
        # ``granted_by_membership`` pointing here) stay bounded by someone still in the
        # org: the remover, or when leaving, whoever bounded the leaver (None only if
        # the leaver was unbounded themself). Service accounts and their keys survive.
        rebound_to = (
            membership.granted_by_membership
            if leaving or actor_membership is None or actor_membership.pk == membership.pk
            else actor_membership
        )
        for relation in Membership._meta.get_fields(include_hidden=True):
            # The reverse side of every ``granted_by_membership`` foreign key.
            if not isinstance(relation, ForeignObjectRel):
                continue
            if relation.field.name != "granted_by_membership":
                continue
            granting_model = relation.related_model
            if not (isinstance(granting_model, type) and issubclass(granting_model, Model)):
                raise TypeError(f"Unresolved model behind {relation!r}")
            granting_model._default_manager.filter(granted_by_membership=membership).update(
                granted_by_membership=rebound_to
            )
        TeamMember.objects.filter(user=membership.user).delete()
        member_removed.send(sender=Membership, membership=membership, access=access, meta=meta)
        username = membership.user.username
        membership_id = membership.pk  # delete() clears pk
        membership.delete()
        audit.record(
            action="member:delete",
            outcome="success",
            org=access.org,
            actor=access.user,
            actor_label=access.actor_label,
            target_type="orgs.membership",
            target_id=str(membership_id),
            meta=meta,
            data={"user": username, "left": leaving},
        )


# --- roles ---------------------------------------------------------------------------


def role_create(
    *,
    access: Access,
    slug: str,
    name: str,
    permissions: list[str],
    description: str = "",
    meta: RequestMeta | None = None,
) -> Role:
    """A custom role; its permissions must all be held by the actor."""
    access.require("policy:manage")
    perms = acl.normalize_permissions(permissions)
    access.require_all(perms, what="create a role with")
    if slug in acl.BUILTIN_ROLES:
        raise Conflict("This slug belongs to a built-in role", details={"slug": ["Reserved."]})
    try:
        with transaction.atomic():
            role = Role.objects.create(
                org=access.org,
                slug=slug,
                name=name,
                description=description,
                permissions=sorted(perms),
            )
            audit.record(
                action="policy:manage",
                outcome="success",
                org=access.org,
                actor=access.user,
                target=role,
                meta=meta,
                data={"op": "role_create", "permissions": sorted(perms)},
            )
    except IntegrityError as exc:
        raise Conflict(
            "A role with this slug already exists", details={"slug": ["Already taken."]}
        ) from exc
    return role


def role_update(
    *, access: Access, role: Role, changes: dict[str, Any], meta: RequestMeta | None = None
) -> Role:
    access.require("policy:manage")
    if role.is_builtin:
        raise Conflict("Built-in roles cannot be changed")
    # Editing a role needs every permission it holds now and will hold after.
    access.require_all(role.permissions, what="change a role with")
    fields = []
    if "permissions" in changes:
        # Re-grants to everyone holding the role: a signed-in user only.
        access.require_human()
        perms = acl.normalize_permissions(changes["permissions"])
        access.require_all(perms, what="grant")
        role.permissions = sorted(perms)
        fields.append("permissions")
    for name in ("name", "description"):
        if name in changes:
            setattr(role, name, changes[name])
            fields.append(name)
    if fields:
        with transaction.atomic():
            role.save(update_fields=fields)
            audit.record(
                action="policy:manage",
                outcome="success",
                org=access.org,
                actor=access.user,
                target=role,
                meta=meta,
                data={"op": "role_update", "changed": fields, "permissions": role.permissions},
            )
    return role


def role_delete(*, access: Access, role: Role, meta: RequestMeta | None = None) -> None:
    access.require("policy:manage")
    if role.is_builtin:
        raise Conflict("Built-in roles cannot be deleted")
    access.require_all(role.permissions, what="delete a role with")
    with transaction.atomic():
        if (
            Membership.objects.filter(role=role).exists()
            or Invitation.objects.filter(
                role=role, accepted_at__isnull=True, revoked_at__isnull=True
            ).exists()
        ):
            raise Conflict("This role is still assigned; give its members another role first")
        # Accepted and revoked invitations still point at the role (PROTECT):
        # they are spent, so they go with it instead of blocking it forever.
        spent_invitations, _ = Invitation.objects.filter(role=role).delete()
        audit.record(
            action="policy:manage",
            outcome="success",
            org=access.org,
            actor=access.user,
            target=role,
            meta=meta,
            data={
                "op": "role_delete",
                "slug": role.slug,
                "spent_invitations_removed": spent_invitations,
            },
        )
        try:
            role.delete()
        except RestrictedError as exc:
            # Held by something outside orgs/ (a service account): refuse, and roll back.
            raise Conflict(
                "This role is still assigned; give its service accounts another role first"
            ) from exc


# --- teams ---------------------------------------------------------------------------


def team_create(
    *,
    access: Access,
    slug: str,
    name: str,
    description: str = "",
    meta: RequestMeta | None = None,
) -> Team:
    access.require("team:manage")
    try:
        with transaction.atomic():
            team = Team.objects.create(
                org=access.org, slug=slug, name=name, description=description
            )
            audit.record(
                action="team:manage",
                outcome="success",
                org=access.org,
                actor=access.user,
                actor_label=access.actor_label,
                target=team,
                meta=meta,
                data={"op": "create", "slug": slug},
            )
    except IntegrityError as exc:
        raise Conflict(
            "A team with this slug already exists", details={"slug": ["Already taken."]}
        ) from exc
    return team


def team_update(
    *, access: Access, team: Team, changes: dict[str, Any], meta: RequestMeta | None = None
) -> Team:
    access.require("team:manage")
    fields = [name for name in ("name", "description") if name in changes]
    for name in fields:
        setattr(team, name, changes[name])
    if fields:
        with transaction.atomic():
            team.save(update_fields=fields)
            audit.record(
                action="team:manage",
                outcome="success",
                org=access.org,
                actor=access.user,
                actor_label=access.actor_label,
                target=team,
                meta=meta,
                data={"op": "update", "changed": fields},
            )
    return team


def team_delete(*, access: Access, team: Team, meta: RequestMeta | None = None) -> None:
    access.require("team:manage")
    with transaction.atomic():
        audit.record(
            action="team:manage",
            outcome="success",
            org=access.org,
            actor=access.user,
            actor_label=access.actor_label,
            target=team,
            meta=meta,
            data={"op": "delete", "slug": team.slug},
        )
        team.delete()


def team_member_add(
    *, access: Access, team: Team, membership: Membership, meta: RequestMeta | None = None
) -> TeamMember:
    """Add a member to a team; a team carries grants (access rules, per-account
    management), so this needs a signed-in user or the org's directory, never an API
    key (``Access.require_grantor``)."""
    access.require("team:manage")
    access.require_grantor()
    try:
        with transaction.atomic():
            member = TeamMember.objects.create(org=access.org, team=team, user=membership.user)
            audit.record(
                action="team:manage",
                outcome="success",
                org=access.org,
                actor=access.user,
                actor_label=access.actor_label,
                target=team,
                meta=meta,
                data={"op": "member_add", "user": membership.user.username},
            )
    except IntegrityError as exc:
        raise Conflict("Already a member of this team") from exc
    return member


def team_member_remove(
    *, access: Access, team: Team, membership: Membership, meta: RequestMeta | None = None
) -> None:
    access.require("team:manage")
    with transaction.atomic():
        deleted, _ = TeamMember.objects.filter(team=team, user=membership.user).delete()
        if not deleted:
            raise NotFound("Not a member of this team")
        audit.record(
            action="team:manage",
            outcome="success",
            org=access.org,
            actor=access.user,
            actor_label=access.actor_label,
            target=team,
            meta=meta,
            data={"op": "member_remove", "user": membership.user.username},
        )


# --- invitations -------------------------------------------------------------------


def _enqueue_send(invitation: Invitation, meta: RequestMeta | None) -> None:
    from orgs import tasks

    send_number = invitation.send_count + 1
    # The link in the mail points where the inviter reached the server (public_url).
    base_url = public_url(meta)
    transaction.on_commit(
        lambda: tasks.invitation_send.delay(
            str(invitation.org_id), str(invitation.pk), send_number, base_url=base_url
        )
    )


def invitation_create(
    *, access: Access, email: str, role: Role, meta: RequestMeta | None = None
) -> Invitation:
    """Invite ``email`` with ``role``; the e-mail carrying the link is sent by a worker.

    An invitation grants a role: it needs a signed-in user (never an API key).
    """
    access.require("member:invite")
    access.require_human()
    if role.org_id not in (None, access.org.pk):
        raise NotFound("Role not found")
    if role.is_builtin and role.slug == acl.OWNER and not access.is_owner:
        raise PermissionDenied("Only an Owner can invite an Owner")
    access.require_all(role.permissions, what="invite with a role holding")
    email = email.strip()
    with transaction.atomic():
        if Membership.objects.filter(user__email__iexact=email).exists():
            raise Conflict(
                "This person is already a member", details={"email": ["Already a member."]}
            )
        if Invitation.objects.pending().filter(email__iexact=email).exists():
            raise Conflict(
                "A pending invitation for this e-mail exists; resend it instead",
                details={"email": ["Already invited."]},
            )
        invitation = Invitation.objects.create(
            org=access.org,
            email=email,
            role=role,
            invited_by=access.membership,
            # Placeholder: the worker mints the real token when it sends the mail.
            token_digest=token_digest(secrets.token_urlsafe(32)),
            expires_at=clock.now() + timedelta(days=settings.INFERIA_INVITATION_DAYS),
        )
        audit.record(
            action="member:invite",
            outcome="success",
            org=access.org,
            actor=access.user,
            target=invitation,
            meta=meta,
            data={"role": role.slug, "email": email},
        )
        _enqueue_send(invitation, meta)
    return invitation


def invitation_revoke(
    *, access: Access, invitation: Invitation, meta: RequestMeta | None = None
) -> Invitation:
    access.require("member:invite")
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.status != "pending":
            raise Conflict(f"The invitation is {invitation.status}")
        invitation.revoked_at = clock.now()
        invitation.save(update_fields=["revoked_at"])
        audit.record(
            action="member:invite",
            outcome="success",
            org=access.org,
            actor=access.user,
            target=invitation,
            meta=meta,
            data={"op": "revoke"},
        )
    return invitation


def invitation_resend(
    *, access: Access, invitation: Invitation, meta: RequestMeta | None = None
) -> Invitation:
    """Send a new link (the previous one stops working) and extend the expiry."""
    access.require("member:invite")
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.accepted_at or invitation.revoked_at:
            raise Conflict(f"The invitation is {invitation.status}")
        invitation.expires_at = clock.now() + timedelta(days=settings.INFERIA_INVITATION_DAYS)
        invitation.save(update_fields=["expires_at"])
        audit.record(
            action="member:invite",
            outcome="success",
            org=access.org,
            actor=access.user,
            target=invitation,
            meta=meta,
            data={"op": "resend"},
        )
        _enqueue_send(invitation, meta)
    return invitation


def invitation_deliver(*, invitation_id: str, send_number: int, base_url: str = "") -> bool:
    """Mint a fresh token, store its digest and e-mail the link (idempotent per send).

    Returns False when this send already happened or the invitation is no
    longer pending. The token exists only in the e-mail, never in the broker.
    """
    from django.core.mail import send_mail

    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update()
            .select_related("org", "role")
            .filter(pk=invitation_id)
            .first()
        )
        if invitation is None or invitation.send_count >= send_number:
            return False
        if invitation.status != "pending":
            return False
        token_plaintext = secrets.token_urlsafe(32)
        invitation.token_digest = token_digest(token_plaintext)
        invitation.send_count = send_number
        invitation.sent_at = clock.now()
        invitation.save(update_fields=["token_digest", "send_count", "sent_at"])
        base = (base_url or public_url(None)).rstrip("/")
        page = f"{base}/invitations/{token_plaintext}"
        link = f"{base}/api/v1/invitations/{token_plaintext}/accept"
        send_mail(
            subject=f"You are invited to {invitation.org.name} on Inferia",
            message=(
                f"You have been invited to join {invitation.org.name} as {invitation.role.name}.\n\n"
                f"Open this page to accept, with your account for this e-mail address or a new "
                f"one:\n{page}\n\n"
                f"(From a script: POST to {link} with a bearer token of that account, or with a "
                f"new username and password.)\n\n"
                f"The invitation expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n"
            ),
            from_email=None,
            recipient_list=[invitation.email],
        )
    return True


def _new_account(username: str | None, password: str | None) -> tuple[str, str]:
    """The username and password of an account made by accepting an invitation."""
    if not (username and password):
        raise AuthenticationFailed("Log in, or give a username and password for a new account")
    return username, password


def invitation_accept(
    *,
    token: str,
    user: User | None,
    username: str | None = None,
    password: str | None = None,
    meta: RequestMeta | None = None,
) -> Membership:
    """Accept once. A logged-in user must own the invited e-mail; otherwise a new
    account is created from ``username``/``password``. The inviter must still be
    allowed to grant the role (bounded delegation at use)."""
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError as DjangoValidationError

    if user is None:
        _new_account(username, password)  # refuse early, before any lock
    with transaction.atomic():
        # Cross-org by design: the token alone identifies its organization.
        invitation = (
            Invitation.all_orgs.select_for_update(of=("self",))
            .select_related("org", "role", "invited_by__role")
            .filter(token_digest=token_digest(token))
            .first()
        )
        if invitation is None:
            raise NotFound("Invitation not found")
        if invitation.status != "pending":
            raise Conflict(f"This invitation is {invitation.status}")
        with org_scope(invitation.org):
            inviter = invitation.invited_by
            inviter_perms = acl.membership_permissions(inviter) if inviter else frozenset()
            if (
                "member:invite" not in inviter_perms
                or not set(invitation.role.permissions) <= inviter_perms
            ):
                raise Conflict("This invitation is no longer valid; ask for a new one")
            if user is None:
                username, password = _new_account(username, password)
                if User.objects.filter(username=username).exists():
                    raise Conflict(
                        "This username is taken", details={"username": ["Already taken."]}
                    )
                candidate = User(username=username, email=invitation.email)
                try:
                    validate_password(password, candidate)
                except DjangoValidationError as exc:
                    raise ValidationError(
                        "Password is too weak", details={"password": exc.messages}
                    ) from exc
                candidate.set_password(password)
                candidate.save()
                user = candidate
            elif user.email.lower() != invitation.email.lower():
                raise PermissionDenied("This invitation was sent to another e-mail address")
            if Membership.objects.filter(user=user).exists():
                raise Conflict("You are already a member of this organization")
            membership = Membership.objects.create(
                org=invitation.org,
                user=user,
                role=invitation.role,
                granted_by_membership=None if invitation.role.slug == acl.OWNER else inviter,
            )
            invitation.accepted_at = clock.now()
            invitation.accepted_by = user
            invitation.save(update_fields=["accepted_at", "accepted_by"])
            audit.record(
                action="auth:invitation_accept",
                outcome="success",
                org=invitation.org,
                actor=user,
                target=membership,
                meta=meta,
                data={"role": invitation.role.slug},
            )
    return membership


def invitation_expire_due() -> int:
    """Record each invitation's expiry once (accepting it is already refused by date)."""
    now = clock.now()
    recorded = 0
    # Cross-org by design: a platform job over every tenant.
    due = Invitation.all_orgs.filter(
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__lte=now,
        expired_recorded_at__isnull=True,
    ).values_list("pk", flat=True)
    for pk in due:
        with transaction.atomic():
            invitation = (
                Invitation.all_orgs.select_for_update(of=("self",)).select_related("org").get(pk=pk)
            )
            if invitation.expired_recorded_at is not None:
                continue
            invitation.expired_recorded_at = now
            invitation.save(update_fields=["expired_recorded_at"])
            audit.record(
                action="member:invite",
                outcome="success",
                org=invitation.org,
                actor_label="system",
                target=invitation,
                data={"op": "expire"},
            )
            recorded += 1
    return recorded
