"""Shared, atomic rate limits and quotas for the gateway.

Every limit of a request (per key, per principal, per org; requests and tokens
per minute; monthly token and cost quotas) is checked and counted in one step
that parallel requests cannot interleave: one Lua script in Redis (which also
checks the org's access epoch, so a revoke is seen in the same round trip), or
one database transaction when embedded. Tokens and cost are reserved before
the upstream call (the request's worst case) and settled to the real usage
after. Cost is counted in micro-units (1e-6 of the price currency).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.db.models import F

from gateway import aioredis, epochs
from inferia import clock
from inferia.models import WindowCounter

REQUESTS, TOKENS, QUOTA_TOKENS, QUOTA_COST = "requests", "tokens", "quota_tokens", "quota_cost"
MINUTE = 60


class StaleEpoch(Exception):
    """The cached principal was built before the org's latest access change."""

    def __init__(self, epoch: int) -> None:
        super().__init__(epoch)
        self.epoch = epoch


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

    def counter_key(self, now: float) -> str:
        suffix, _start, _reset = self.window(now)
        return f"inferia:rl:{self.scope}:{self.subject}:{self.kind}:{suffix}"


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


# Check every limit, then count every limit; or count nothing (and return the
# current counts, for the headers of the refusal). Also returns the org epoch
# and refuses (without counting) when the caller's cache is stale. ARGV[2] = 0
# only reads the counts ("peek": the headers of a request refused before its
# limits were counted).
_LUA = """
local epoch = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) >= 0 and tonumber(ARGV[1]) ~= epoch then
  return {0, epoch}
end
local n = tonumber(ARGV[3])
local denied = 0
if ARGV[2] == '0' then
  denied = -1
else
  for i = 1, n do
    local base = 4 + (i - 1) * 3
    local current = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
    if current + tonumber(ARGV[base + 1]) > tonumber(ARGV[base]) then
      denied = i
      break
    end
  end
end
if denied ~= 0 then
  local out = {2, epoch, denied}
  for j = 1, n do
    out[#out + 1] = tonumber(redis.call('GET', KEYS[j + 1]) or '0')
  end
  return out
end
local out = {1, epoch}
for i = 1, n do
  local base = 4 + (i - 1) * 3
  local value = redis.call('INCRBY', KEYS[i + 1], tonumber(ARGV[base + 1]))
  if redis.call('PTTL', KEYS[i + 1]) < 0 then
    redis.call('PEXPIRE', KEYS[i + 1], tonumber(ARGV[base + 2]))
  end
  out[#out + 1] = value
end
return out
"""

SCRIPT = aioredis.Script(_LUA)


@dataclass
class _Plan:
    now: float
    limits: list[Limit]
    keys: list[str]
    args: list[int]
    resets: list[int]
    reserve_tokens: int
    reserve_cost: int


def _plan(
    org_id,
    expected_epoch: int,
    limits: list[Limit],
    reserve_tokens: int,
    reserve_cost: int,
    count: bool,
) -> _Plan:
    _require_non_negative(reserve_tokens, reserve_cost)
    now = clock.time()
    keys = [epochs.key_for(org_id)]
    args: list[int] = [expected_epoch, 1 if count else 0, len(limits)]
    resets: list[int] = []
    for limit in limits:
        _suffix, _start, reset_in = limit.window(now)
        keys.append(limit.counter_key(now))
        resets.append(reset_in)
        # The counter outlives its window a little; the headers report the window.
        args += [limit.limit, _amount(limit, reserve_tokens, reserve_cost), (reset_in + 5) * 1000]
    return _Plan(now, limits, keys, args, resets, reserve_tokens, reserve_cost)


def _decide(plan: _Plan, result: list) -> Decision:
    status, epoch = int(result[0]), int(result[1])
    limits, resets = plan.limits, plan.resets
    if status == 0:
        raise StaleEpoch(epoch)
    if status == 2:
        index = int(result[2]) - 1
        values = [(int(result[3 + i]), resets[i]) for i in range(len(limits))]
        headers = _headers(limits, values, plan.now)
        if index < 0:  # a peek
            return Decision(allowed=True, headers=headers)
        return Decision(
            allowed=False, denied=limits[index], retry_after=max(1, resets[index]), headers=headers
        )
    values = [(int(result[2 + i]), resets[i]) for i in range(len(limits))]
    reserved = [
        (plan.keys[i + 1], limit.kind, _amount(limit, plan.reserve_tokens, plan.reserve_cost))
        for i, limit in enumerate(limits)
        if limit.kind != REQUESTS
    ]
    return Decision(allowed=True, headers=_headers(limits, values, plan.now), reserved=reserved)


async def check_redis(
    *,
    org_id,
    expected_epoch: int,
    limits: list[Limit],
    reserve_tokens: int = 0,
    reserve_cost: int = 0,
    count: bool = True,
) -> Decision:
    """One round trip on the event loop: the epoch check plus every limit (or, with
    ``count=False``, only the current counts). Raises StaleEpoch or BackendUnavailable."""
    plan = _plan(org_id, expected_epoch, limits, reserve_tokens, reserve_cost, count)
    try:
        result = await aioredis.client().run_script(SCRIPT, plan.keys, plan.args)
    except aioredis.RedisUnavailable as exc:
        raise BackendUnavailable(str(exc)) from exc
    return _decide(plan, result)


def check_db(
    *, limits: list[Limit], reserve_tokens: int = 0, reserve_cost: int = 0, count: bool = True
) -> Decision:
    """The embedded store: one transaction over locked counter rows (``count=False``: read only)."""
    _require_non_negative(reserve_tokens, reserve_cost)
    now = clock.time()
    if not count:
        values = []
        for limit in limits:
            _suffix, start, reset_in = limit.window(now)
            row = WindowCounter.objects.filter(
                key=limit.counter_key(now), window_start=start
            ).first()
            values.append((row.count if row else 0, reset_in))
        return Decision(allowed=True, headers=_headers(limits, values, now))
    planned = []
    for limit in limits:
        _suffix, start, reset_in = limit.window(now)
        planned.append(
            (
                limit,
                limit.counter_key(now),
                start,
                reset_in,
                _amount(limit, reserve_tokens, reserve_cost),
            )
        )
    for _attempt in range(3):
        try:
            with transaction.atomic():
                rows = []
                denied = None
                for limit, key, start, reset_in, amount in planned:
                    row, _created = WindowCounter.objects.select_for_update().get_or_create(
                        key=key,
                        window_start=start,
                        defaults={"count": 0, "expires_at": int(now) + reset_in + 5},
                    )
                    if denied is None and row.count + amount > limit.limit:
                        denied = (limit, reset_in)
                    rows.append((row, amount, reset_in))
                if denied is not None:
                    values = [(row.count, reset_in) for row, _amount, reset_in in rows]
                    return Decision(
                        allowed=False,
                        denied=denied[0],
                        retry_after=max(1, denied[1]),
                        headers=_headers(limits, values, now),
                    )
                values = []
                for row, amount, reset_in in rows:
                    WindowCounter.objects.filter(pk=row.pk).update(count=F("count") + amount)
                    values.append((row.count + amount, reset_in))
        except IntegrityError:
            continue  # a parallel request created the row first
        reserved = [
            (key, limit.kind, amount)
            for limit, key, _s, _r, amount in planned
            if limit.kind != REQUESTS
        ]
        return Decision(allowed=True, headers=_headers(limits, values, now), reserved=reserved)
    raise BackendUnavailable("counter contention")


def settle_db(adjustments: list[tuple[str, int]]) -> None:
    """Add (actual - reserved) to each reserved counter (its key names its window)."""
    for key, delta in adjustments:
        if delta:
            WindowCounter.objects.filter(key=key).update(count=F("count") + delta)


def settle_commands(adjustments: list[tuple[str, int]]) -> list[tuple]:
    """Redis commands adding (actual - reserved) to each reserved counter."""
    return [("INCRBY", key, delta) for key, delta in adjustments if delta]
