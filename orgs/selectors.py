"""Named tenant-scoped reads of orgs/ (they run inside the active org scope)."""

from __future__ import annotations

from django.db.models import Count, F, Q, QuerySet

from inferia.errors import ValidationError
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
from orgs.scoping import current_org


def organization_list_for_user(user: User) -> QuerySet[Organization]:
    return Organization.objects.filter(
        pk__in=Membership.all_orgs.filter(user=user).values("org_id")
    ).order_by("slug")


def membership_list_for_user(user: User) -> QuerySet[Membership]:
    """The user's memberships across orgs (their own data, for /auth/me)."""
    return (
        Membership.all_orgs.filter(user=user)
        .select_related("org", "role", "granted_by_membership__role")
        .order_by("org__slug")
    )


def member_list() -> QuerySet[Membership]:
    return Membership.objects.select_related("user", "role").order_by("created_at")


def member_get(membership_id) -> Membership | None:
    return member_list().filter(pk=membership_id).first()


def member_get_by_user(user_id) -> Membership | None:
    return member_list().filter(user_id=user_id).first()


def role_list() -> QuerySet[Role]:
    org = current_org()
    # Built-in roles are shared by every org: count only this org's members.
    return (
        Role.objects.for_org(org)
        .annotate(member_count=Count("memberships", filter=Q(memberships__org=org)))
        .order_by("org_id", "slug")
    )


def role_get(role_id) -> Role | None:
    return Role.objects.for_org(current_org()).filter(pk=role_id).first()


def team_list() -> QuerySet[Team]:
    return Team.objects.annotate(member_count=Count("team_members")).order_by("slug")


def team_member_list(team: Team) -> QuerySet[TeamMember]:
    return TeamMember.objects.filter(team=team).select_related("user").order_by("created_at")


def invitation_by_token(token: str) -> Invitation | None:
    """The invitation a token names. Cross-org by design: the token alone identifies it."""
    return (
        Invitation.all_orgs.select_related("org", "role")
        .filter(token_digest=token_digest(token))
        .first()
    )


def invitation_list() -> QuerySet[Invitation]:
    return Invitation.objects.select_related("role", "invited_by__user").order_by("-created_at")


def role_get_by_ref(ref: str, field: str = "role", org: Organization | None = None) -> Role | None:
    """The one resolver of a role reference: a role of the active org, or a built-in.

    ``ref`` is, in this order of precedence:
    1. the role's id (a UUID);
    2. its slug, case-insensitively (``member``, ``Member``, ``data-science``);
       built-in slugs are reserved (``role_create`` refuses them), so a slug names one role;
    3. its displayed name, case-insensitively (``Data Science``).
    A slug wins over a name: ``admin`` is the built-in Admin even when a custom role is
    named "admin" (that role is reached by its own slug or id). A name shared by several
    roles is ambiguous: VALIDATION_ERROR on ``field`` asking for the slug or id.
    ``None`` when nothing matches. ``org`` defaults to the active scope's org.
    """
    import uuid

    roles = Role.objects.for_org(org if org is not None else current_org())
    text = str(ref).strip()
    if not text:
        return None
    try:
        return roles.filter(pk=uuid.UUID(text)).first()
    except ValueError:
        pass
    by_slug = roles.filter(slug=text.lower()).order_by(F("org_id").asc(nulls_first=True)).first()
    if by_slug is not None:
        return by_slug
    by_name = list(roles.filter(name__iexact=text)[:2])
    if len(by_name) > 1:
        raise ValidationError(
            "Ambiguous role",
            details={field: [f"Several roles are named {text!r}; give the role's slug or id."]},
        )
    return by_name[0] if by_name else None


def role_require_by_ref(ref: str, field: str = "role") -> Role:
    """``role_get_by_ref`` for a chosen role: a miss (say, the role was deleted since the
    form was shown) is a validation error on ``field``."""
    role = role_get_by_ref(ref, field)
    if role is None:
        raise ValidationError(
            "Unknown role", details={field: ["No such role in this organization."]}
        )
    return role
