"""SCIM 2.0 provisioning: per-org bearer tokens and the org directory's own records.

A ``ScimToken`` is the identity provider's credential for one org (``ifs_...``, only
its SHA-256 is stored). ``ScimUser`` holds what the org's directory says about one
person (externalId, names, e-mail, active) without touching the global ``User``
unless this directory created that user and nobody else shares it; ``ScimGroup``
holds a team's externalId. Users and groups are addressed by the ids of
``User`` and ``Team``, so members who joined by invitation are visible to SCIM too.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from orgs.models import Role, Team
from orgs.scoping import OrgOwnedModel, OrgScopedManager, OrgScopedQuerySet

TOKEN_PREFIX = "ifs"  # noqa: S105 - the public prefix of SCIM tokens, no secret


class ScimTokenQuerySet(OrgScopedQuerySet):
    def active(self) -> ScimTokenQuerySet:
        return self.filter(revoked_at__isnull=True)


ScimTokenManager = OrgScopedManager.from_queryset(ScimTokenQuerySet)


class ScimToken(OrgOwnedModel):
    """An identity provider's bearer token for SCIM in one org: ``ifs_<public id>_<secret>``.

    It can do nothing but SCIM in its org. Its power is bounded at every use by the
    member who created it (``granted_by_membership``: still holding ``sso:manage``,
    and the role it provisions users with); members it provisions record that member
    as their grantor too.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    public_id = models.CharField(max_length=24, unique=True)
    secret_digest = models.CharField(max_length=64)
    last_four = models.CharField(max_length=4)
    # The role of the members this token provisions (never Owner).
    role = models.ForeignKey(Role, on_delete=models.RESTRICT, related_name="+")
    granted_by_membership = models.ForeignKey(
        "orgs.Membership", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar = ScimTokenManager()
    all_orgs: ClassVar = models.Manager.from_queryset(ScimTokenQuerySet)()

    class Meta(OrgOwnedModel.Meta):
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.prefix

    def __repr__(self) -> str:
        return f"<ScimToken {self.prefix} org={self.org_id}>"

    @property
    def prefix(self) -> str:
        return f"{TOKEN_PREFIX}_{self.public_id}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class ScimUser(OrgOwnedModel):
    """What the org's directory says about one person. The SCIM id is the user's id.

    ``active`` False (or ``deleted_at`` set) means the membership was removed; the row
    stays so that the directory can read the deactivated user and reactivate it.
    ``created_user``: this directory created the ``User`` row (its global name and
    e-mail follow the directory while the user belongs to no other org).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scim_records"
    )
    user_name = models.CharField(max_length=150)
    external_id = models.CharField(max_length=255, blank=True)
    given_name = models.CharField(max_length=150, blank=True)
    family_name = models.CharField(max_length=150, blank=True)
    display_name = models.CharField(max_length=300, blank=True)
    email = models.EmailField(blank=True)
    active = models.BooleanField(default=True)
    created_user = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["org", "user"], name="uniq_scim_user_per_org"),
            models.UniqueConstraint(
                fields=["org", "external_id"],
                condition=~Q(external_id=""),
                name="uniq_scim_user_external_id",
            ),
        ]

    def __str__(self) -> str:
        return f"scim user {self.user_id}@{self.org_id}"  # never the e-mail


class ScimGroup(OrgOwnedModel):
    """A team's id in the identity provider (``externalId``)."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="scim_group")
    external_id = models.CharField(max_length=255)

    class Meta(OrgOwnedModel.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["org", "external_id"], name="uniq_scim_group_external_id"
            ),
        ]

    def __str__(self) -> str:
        return f"scim group {self.team_id}"
