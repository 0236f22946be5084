"""What the gateway does when its limit store (Redis, or the database when embedded)
cannot count a request.

Each kind of limit says it in the org's settings: ``rate_limit_on_backend_error``
(requests and tokens per minute) and ``quota_on_backend_error`` (monthly token
and cost quotas), ``deny`` (the default) or ``allow``. A request is let through
only when every limit that applies to it says ``allow``; the credential itself
is then verified from the database, never from the cache (credentials never
degrade to allow). Either way the decision is audited (the request's record
carries ``degraded``) and raises a ``gateway_degraded`` alert for the org, at
most one per org and hour (and one write per process and minute).
"""

from __future__ import annotations

import logging
import time

from gateway import ratelimit
from gateway.orm import orm
from inferia import clock
from orgs.policy import ALLOW, OrgPolicy

logger = logging.getLogger(__name__)
_RATE_KINDS = (ratelimit.REQUESTS, ratelimit.TOKENS)
_last_alert: dict[tuple[str, bool], float] = {}


def allows(policy: OrgPolicy, limits: list[ratelimit.Limit]) -> bool:
    needed = {
        policy.rate_limit_on_backend_error
        if limit.kind in _RATE_KINDS
        else policy.quota_on_backend_error
        for limit in limits
    }
    return all(choice == ALLOW for choice in needed)


def _raise(org_id, allowed: bool, endpoint: str) -> None:
    from audit.jobs import raise_alert
    from audit.models import Alert
    from orgs.models import Organization

    org = Organization.objects.filter(pk=org_id).first()
    if org is None:
        return
    moment = clock.now()
    verdict = "let through without limits" if allowed else "refused (503)"
    raise_alert(
        org,
        Alert.Kind.GATEWAY_DEGRADED,
        f"{org.pk}:degraded:{'allow' if allowed else 'deny'}:{moment:%Y%m%d%H}",
        f"The gateway could not reach its limit store; requests were {verdict}",
        {"allowed": allowed, "endpoint": endpoint},
    )


async def alert(principal, *, allowed: bool, endpoint: str) -> None:
    logger.error(
        "limit store unreachable for org %s: request %s",
        principal.org_id,
        "allowed" if allowed else "denied",
    )
    key = (str(principal.org_id), allowed)
    now = time.monotonic()
    if now - _last_alert.get(key, -3600.0) < 60:
        return
    if len(_last_alert) > 10_000:  # bounded: forget what is past its minute
        for stale in [k for k, at in _last_alert.items() if now - at >= 60]:
            del _last_alert[stale]
    _last_alert[key] = now
    try:
        await orm(_raise)(principal.org_id, allowed, endpoint)
    except Exception:  # noqa: BLE001 - the database may be down too; the log line above stays
        logger.exception("could not raise the gateway_degraded alert")
