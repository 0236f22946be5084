"""Named tenant-scoped reads of deployments/ (run inside the active org scope).

Another org's deployment is not found, like an unknown name (NOT_FOUND, never 403).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from deployments import health
from deployments.models import Deployment, DeploymentVersion
from inferia.errors import NotFound


def deployment_list() -> QuerySet[Deployment]:
    return Deployment.objects.select_related("created_by").order_by("name")


def deployment_get(name: str) -> Deployment:
    """The org's deployment named ``name``; NOT_FOUND otherwise."""
    deployment = deployment_list().filter(name=name).first()
    if deployment is None:
        raise NotFound("Deployment not found")
    return deployment


def deployment_version_list(deployment: Deployment) -> QuerySet[DeploymentVersion]:
    return (
        DeploymentVersion.objects.filter(deployment=deployment)
        .select_related("created_by")
        .order_by("-number")
    )


def deployment_health(deployment: Deployment) -> dict[str, Any]:
    """The deployment's health as the API and the dashboard show it: its status and, per
    target, the breaker and the last active check (``deployments.health.snapshot``: the
    store shared by every process)."""
    return {
        "deployment": deployment.name,
        "status": deployment.status,
        "status_reason": deployment.status_reason,
        "targets": health.snapshot(deployment),
    }
