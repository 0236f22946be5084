"""The Celery app, the org-scoped task base and the whole beat schedule."""

from __future__ import annotations

import os

from celery import Celery, Task
from celery.schedules import crontab

from inferia import metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inferia.settings")

app = Celery("inferia")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Every task's outcome and run time, counted in the process that runs it (docs/metrics.md).
metrics.connect_celery_signals()
app.autodiscover_tasks(
    ["orgs", "keys", "gateway", "audit", "inferia", "sso", "deployments", "knowledge"]
)

app.conf.beat_schedule = {
    "counters-prune": {"task": "inferia.tasks.counters_prune", "schedule": 300.0},
    "usage-ingest": {"task": "gateway.tasks.usage_ingest", "schedule": 2.0},
    "usage-rollup": {"task": "audit.tasks.usage_rollup", "schedule": 300.0},
    "deployment-health-check": {
        "task": "deployments.tasks.deployment_health_check",
        "schedule": 15.0,
    },
    "alerts-check": {"task": "audit.tasks.alerts_check", "schedule": 300.0},
    "audit-retention": {
        "task": "audit.tasks.audit_retention",
        "schedule": crontab(hour=3, minute=17),
    },
    "api-key-expire-due": {"task": "keys.tasks.api_key_expire_due", "schedule": 300.0},
    "api-key-expiry-notices": {
        "task": "keys.tasks.api_key_expiry_notices",
        "schedule": crontab(minute=5),
    },
    "api-key-unused-report": {
        "task": "keys.tasks.api_key_unused_report",
        "schedule": crontab(day_of_week="mon", hour=8, minute=0),
    },
    "invitation-expire-due": {"task": "orgs.tasks.invitation_expire_due", "schedule": 900.0},
    "sso-flow-purge": {"task": "sso.tasks.sso_flow_purge", "schedule": 900.0},
    "device-authorization-purge": {
        "task": "orgs.tasks.device_authorization_purge",
        "schedule": crontab(hour=3, minute=41),
    },
}


class OrgTask(Task):
    """A task whose first argument is an org id: runs inside that org's scope."""

    def __call__(self, org_id: str, *args, **kwargs):
        from orgs.models import Organization
        from orgs.scoping import org_scope

        org = Organization.objects.filter(pk=org_id).first()
        if org is None:
            return None  # the org is gone: nothing to do
        with org_scope(org):
            return super().__call__(org_id, *args, **kwargs)
