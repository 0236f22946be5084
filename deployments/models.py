"""Deployments: named model endpoints of an org with routing across targets.

A deployment is called through the gateway as ``deployment/<name>`` (an FQN
whose account part is the reserved word ``deployment``: access rules name it
like any model). Its routing configuration (``deployments.config``) is
versioned: every change is a new :class:`DeploymentVersion`, and a rollback is
a new version that copies an old one. ``config`` on the deployment is the
current version's document, kept beside it so a read needs one row.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from orgs.models import slug_validator
from orgs.scoping import OrgOwnedModel

FQN_ACCOUNT = "deployment"  # ``deployment/<name>``; no provider account may take this name


class DeploymentStatus(models.TextChoices):
    CREATING = "creating", "Creating"
    READY = "ready", "Ready"
    DEGRADED = "degraded", "Degraded"
    STOPPED = "stopped", "Stopped"


class Deployment(OrgOwnedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=50, validators=[slug_validator])
    description = models.CharField(max_length=500, blank=True)
    status = models.CharField(
        max_length=16, choices=DeploymentStatus.choices, default=DeploymentStatus.CREATING
    )
    status_reason = models.CharField(max_length=500, blank=True)
    # The current version's routing document (deployments.config.parse accepts it).
    config = models.JSONField(default=dict)
    version = models.PositiveIntegerField(default=1)
    # What a launcher started for it ({} when its targets are all registered endpoints):
    # {"kind": "local" | "kubernetes", ...spec}; and what the launcher reported back.
    launcher = models.JSONField(default=dict, blank=True)
    launcher_state = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="uniq_deployment_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def fqn(self) -> str:
        return f"{FQN_ACCOUNT}/{self.name}"


class DeploymentVersion(OrgOwnedModel):
    """One saved routing configuration of a deployment (append-only)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    config = models.JSONField(default=dict)
    comment = models.CharField(max_length=500, blank=True)
    rolled_back_from = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["deployment", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "number"], name="uniq_deployment_version_number"
            )
        ]

    def __str__(self) -> str:
        return f"{self.deployment_id} v{self.number}"
