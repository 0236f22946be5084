"""Shared, atomic rate limits and quotas for the gateway.

Every limit of a request (per key, per principal, per org; requests and tokens
per minute; monthly token and cost quotas) is checked and counted in one step
that parallel requests cannot interleave, by the store's window engine
(``inferia.store.count``: one Lua script in Redis, which also checks the org's
access epoch so a revoke is seen in the same round trip, or one database
transaction when embedded). This module is the gateway's policy: which limits,
their windows, the decision and its headers. Tokens and cost are reserved before
the upstream call (the request's worst case) and settled to the real usage
after. Cost is counted in micro-units (1e-6 of the price currency).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from inferia import clock, store

REQUESTS, TOKENS, QUOTA_TOKENS, QUOTA_COST = "requests", "tokens", "quota_tokens", "quota_cost"
MINUTE = 60


StaleEpoch = store.StaleEpoch  # the cached principal predates the org's latest access change


class BackendUnavailable(Exception):
    """Neither Redis nor the database could count this request."""


@dataclass(frozen=True)
class Limit:
    scope: str  # "key", "principal" or "org"
    kind: str
    subject: str  # ids, never credentials
    limit: int

    def window(self, now: float) -> tuple[str, int, int]:
        """(window suffix, start epoch seconds, seconds until reset)."""
        if self.kind in (REQUESTS, TOKENS):
            start = int(now) - int(now) % MINUTE
            return str(start), start, start + MINUTE - int(now)
        moment = datetime.fromtimestamp(now, tz=UTC)
        start_dt = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        next_month = start_dt.replace(day=28).timestamp() + 4 * 86400
        end_dt = datetime.fromtimestamp(next_month, tz=UTC).replace(
            day=1, hour=0, minute=0, second=0
        )
        return start_dt.strftime("%Y%m"), int(start_dt.timestamp()), int(end_dt.timestamp() - now)

    def counter_key(self, tag: str, now: float) -> str:
        """Hash-tagged by the org (``tag``), so a request's counters share its epoch's slot."""
        suffix, _start, _reset = self.window(now)
        return store.keys.tagged(tag, "rl", self.scope, self.subject, self.kind, suffix)


@dataclass
class Decision:
    allowed: bool
    denied: Limit | None = None
    retry_after: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    reserved: list[tuple[str, str, int]] = field(
        default_factory=list
    )  # (counter key, kind, amount)
    degraded: bool = False
    # How much of the org's monthly quota is used, in percent (the higher of tokens and
    # cost, before this call's reservation); None without an org quota. Deployments
    # route on it (``max_quota_percent``) without another round trip.
    org_quota_percent: float | None = None


def _require_non_negative(reserve_tokens: int, reserve_cost: int) -> None:
    """A negative reservation would hand quota back: refused whatever the caller checked."""
    if reserve_tokens < 0 or reserve_cost < 0:
        raise ValueError(f"negative reservation ({reserve_tokens} tokens, {reserve_cost} cost)")


def _amount(limit: Limit, reserve_tokens: int, reserve_cost: int) -> int:
    return {
        REQUESTS: 1,
        TOKENS: reserve_tokens,
        QUOTA_TOKENS: reserve_tokens,
        QUOTA_COST: reserve_cost,
    }[limit.kind]


def _headers(limits: list[Limit], values: list[tuple[int, int]], now: float) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind, prefix in ((REQUESTS, ""), (TOKENS, "-Tokens")):
        tightest = None
        for limit, (count, reset_in) in zip(limits, values, strict=True):
            if limit.kind != kind:
                continue
            remaining = max(0, limit.limit - count)
            if tightest is None or remaining < tightest[1]:
                tightest = (limit.limit, remaining, reset_in)
        if tightest is not None:
            headers[f"X-RateLimit-Limit{prefix}"] = str(tightest[0])
            headers[f"X-RateLimit-Remaining{prefix}"] = str(tightest[1])
            if kind == REQUESTS:
                headers["X-RateLimit-Reset"] = str(int(now) + max(0, tightest[2]))
            else:
                headers["X-RateLimit-Reset-Tokens"] = str(int(now) + max(0, tightest[2]))
    return headers


def _org_quota_percent(
    limits: list[Limit], values: list[int], counters: list[store.Counter], counted: bool
) -> float | None:
    percent = None
    for limit, value, counter in zip(limits, values, counters, strict=True):
        if limit.scope != "org" or limit.kind not in (QUOTA_TOKENS, QUOTA_COST):
            continue
        if limit.limit <= 0:
            continue
        used = value - (counter.amount if counted else 0)
        share = max(0, used) * 100 / limit.limit
        percent = share if percent is None else max(percent, share)
    return percent


def _counters(
    tag: str, limits: list[Limit], reserve_tokens: int, reserve_cost: int, now: float
) -> list[store.Counter]:
    counters = []
    for limit in limits:
        _suffix, start, reset_in = limit.window(now)
        counters.append(
            store.Counter(
                limit.counter_key(tag, now),
                start,
                reset_in,
                limit.limit,
                _amount(limit, reserve_tokens, reserve_cost),
            )
        )
    return counters


async def check(
    *,
    org_id,
    expected_epoch: int,
    limits: list[Limit],
    reserve_tokens: int = 0,
    reserve_cost: int = 0,
    count: bool = True,
) -> Decision:
    """The epoch check plus every limit in one step of the store (one round trip with
    Redis, one transaction embedded), or with ``count=False`` only the current counts.
    ``org_id`` None: a limit of no org (the anonymous per-address brake), not
    epoch-checked. Raises StaleEpoch or BackendUnavailable."""
    _require_non_negative(reserve_tokens, reserve_cost)
    now = clock.time()
    tag = str(org_id) if org_id is not None else f"{limits[0].scope}:{limits[0].subject}"
    counters = _counters(tag, limits, reserve_tokens, reserve_cost, now)
    try:
        counts = await store.count(tag, counters, expected_epoch=expected_epoch, apply=count)
    except store.StoreUnavailable as exc:
        raise BackendUnavailable(str(exc)) from exc
    values = [(value, c.reset_in) for value, c in zip(counts.values, counters, strict=True)]
    headers = _headers(limits, values, now)
    counted = count and counts.denied is None
    quota_percent = _org_quota_percent(limits, counts.values, counters, counted)
    if counts.denied is not None:
        denied = limits[counts.denied]
        return Decision(
            allowed=False,
            denied=denied,
            retry_after=max(1, counters[counts.denied].reset_in),
            headers=headers,
            org_quota_percent=quota_percent,
        )
    if not count:
        return Decision(allowed=True, headers=headers, org_quota_percent=quota_percent)
    reserved = [
        (c.key, limit.kind, c.amount)
        for limit, c in zip(limits, counters, strict=True)
        if limit.kind != REQUESTS
    ]
    return Decision(
        allowed=True, headers=headers, reserved=reserved, org_quota_percent=quota_percent
    )
