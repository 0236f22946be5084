"""Every state change of SCIM provisioning: tokens, users (members) and groups (teams).

Tokens are managed by people holding ``sso:manage``; everything else runs with the
Access of a SCIM token (``scim.auth``) and is audited with the token as actor
(``scim:ifs_<public id>``). Rules reused, not copied: removing a member is
``orgs.services.tenancy.member_remove`` (personal keys revoked, grants rebound, the
last Owner kept, Owners only by an Owner's token), ending every login of the person
is ``orgs.services.auth.user_invalidate_tokens``, teams are the ``tenancy.team_*``
services. A directory never changes a person's password, and never what another
organization sees of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from audit import services as audit
from inferia import clock
from inferia.errors import Conflict, NotFound, PermissionDenied, ValidationError
from inferia.request_meta import RequestMeta
from keys import apikeys
from orgs import access as acl
from orgs.access import Access
from orgs.models import Membership, Role, Team, TeamMember, User, slug_from_name
from orgs.services import auth, tenancy
from scim.models import TOKEN_PREFIX, ScimGroup, ScimToken, ScimUser


class Uniqueness(Conflict):
    """A userName, externalId or displayName that is already taken (SCIM ``uniqueness``)."""


def _record(access: Access, action: str, target: Any, meta: RequestMeta | None, **data: Any):
    audit.record(
        action=action,
        outcome="success",
        org=access.org,
        actor=access.user,
        actor_label=access.actor_label,
        target=target,
        meta=meta,
        data={"via": "scim", **data},
    )


# --- tokens ---------------------------------------------------------------------------


def _token_record(access: Access, token: ScimToken, meta: RequestMeta | None, **data: Any) -> None:
    audit.record(
        action="sso:manage",
        outcome="success",
        org=access.org,
        actor=access.user,
        actor_label=access.actor_label,
        target=token,
        meta=meta,
        data={"prefix": token.prefix, **data},
    )


def scim_token_create(
    *, access: Access, name: str, role: Role, meta: RequestMeta | None = None
) -> tuple[ScimToken, str]:
    """Mint a SCIM token; returns it with its plaintext (the only time it is shown).

    Needs ``sso:manage`` and a signed-in person (never an API key). ``role`` is what
    the token provisions members with: never Owner, and only a role whose every
    permission the creator holds (bounded delegation; checked again at each use).
    Raises PERMISSION_DENIED, NOT_FOUND (a role of another org).
    """
    access.require("sso:manage")
    _user, membership = access.require_human()
    if role.org_id not in (None, access.org.pk):
        raise NotFound("Role not found")
    if role.is_builtin and role.slug == acl.OWNER:
        raise PermissionDenied("SCIM cannot provision Owners; choose another role")
    access.require_all(role.permissions, what="provision members with a role holding")
    new = apikeys.generate(prefix=TOKEN_PREFIX)
    with transaction.atomic():
        token = ScimToken.objects.create(
            org=access.org,
            name=name,
            public_id=new.public_id,
            secret_digest=new.digest,
            last_four=new.last_four,
            role=role,
            granted_by_membership=membership,
            created_by=access.user,
        )
        _token_record(access, token, meta, op="scim_token_create", role=role.slug)
    return token, new.plaintext


def scim_token_revoke(
    *, access: Access, token: ScimToken, meta: RequestMeta | None = None
) -> ScimToken:
    """Revoke a SCIM token: the next request with it is refused. Needs ``sso:manage``."""
    access.require("sso:manage")
    with transaction.atomic():
        token = ScimToken.objects.select_for_update().get(pk=token.pk)
        if token.revoked_at is None:
            token.revoked_at = clock.now()
            token.save(update_fields=["revoked_at"])
            _token_record(access, token, meta, op="scim_token_revoke")
    return token


# --- users ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UserAttributes:
    """The attributes of a SCIM User that Inferia keeps (RFC 7643 section 4.1)."""

    user_name: str
    external_id: str = ""
    given_name: str = ""
    family_name: str = ""
    display_name: str = ""
    email: str = ""
    active: bool = True


def _scim_token(access: Access) -> ScimToken:
    token = access.scim_token
    if token is None:
        raise PermissionDenied("Only the organization's SCIM token provisions members")
    return token


def _membership(user: User) -> Membership | None:
    return Membership.objects.select_related("role", "user").filter(user=user).first()


def _row(user: User) -> ScimUser | None:
    return ScimUser.objects.filter(user=user).first()


def _user_name_taken(user_name: str, user: User | None) -> bool:
    rows = ScimUser.objects.filter(deleted_at__isnull=True, user_name__iexact=user_name)
    if user is not None:
        rows = rows.exclude(user=user)
    return rows.exists()


def _shared_with_other_orgs(access: Access, user: User) -> bool:
    # Cross-org by design: whether anyone but this directory sees this person.
    return Membership.all_orgs.filter(user=user).exclude(org=access.org).exists()


def _created_by_a_directory_elsewhere(access: Access, user: User) -> bool:
    # Cross-org by design: a user another org's directory created carries an e-mail that
    # directory asserted, never proven to us; it is no basis for linking.
    return ScimUser.all_orgs.filter(user=user, created_user=True).exclude(org=access.org).exists()


def _activate(access: Access, user: User, meta: RequestMeta | None) -> Membership:
    """Make ``user`` a member with the token's role, bounded by the token's creator."""
    token = _scim_token(access)
    access.require("member:invite")
    role = token.role
    grantor = token.granted_by_membership
    granted = acl.membership_permissions(grantor) if grantor is not None else acl.PERMISSION_SET
    if not set(role.permissions) <= granted:
        raise PermissionDenied(
            f"The member who created this SCIM token can no longer grant the role {role.slug}"
        )
    membership = Membership.objects.create(
        org=access.org, user=user, role=role, granted_by_membership=grantor
    )
    _record(access, "member:invite", membership, meta, op="activate", role=role.slug)
    return membership


def _deactivate(access: Access, membership: Membership, meta: RequestMeta | None) -> None:
    """Remove the membership (personal keys revoked, the gateway's epoch bumped) and
    end every session and refresh token of the person at once."""
    access.require("member:delete")
    user = membership.user
    tenancy.member_remove(access=access, membership=membership, meta=meta)
    auth.user_invalidate_tokens(user=user)
    audit.record(
        action="member:delete",
        outcome="success",
        org=access.org,
        actor_label=access.actor_label,
        target=user,
        meta=meta,
        data={"via": "scim", "op": "deactivate", "sessions_ended": True},
    )


def _sync_global_user(access: Access, row: ScimUser) -> None:
    """A user this directory created and nobody else shares follows the directory's
    name and e-mail; anyone else's account is never changed by one org's directory."""
    user = row.user
    if not row.created_user or _shared_with_other_orgs(access, user):
        return
    if row.user_name != user.username:
        if User.objects.filter(username__iexact=row.user_name).exclude(pk=user.pk).exists():
            raise Uniqueness(
                "This userName belongs to another account", details={"userName": ["Taken."]}
            )
        user.username = row.user_name
    user.first_name = row.given_name[:150]
    user.last_name = row.family_name[:150]
    user.email = row.email
    user.save(update_fields=["username", "first_name", "last_name", "email"])


def _apply(row: ScimUser, attributes: UserAttributes) -> list[str]:
    changed = []
    for field, value in (
        ("user_name", attributes.user_name),
        ("external_id", attributes.external_id),
        ("given_name", attributes.given_name),
        ("family_name", attributes.family_name),
        ("display_name", attributes.display_name),
        ("email", attributes.email),
    ):
        if getattr(row, field) != value:
            setattr(row, field, value)
            changed.append(field)
    return changed


def _save_row(row: ScimUser, fields: list[str] | None = None) -> None:
    try:
        with transaction.atomic():
            if fields is None:
                row.save()
            else:
                row.save(update_fields=fields)
    except IntegrityError as exc:
        raise Uniqueness(
            "This externalId belongs to another user", details={"externalId": ["Taken."]}
        ) from exc


def _linkable_user(access: Access, email: str) -> User | None:
    """The existing account to add as a member for a new directory user: the one active
    account whose e-mail (proven by an invitation or set by an operator) is ``email``.

    Raises CONFLICT when several accounts carry it (nobody is guessed).
    """
    if not email:
        return None
    candidates = [
        user
        for user in User.objects.filter(email__iexact=email, is_active=True)
        if not _created_by_a_directory_elsewhere(access, user)
    ]
    if len(candidates) > 1:
        raise Uniqueness(
            "Several accounts carry this e-mail address; an operator must resolve it",
            details={"emails": ["Ambiguous."]},
        )
    return candidates[0] if candidates else None


def scim_user_create(
    *, access: Access, attributes: UserAttributes, meta: RequestMeta | None = None
) -> User:
    """Provision a person in the token's org (POST /Users) and return the user.

    An account with the same proven e-mail gets a membership (its password, name and
    other organizations untouched); otherwise a new account without a usable password
    is created (it signs in through single sign-on). A user this directory deleted
    before is revived. Raises CONFLICT (``Uniqueness``) when the userName or
    externalId is taken in this org, the person is already a member, or the
    username belongs to an account that cannot be linked.
    """
    access.require("member:invite")
    _scim_token(access)
    with transaction.atomic():
        if _user_name_taken(attributes.user_name, None):
            raise Uniqueness(
                "A user with this userName already exists", details={"userName": ["Taken."]}
            )
        deleted = (
            ScimUser.objects.select_related("user")
            .filter(deleted_at__isnull=False, user_name__iexact=attributes.user_name)
            .first()
        )
        if deleted is not None:
            user = deleted.user
            row = deleted
            row.deleted_at = None
            created_user = False
        else:
            user_or_none = _linkable_user(access, attributes.email)
            created_user = user_or_none is None
            if user_or_none is None:
                if User.objects.filter(username__iexact=attributes.user_name).exists():
                    raise Uniqueness(
                        "This userName belongs to an account this directory cannot link",
                        details={"userName": ["Taken."]},
                    )
                user = User(
                    username=attributes.user_name,
                    email=attributes.email,
                    first_name=attributes.given_name[:150],
                    last_name=attributes.family_name[:150],
                )
                user.set_unusable_password()
                user.save()
            else:
                user = user_or_none
            existing = _row(user)
            if existing is not None and existing.deleted_at is None:
                raise Uniqueness("This user already exists", details={"userName": ["Taken."]})
            row = existing or ScimUser(org=access.org, user=user, created_user=created_user)
            row.deleted_at = None
        if _membership(user) is not None and deleted is None:
            raise Uniqueness(
                "This person is already a member; find them with a filter on userName",
                details={"userName": ["Already a member."]},
            )
        _apply(row, attributes)
        row.active = attributes.active
        _save_row(row)
        membership = _membership(user)
        if attributes.active and membership is None:
            _activate(access, user, meta)
        elif not attributes.active and membership is not None:
            _deactivate(access, membership, meta)
        _record(
            access,
            "member:invite",
            user,
            meta,
            op="create",
            created_account=created_user,
            revived=deleted is not None,
            active=attributes.active,
        )
    return user


def scim_user_replace(
    *,
    access: Access,
    user: User,
    attributes: UserAttributes,
    meta: RequestMeta | None = None,
) -> User:
    """Set a provisioned person's attributes (PUT, and PATCH once its operations are
    applied). ``active`` False removes the membership and ends every login of the
    person at once; True makes them a member again (their old keys stay revoked).

    Raises CONFLICT (``Uniqueness``; the last Owner), PERMISSION_DENIED (an Owner, by
    a token whose creator is no Owner).
    """
    access.require("member:update")
    _scim_token(access)
    with transaction.atomic():
        if _user_name_taken(attributes.user_name, user):
            raise Uniqueness(
                "A user with this userName already exists", details={"userName": ["Taken."]}
            )
        row = _row(user) or ScimUser(org=access.org, user=user)
        was_active = True if row._state.adding else row.active
        row.deleted_at = None
        changed = _apply(row, attributes)
        membership = _membership(user)
        if attributes.active and membership is None:
            _activate(access, user, meta)
        elif not attributes.active and membership is not None:
            _deactivate(access, membership, meta)
        row.active = attributes.active
        _save_row(row)
        _sync_global_user(access, row)
        _record(
            access,
            "member:update",
            user,
            meta,
            op="replace",
            changed=changed,
            active=attributes.active,
            was_active=was_active,
        )
    return user


def scim_user_delete(*, access: Access, user: User, meta: RequestMeta | None = None) -> None:
    """DELETE /Users/{id}: the membership goes as on deactivation and the directory
    forgets the person (a later GET is 404; the account itself stays)."""
    access.require("member:delete")
    _scim_token(access)
    with transaction.atomic():
        membership = _membership(user)
        if membership is not None:
            _deactivate(access, membership, meta)
        row = _row(user)
        if row is not None:
            row.active = False
            row.deleted_at = clock.now()
            row.save(update_fields=["active", "deleted_at", "updated_at"])
        _record(access, "member:delete", user, meta, op="delete")


# --- groups ---------------------------------------------------------------------------


def _canonical_ids(values: Iterable[str]) -> dict[str, str | None]:
    """Each given id with its canonical UUID text (None when it is no UUID)."""
    result: dict[str, str | None] = {}
    for value in values:
        try:
            result[str(value)] = str(uuid.UUID(str(value)))
        except ValueError:
            result[str(value)] = None
    return result


def _members_of(access: Access, user_ids: Iterable[str]) -> list[Membership]:
    """The memberships of the users a group names; a user who is not an active
    member of this org is a VALIDATION_ERROR (never a member of another org)."""
    canonical = _canonical_ids(user_ids)
    found = {
        str(membership.user_id): membership
        for membership in Membership.objects.select_related("user").filter(
            user_id__in=[value for value in canonical.values() if value]
        )
    }
    missing = [given for given, value in canonical.items() if value not in found]
    if missing:
        raise ValidationError(
            "Group members must be active members of this organization",
            details={"members": [f"Unknown or inactive user: {value}" for value in missing]},
        )
    return list({value: found[value] for value in canonical.values() if value}.values())


def _set_external_id(team: Team, external_id: str | None) -> None:
    if external_id is None:
        return
    group = ScimGroup.objects.filter(team=team).first()
    try:
        with transaction.atomic():
            if not external_id:
                if group is not None:
                    group.delete()
            elif group is None:
                ScimGroup.objects.create(org=team.org, team=team, external_id=external_id)
            elif group.external_id != external_id:
                group.external_id = external_id
                group.save(update_fields=["external_id"])
    except IntegrityError as exc:
        raise Uniqueness(
            "This externalId belongs to another group", details={"externalId": ["Taken."]}
        ) from exc


def scim_group_create(
    *,
    access: Access,
    display_name: str,
    external_id: str = "",
    member_ids: Iterable[str] = (),
    meta: RequestMeta | None = None,
) -> Team:
    """POST /Groups: a team named ``display_name`` (slug derived from it) with these
    members. Raises CONFLICT (``Uniqueness``) for a taken name, VALIDATION_ERROR."""
    _scim_token(access)
    slug = slug_from_name(display_name)
    if not slug:
        raise ValidationError(
            "displayName needs a letter or digit", details={"displayName": ["Invalid."]}
        )
    with transaction.atomic():
        if Team.objects.filter(name__iexact=display_name).exists():
            raise Uniqueness(
                "A group with this displayName exists", details={"displayName": ["Taken."]}
            )
        try:
            team = tenancy.team_create(access=access, slug=slug, name=display_name, meta=meta)
        except Conflict as exc:
            raise Uniqueness(exc.message, details={"displayName": ["Taken."]}) from exc
        _set_external_id(team, external_id)
        for membership in _members_of(access, member_ids):
            tenancy.team_member_add(access=access, team=team, membership=membership, meta=meta)
    return team


def scim_group_update(
    *,
    access: Access,
    team: Team,
    display_name: str | None = None,
    external_id: str | None = None,
    members_set: Iterable[str] | None = None,
    members_add: Iterable[str] = (),
    members_remove: Iterable[str] = (),
    meta: RequestMeta | None = None,
) -> Team:
    """PUT and PATCH /Groups/{id}: rename, set the externalId, replace the members
    (``members_set``) or add and remove some. Adding a present member or removing an
    absent one changes nothing (IdPs resend). Raises VALIDATION_ERROR, CONFLICT."""
    _scim_token(access)
    access.require("team:manage")
    with transaction.atomic():
        if display_name is not None and display_name != team.name:
            if Team.objects.filter(name__iexact=display_name).exclude(pk=team.pk).exists():
                raise Uniqueness(
                    "A group with this displayName exists", details={"displayName": ["Taken."]}
                )
            team = tenancy.team_update(
                access=access, team=team, changes={"name": display_name}, meta=meta
            )
        _set_external_id(team, external_id)
        current = {
            str(uid)
            for uid in TeamMember.objects.filter(team=team).values_list("user_id", flat=True)
        }
        if members_set is not None:
            wanted = _members_of(access, members_set)
            wanted_ids = {str(m.user_id) for m in wanted}
            to_add = [m for m in wanted if str(m.user_id) not in current]
            to_remove = current - wanted_ids
        else:
            to_add = [m for m in _members_of(access, members_add) if str(m.user_id) not in current]
            to_remove = {
                value for value in _canonical_ids(members_remove).values() if value
            } & current
        for membership in to_add:
            tenancy.team_member_add(access=access, team=team, membership=membership, meta=meta)
        for membership in Membership.objects.select_related("user").filter(
            user_id__in=sorted(to_remove)
        ):
            tenancy.team_member_remove(access=access, team=team, membership=membership, meta=meta)
        # A departed person's team row goes with their membership (member_remove).
    return team


def scim_group_delete(*, access: Access, team: Team, meta: RequestMeta | None = None) -> None:
    """DELETE /Groups/{id}: the team goes (its access rules lose it)."""
    _scim_token(access)
    tenancy.team_delete(access=access, team=team, meta=meta)
