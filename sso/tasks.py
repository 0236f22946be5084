"""Celery entry points of sso/: call a service, safe to run twice."""

from __future__ import annotations

from inferia.celery import app
from sso import services


@app.task(name="sso.tasks.sso_flow_purge")
def sso_flow_purge() -> int:
    return services.flow_purge()
