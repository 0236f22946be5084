"""Per-object grants (django-guardian): let a team or a user manage one provider account.

A team is mirrored by a Django group (``inferia-team:<id>``) whose members
follow the team's; guardian stores the grant against the group or the user.
Checked only through ``Access.can_on``.
"""

from __future__ import annotations

from typing import cast

from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from guardian.models import UserObjectPermission
from guardian.shortcuts import assign_perm, get_groups_with_perms, get_users_with_perms, remove_perm

from audit import services as audit
from inferia.request_meta import RequestMeta
from keys.models import ProviderAccount
from orgs.access import OBJECT_GRANTS, Access
from orgs.models import Membership, Team, TeamMember, User

CODENAME = "keys." + OBJECT_GRANTS["provider_account:manage"]


def _group_name(team_id) -> str:
    return f"inferia-team:{team_id}"


def team_group(team: Team) -> Group:
    """The team's mirror group, created and filled on first use."""
    group, created = Group.objects.get_or_create(name=_group_name(team.pk))
    if created:
        group.user_set.set(User.objects.filter(team_memberships__team=team))
    return group


@receiver(post_save, sender=TeamMember, dispatch_uid="keys-team-group-add")
def _team_member_added(sender, instance: TeamMember, created: bool, **kwargs) -> None:
    group = Group.objects.filter(name=_group_name(instance.team_id)).first()
    if created and group is not None:
        # add()/remove() take any pk; django-stubs assume an int pk (User's is a UUID).
        group.user_set.add(instance.user_id)  # type: ignore[arg-type]


@receiver(post_delete, sender=TeamMember, dispatch_uid="keys-team-group-remove")
def _team_member_removed(sender, instance: TeamMember, **kwargs) -> None:
    group = Group.objects.filter(name=_group_name(instance.team_id)).first()
    if group is not None:
        group.user_set.remove(instance.user_id)  # type: ignore[arg-type]


@receiver(post_delete, sender=Team, dispatch_uid="keys-team-group-delete")
def _team_deleted(sender, instance: Team, **kwargs) -> None:
    Group.objects.filter(name=_group_name(instance.pk)).delete()


@receiver(post_delete, sender=Membership, dispatch_uid="keys-grants-member-left")
def _member_left(sender, instance: Membership, **kwargs) -> None:
    """A member's grants on the org's accounts end with the membership: rejoining revives none."""
    account_ids = ProviderAccount.all_orgs.filter(org_id=instance.org_id).values_list(
        "pk", flat=True
    )
    UserObjectPermission.objects.filter(
        user_id=instance.user_id,
        content_type=ContentType.objects.get_for_model(ProviderAccount),
        object_pk__in=[str(pk) for pk in account_ids],
    ).delete()


def provider_account_grants(account: ProviderAccount) -> dict[str, list[str]]:
    # With attach_perms=True guardian returns {object: [perm, ...]}; its annotations
    # (Group | dict, Any | list[str]) do not follow the flag.
    groups = cast(dict[Group, list[str]], get_groups_with_perms(account, attach_perms=True))
    team_ids = [g.name.split(":", 1)[1] for g in groups if g.name.startswith("inferia-team:")]
    users = cast(
        dict[User, list[str]],
        get_users_with_perms(account, attach_perms=True, with_group_users=False),
    )
    return {
        "teams": sorted(Team.objects.filter(pk__in=team_ids).values_list("slug", flat=True)),
        "users": sorted(u.username for u in users),
    }


def provider_account_grant(
    *,
    access: Access,
    account: ProviderAccount,
    team: Team | None = None,
    user: User | None = None,
    revoke: bool = False,
    meta: RequestMeta | None = None,
) -> dict[str, list[str]]:
    """Grant (or revoke) ``provider_account:manage`` on one account to a team or a member."""
    access.require("provider_account:manage")
    access.require_human()
    with transaction.atomic():
        holder = team_group(team) if team is not None else user
        if revoke:
            remove_perm(CODENAME, holder, account)
        else:
            assign_perm(CODENAME, holder, account)
        audit.record(
            action="provider_account:manage",
            outcome="success",
            org=access.org,
            actor=access.user,
            target=account,
            meta=meta,
            data={
                "op": "revoke_grant" if revoke else "grant",
                "team": team.slug if team else None,
                "user": user.username if user else None,
            },
        )
    return provider_account_grants(account)
