"""Celery entry points of keys/ (idempotent, safe to retry)."""

from __future__ import annotations

from inferia.celery import app
from keys import jobs


@app.task(
    name="keys.tasks.api_key_expiry_notices",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def api_key_expiry_notices() -> int:
    return jobs.api_key_expiry_notices()


@app.task(name="keys.tasks.api_key_expire_due")
def api_key_expire_due() -> int:
    return jobs.api_key_expire_due()


@app.task(
    name="keys.tasks.api_key_unused_report",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def api_key_unused_report() -> int:
    return jobs.api_key_unused_report()
