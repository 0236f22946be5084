"""Housekeeping: bump the org epoch whenever something deciding gateway access changes."""

from __future__ import annotations

from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from inferia import store
from keys.models import AccessRule, ApiKey, ProviderAccount, ServiceAccount
from orgs.models import Membership, Organization, Role, Team, TeamMember, User
from orgs.signals import access_changed

ORG_OWNED = (ApiKey, ProviderAccount, ServiceAccount, AccessRule, Membership, Team, TeamMember)


def _org_changed(sender, instance, **kwargs) -> None:
    store.bump_epoch(instance.org_id)


for _model in ORG_OWNED:
    post_save.connect(_org_changed, sender=_model, dispatch_uid=f"epoch-save-{_model.__name__}")
    post_delete.connect(_org_changed, sender=_model, dispatch_uid=f"epoch-delete-{_model.__name__}")

for _through in (
    AccessRule.users.through,
    AccessRule.teams.through,
    AccessRule.roles.through,
    AccessRule.service_accounts.through,
):
    m2m_changed.connect(
        lambda sender, instance, **kwargs: store.bump_epoch(instance.org_id),
        sender=_through,
        dispatch_uid=f"epoch-m2m-{_through.__name__}",
        weak=False,
    )


@receiver(post_save, sender=Organization, dispatch_uid="epoch-org")
def _organization_changed(sender, instance: Organization, **kwargs) -> None:
    store.bump_epoch(instance.pk)


@receiver(post_save, sender=Role, dispatch_uid="epoch-role")
@receiver(post_delete, sender=Role, dispatch_uid="epoch-role-delete")
def _role_changed(sender, instance: Role, **kwargs) -> None:
    if instance.org_id is not None:
        store.bump_epoch(instance.org_id)


@receiver(post_save, sender=User, dispatch_uid="epoch-user")
def _user_changed(sender, instance: User, **kwargs) -> None:
    # Cross-org by design: a user's change (deactivation, password) touches every org.
    for org_id in Membership.all_orgs.filter(user=instance).values_list("org_id", flat=True):
        store.bump_epoch(org_id)


@receiver(access_changed, dispatch_uid="epoch-access-changed")
def _access_changed(sender, org_ids, **kwargs) -> None:
    for org_id in org_ids:
        store.bump_epoch(org_id)
