"""Named tenant-scoped reads of SCIM (they run inside the active org scope).

The SCIM Users of an org are its members plus the people its directory deactivated
(kept so that they can be read and reactivated); each row carries the attributes
SCIM shows as annotations (``scim_*``): the directory's own record where there is
one, else what the account says. Groups are the org's teams.
"""

from __future__ import annotations

from django.db.models import (
    CharField,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce, NullIf

from orgs.models import Membership, Team, TeamMember, User
from scim.filters import BOOLEAN, Attribute
from scim.models import ScimGroup, ScimToken, ScimUser

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"

USER_FILTERS = {
    "username": Attribute("scim_user_name"),
    "externalid": Attribute("scim_external_id", case_exact=True),
    "emails": Attribute("scim_email"),
    "emails.value": Attribute("scim_email"),
    "displayname": Attribute("scim_display_name"),
    "name.givenname": Attribute("scim_given_name"),
    "name.familyname": Attribute("scim_family_name"),
    "active": Attribute("scim_active", kind=BOOLEAN),
}
GROUP_FILTERS = {
    "displayname": Attribute("name"),
    "externalid": Attribute("scim_external_id", case_exact=True),
}


def scim_token_list() -> QuerySet[ScimToken]:
    return ScimToken.objects.select_related("role", "created_by").order_by("-created_at")


def _text(expression) -> Subquery:
    return Subquery(expression, output_field=CharField())


def scim_user_list() -> QuerySet[User]:
    """Members and directory-deactivated people of the active org, oldest first."""
    rows = ScimUser.objects.filter(user=OuterRef("pk"), deleted_at__isnull=True)
    empty = Value("")
    return (
        User.objects.annotate(
            scim_active=Exists(Membership.objects.filter(user=OuterRef("pk"))),
            scim_listed=Exists(rows),
        )
        .filter(Q(scim_active=True) | Q(scim_listed=True))
        .annotate(
            scim_user_name=Coalesce(
                _text(rows.values("user_name")[:1]),
                NullIf(F("email"), empty),
                F("username"),
                output_field=CharField(),
            ),
            scim_external_id=Coalesce(
                _text(rows.values("external_id")[:1]), empty, output_field=CharField()
            ),
            scim_email=Coalesce(
                NullIf(_text(rows.values("email")[:1]), empty),
                F("email"),
                output_field=CharField(),
            ),
            scim_given_name=Coalesce(
                NullIf(_text(rows.values("given_name")[:1]), empty),
                F("first_name"),
                output_field=CharField(),
            ),
            scim_family_name=Coalesce(
                NullIf(_text(rows.values("family_name")[:1]), empty),
                F("last_name"),
                output_field=CharField(),
            ),
            scim_display_name=Coalesce(
                _text(rows.values("display_name")[:1]), empty, output_field=CharField()
            ),
            scim_updated_at=Subquery(rows.values("updated_at")[:1]),
        )
        .order_by("date_joined", "pk")
    )


def scim_user_get(user_id: str) -> User | None:
    return scim_user_list().filter(pk=user_id).first()


def team_ids_by_user(user_ids: list) -> dict[str, list[Team]]:
    """The teams of each of these users in the active org (for the ``groups`` attribute)."""
    teams: dict[str, list[Team]] = {}
    for member in TeamMember.objects.select_related("team").filter(user_id__in=user_ids):
        teams.setdefault(str(member.user_id), []).append(member.team)
    return teams


def scim_group_list() -> QuerySet[Team]:
    external = ScimGroup.objects.filter(team=OuterRef("pk")).values("external_id")[:1]
    return Team.objects.annotate(
        scim_external_id=Coalesce(_text(external), Value(""), output_field=CharField()),
    ).order_by("name", "pk")


def scim_group_get(team_id: str) -> Team | None:
    return scim_group_list().filter(pk=team_id).first()


def group_members(teams: list[Team]) -> dict[str, list[User]]:
    """The member users of each team, with the userName SCIM shows for them."""
    members: dict[str, list[User]] = {}
    users = {
        str(user.pk): user
        for user in scim_user_list().filter(
            pk__in=TeamMember.objects.filter(team__in=teams).values("user_id")
        )
    }
    for member in TeamMember.objects.filter(team__in=teams).order_by("created_at"):
        user = users.get(str(member.user_id))
        if user is not None:
            members.setdefault(str(member.team_id), []).append(user)
    return members
