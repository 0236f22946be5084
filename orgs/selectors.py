"""Named tenant-scoped reads of orgs/ (they run inside the active org scope)."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

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


def role_get_by_ref(ref: str) -> Role | None:
    """A role of the active org (or built-in) by id or by slug."""
    import uuid

    try:
        return role_get(uuid.UUID(str(ref)))
    except ValueError:
        return Role.objects.for_org(current_org()).filter(slug=ref).order_by("org_id").first()


def role_require_by_ref(ref: str, field: str = "role") -> Role:
    """``role_get_by_ref`` for a chosen role: a miss (say, the role was deleted since the
    form was shown) is a validation error on ``field``."""
    role = role_get_by_ref(ref)
    if role is None:
        raise ValidationError(
            "Unknown role", details={field: ["No such role in this organization."]}
        )
    return role
