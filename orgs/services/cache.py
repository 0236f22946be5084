"""The gateway's response cache, as an org governs it: its settings and purges.

The settings are ``OrgPolicy`` knobs (``cache_enabled``, ``cache_ttl_seconds``,
``cache_max_bytes``, ``cache_max_entry_bytes``) stored in ``Organization.settings``,
so the gateway reads them from the principal it already holds; saving the org bumps
its epoch (``gateway.signals``) and every process picks the change up on the next
call. Only ``cache:manage`` changes them, through either edge (``PATCH /orgs/{org}``
or ``/orgs/{org}/cache``): ``settings_check`` is the one rule both call. The cache
lives in Redis (``inferia.store.response_cache``); embedded, it cannot be turned on.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit import services as audit
from inferia import clock, store
from inferia.errors import ValidationError
from inferia.request_meta import RequestMeta
from inferia.store import response_cache
from orgs.access import Access
from orgs.models import Organization
from orgs.policy import MODEL_FQN_MAX

# API field -> policy knob (``/orgs/{org}/cache`` names them without the prefix).
FIELDS: dict[str, str] = {
    "enabled": "cache_enabled",
    "ttl_seconds": "cache_ttl_seconds",
    "max_bytes": "cache_max_bytes",
    "max_entry_bytes": "cache_max_entry_bytes",
}
KNOBS = frozenset(FIELDS.values())
NEEDS_REDIS = "The response cache needs Redis: the server runs without REDIS_URL (embedded mode)."


def settings_check(access: Access, settings_changes: dict[str, Any]) -> None:
    """Changing a ``cache_*`` knob needs ``cache:manage`` (``org:update`` is not
    enough), and turning the cache on needs Redis.

    Raises PERMISSION_DENIED, or VALIDATION_ERROR on ``cache_enabled`` without Redis.
    """
    policy = access.org.policy
    changed = [
        knob
        for knob in sorted(KNOBS)
        if knob in settings_changes and settings_changes[knob] != getattr(policy, knob)
    ]
    if not changed:
        return
    access.require("cache:manage")
    if settings_changes.get("cache_enabled") and not store.redis_enabled():
        raise ValidationError(NEEDS_REDIS, details={"cache_enabled": [NEEDS_REDIS]})


def cache_settings_update(
    *, access: Access, changes: dict[str, Any], meta: RequestMeta | None = None
) -> Organization:
    """Set the org's cache knobs (``changes`` maps knob names to values; absent
    knobs stay as they are). Needs ``cache:manage``; audited as ``cache:update``.

    Raises as ``settings_check`` does.
    """
    access.require("cache:manage")
    unknown = set(changes) - KNOBS
    if unknown:
        raise ValidationError(
            "Unknown cache setting", details={name: ["Unknown setting."] for name in unknown}
        )
    settings_check(access, changes)
    org = access.org
    before = {knob: org.settings.get(knob) for knob in sorted(KNOBS)}
    if all(org.settings.get(knob) == value for knob, value in changes.items()):
        return org
    org.settings = {**org.settings, **changes}
    with transaction.atomic():
        org.save(update_fields=["settings", "updated_at"])
        audit.record(
            action="cache:update",
            outcome="success",
            org=org,
            actor=access.user,
            actor_label=access.actor_label,
            target=org,
            meta=meta,
            data={"changed": sorted(changes), "before": before},
        )
    return org


def cache_purge(*, access: Access, model: str | None, meta: RequestMeta | None = None) -> int:
    """Drop the org's cached answers (of the model FQN ``model`` only, when given);
    returns how many. Needs ``cache:manage``; audited as ``cache:purge``.

    Raises VALIDATION_ERROR for a model name over ``MODEL_FQN_MAX``, StoreUnavailable
    (503) when Redis cannot answer.
    """
    access.require("cache:manage")
    if model is not None and len(model) > MODEL_FQN_MAX:
        raise ValidationError(
            "Model name too long", details={"model": [f"At most {MODEL_FQN_MAX} characters."]}
        )
    org = access.org
    purged = response_cache.purge(org.pk, model) if store.redis_enabled() else 0
    audit.record(
        action="cache:purge",
        outcome="success",
        org=org,
        actor=access.user,
        actor_label=access.actor_label,
        target=org,
        meta=meta,
        data={"model": model, "entries": purged},
    )
    return purged


def cache_state(access: Access) -> dict[str, Any]:
    """The org's cache settings and what it holds now (zeros when embedded).

    Raises StoreUnavailable (503) when Redis cannot answer.
    """
    policy = access.org.policy
    state: dict[str, Any] = {field: getattr(policy, knob) for field, knob in FIELDS.items()}
    state["available"] = store.redis_enabled()
    if store.redis_enabled():
        state.update(response_cache.stats(access.org.pk, int(clock.time() * 1000)))
    else:
        state.update({"entries": 0, "bytes": 0, "hits": 0, "misses": 0})
    return state
