"""Celery entry points of deployments: the active health check of their targets."""

from __future__ import annotations

from deployments import health
from deployments.models import Deployment, DeploymentStatus
from inferia.celery import OrgTask, app


@app.task(name="deployments.tasks.deployment_health_check")
def deployment_health_check() -> int:
    """Beat, every 15 s: one check task per org that has a running deployment (each
    checks only the targets whose ``health_check.interval_seconds`` has passed)."""
    org_ids = set(
        Deployment.all_orgs.exclude(status=DeploymentStatus.STOPPED).values_list(
            "org_id", flat=True
        )
    )
    for org_id in sorted(map(str, org_ids)):
        deployment_health_check_org.delay(org_id)
    return len(org_ids)


@app.task(name="deployments.tasks.deployment_health_check_org", base=OrgTask)
def deployment_health_check_org(org_id: str) -> int:
    """Check the due targets of the org's deployments; safe to run twice (a second run
    finds nothing due)."""
    return sum(len(checked) for checked in health.check_org(org_id).values())
