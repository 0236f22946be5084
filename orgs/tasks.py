"""Celery entry points of orgs/: load by id, call a service, safe to run twice."""

from __future__ import annotations

import logging

from inferia.celery import OrgTask, app
from orgs.services import tenancy

logger = logging.getLogger(__name__)


@app.task(
    base=OrgTask,
    name="orgs.tasks.invitation_send",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def invitation_send(org_id: str, invitation_id: str, send_number: int, base_url: str = "") -> bool:
    sent = tenancy.invitation_deliver(
        invitation_id=invitation_id, send_number=send_number, base_url=base_url
    )
    logger.info("invitation_send id=%s send=%s sent=%s", invitation_id, send_number, sent)
    return sent


@app.task(name="orgs.tasks.invitation_expire_due")
def invitation_expire_due() -> int:
    return tenancy.invitation_expire_due()


@app.task(name="orgs.tasks.device_authorization_purge")
def device_authorization_purge() -> int:
    from orgs.services import device

    return device.device_authorization_purge()
