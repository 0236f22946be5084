"""Per-org epochs: any change that can alter an access decision bumps the org's epoch.

Gateway processes keep in-process caches of principals and provider accounts
tagged with the epoch they were built at and check it on every request (in the
same Redis round trip as the limits), so a revoke is refused by every process
as soon as the revoke call returns. Bumps run on transaction commit, before
the response of the changing request is sent.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import F

from gateway import redis_client
from gateway.models import OrgEpoch

PREFIX = "inferia:epoch:"
logger = logging.getLogger(__name__)


def key_for(org_id) -> str:
    return f"{PREFIX}{org_id}"


def _bump_now(org_id) -> None:
    if redis_client.enabled():
        import redis

        try:
            redis_client.client().incr(key_for(org_id))
        except redis.RedisError:
            # The change is committed; while Redis is down every gateway call is
            # refused (503), and cached entries expire within INFERIA_GATEWAY_CACHE_SECONDS.
            logger.error("epoch bump for org %s failed: Redis unreachable", org_id)
        return
    updated = OrgEpoch.objects.filter(org_id=org_id).update(value=F("value") + 1)
    if not updated:
        OrgEpoch.objects.get_or_create(org_id=org_id, defaults={"value": 1})


def bump(org_id) -> None:
    """Bump after the current transaction commits (now, outside a transaction)."""
    transaction.on_commit(lambda: _bump_now(org_id))


def current_db(org_id) -> int:
    row = OrgEpoch.objects.filter(org_id=org_id).values_list("value", flat=True).first()
    return int(row or 0)


def current(org_id) -> int:
    if redis_client.enabled():
        return int(redis_client.client().get(key_for(org_id)) or 0)
    return current_db(org_id)
