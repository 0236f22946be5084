"""Celery entry points of audit/: rollups, retention, alerts."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from audit import rollups
from inferia.celery import app


@app.task(name="audit.tasks.usage_rollup")
def usage_rollup() -> int:
    """Roll up the current and the previous hour and day (safe to rerun)."""
    now = timezone.now()
    written = 0
    for period, step in (("hour", timedelta(hours=1)), ("day", timedelta(days=1))):
        for moment in (now - step, now):
            written += rollups.usage_rollup(period=period, moment=moment)
    return written


@app.task(name="audit.tasks.audit_retention")
def audit_retention() -> int:
    from audit import jobs

    return jobs.audit_retention()


@app.task(name="audit.tasks.alerts_check")
def alerts_check() -> int:
    from audit import jobs

    return len(jobs.alerts_check())
