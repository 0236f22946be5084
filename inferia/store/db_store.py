"""The embedded backend (no ``REDIS_URL``): the same windows and epochs in the database.

One transaction routine counts every window of a call over locked
``WindowCounter`` rows; org epochs are ``OrgEpoch`` rows. The usage stream has
no database form: embedded, a usage record is written directly.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from inferia import clock
from inferia.models import BreakerRecord, WindowCounter
from inferia.store.breaker import BreakerState, Event, apply
from inferia.store.windows import Counter, Counts, StaleEpoch, StoreUnavailable

_KEY_LENGTH = 128  # WindowCounter.key


def _row_key(key: str) -> str:
    if len(key) <= _KEY_LENGTH:
        return key
    return "h:" + hashlib.sha256(key.encode()).hexdigest()


def epoch(org_id: Any) -> int:
    from gateway.models import OrgEpoch

    row = OrgEpoch.objects.filter(org_id=org_id).values_list("value", flat=True).first()
    return int(row or 0)


def bump_epoch(org_id: Any) -> None:
    from gateway.models import OrgEpoch

    updated = OrgEpoch.objects.filter(org_id=org_id).update(value=F("value") + 1)
    if not updated:
        OrgEpoch.objects.get_or_create(org_id=org_id, defaults={"value": 1})


def count(
    tag: str, counters: list[Counter], *, expected_epoch: int = -1, apply: bool = True
) -> Counts:
    """The epoch check (of the org ``tag``), then one transaction over every counter."""
    if expected_epoch >= 0:
        try:
            current = epoch(tag)
        except Exception as exc:  # noqa: BLE001 - any database fault: the store cannot decide
            raise StoreUnavailable(type(exc).__name__) from exc
        if current != expected_epoch:
            raise StaleEpoch(current)
    if not apply:
        values = []
        for c in counters:
            row = WindowCounter.objects.filter(
                key=_row_key(c.key), window_start=c.window_start
            ).first()
            values.append(row.count if row else 0)
        return Counts(None, values)
    for _attempt in range(3):
        try:
            with transaction.atomic():
                rows = []
                denied = None
                now = int(clock.time())
                for index, c in enumerate(counters):
                    row, _created = WindowCounter.objects.select_for_update().get_or_create(
                        key=_row_key(c.key),
                        window_start=c.window_start,
                        defaults={"count": 0, "expires_at": now + c.reset_in},
                    )
                    if denied is None and row.count + c.amount > c.limit:
                        denied = index
                    rows.append(row)
                if denied is not None:
                    return Counts(denied, [row.count for row in rows])
                for row, c in zip(rows, counters, strict=True):
                    WindowCounter.objects.filter(pk=row.pk).update(count=F("count") + c.amount)
                return Counts(
                    None, [row.count + c.amount for row, c in zip(rows, counters, strict=True)]
                )
        except IntegrityError:
            continue  # a parallel call created the row first
    raise StoreUnavailable("counter contention")


def once(key: str, seconds: int) -> bool:
    """True for the first caller in ``seconds`` from that call (Redis: SET NX EX).

    One row per key (``window_start`` 0, never a real window's start), claimed by an
    insert or, once its ``expires_at`` has passed, by a conditional update: two callers
    never both win, and a claim lasts its full ``seconds`` whatever the wall clock's
    window boundaries (a fixed window would forget it at the next boundary)."""
    now = int(clock.time())
    row_key = _row_key(key)
    claimed = WindowCounter.objects.filter(key=row_key, window_start=0, expires_at__lte=now).update(
        count=1, expires_at=now + seconds
    )
    if claimed:
        return True
    try:
        with transaction.atomic():
            WindowCounter.objects.create(
                key=row_key, window_start=0, count=1, expires_at=now + seconds
            )
    except IntegrityError:
        return False  # claimed by an earlier call, not expired yet
    return True


def settle(adjustments: list[tuple[str, int]]) -> None:
    """Add (actual - reserved) to each reserved counter (its key names its window)."""
    for key, delta in adjustments:
        if delta:
            WindowCounter.objects.filter(key=_row_key(key)).update(count=F("count") + delta)


def delete(key: str, window_start: int) -> None:
    WindowCounter.objects.filter(key=_row_key(key), window_start=window_start).delete()


def prune(now: float) -> int:
    """Delete expired windows (Redis expires its own)."""
    deleted, _ = WindowCounter.objects.filter(expires_at__lt=int(now)).delete()
    return deleted


def breaker_read(breaker_keys: list[str]) -> list[BreakerState]:
    """Every breaker's state (one query)."""
    rows = dict(
        BreakerRecord.objects.filter(key__in=[_row_key(k) for k in breaker_keys]).values_list(
            "key", "fields"
        )
    )
    return [BreakerState.from_fields(rows.get(_row_key(k)) or {}) for k in breaker_keys]


def breaker_delete(breaker_keys: list[str]) -> None:
    BreakerRecord.objects.filter(key__in=[_row_key(k) for k in breaker_keys]).delete()


def breaker_update(key: str, event: Event) -> tuple[bool, BreakerState]:
    """Apply ``event`` under the row's lock (``inferia.store.breaker.apply``)."""
    row_key = _row_key(key)
    for _attempt in range(3):
        try:
            with transaction.atomic():
                row, _created = BreakerRecord.objects.select_for_update().get_or_create(
                    key=row_key, defaults={"fields": {}}
                )
                granted, changed, state = apply(BreakerState.from_fields(row.fields), event)
                if changed:
                    row.fields = state.as_fields()
                    row.updated_at = event.now
                    row.save(update_fields=["fields", "updated_at"])
                return granted, BreakerState.from_fields(row.fields)
        except IntegrityError:
            continue  # a parallel call created the row first
    raise StoreUnavailable("breaker contention")
