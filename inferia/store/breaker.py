"""Circuit breakers in the shared store: one state per key, changed by events.

A breaker (``deployments.health`` keys one per deployment target) is ``closed``
(calls go through), ``open`` (calls are refused until ``open_until``) or
``half_open`` (one probe call may go through: whoever claims it first, until
``probe_until``). Events, each applied atomically by the store (one Lua script
in Redis, one locked row embedded; both apply :func:`apply`'s rules):

- ``fail``: a call failed. Closed: counted in a window of ``window_seconds``
  (a failure after the window starts a new one); at ``threshold`` failures the
  breaker opens for ``cooldown_seconds``. A failed probe (half-open, or open past
  ``open_until``) opens it again for a full cooldown. A failure while open (a call
  that started before it opened) changes nothing.
- ``ok``: a call succeeded; a breaker that is not closed closes (a closed one is
  left as it is: ``fail`` counts failures within a window, not in a row).
- ``probe``: claim the half-open probe for ``probe_seconds``; granted to one caller.
- ``check``: the result of an active health check, kept as ``last check``; a
  failed check opens the breaker at once, a passed one closes it.

Times are the platform clock's (``inferia.clock``), passed in by the caller, so
tests move them without sleeping.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
EVENTS = ("fail", "ok", "probe", "check")
# What a breaker's state is kept for after its last change (its last check stays visible).
TTL_SECONDS = 7 * 86400


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One breaker as stored; ``known`` is False when the store holds nothing for it."""

    state: str = CLOSED
    failures: int = 0
    window_start: float = 0.0
    open_until: float = 0.0
    probe_until: float = 0.0
    checked_at: float = 0.0
    check_ok: bool | None = None
    check_latency_ms: float | None = None
    check_error: str = ""
    known: bool = False

    def effective(self, now: float) -> str:
        """``closed``, ``open`` or ``half_open`` at ``now`` (an open breaker whose
        cooldown is over is half-open)."""
        if self.state == OPEN and now < self.open_until:
            return OPEN
        if self.state in (OPEN, HALF_OPEN):
            return HALF_OPEN
        return CLOSED

    def probe_free(self, now: float) -> bool:
        """Half-open and nobody holds the probe."""
        return self.effective(now) == HALF_OPEN and self.probe_until <= now

    def as_fields(self) -> dict[str, str]:
        """The stored form (a Redis hash, a JSON object): text values."""
        out = {
            "state": self.state,
            "failures": str(self.failures),
            "window_start": repr(self.window_start),
            "open_until": repr(self.open_until),
            "probe_until": repr(self.probe_until),
            "checked_at": repr(self.checked_at),
            "check_ok": "" if self.check_ok is None else ("1" if self.check_ok else "0"),
            "check_latency_ms": ""
            if self.check_latency_ms is None
            else repr(float(self.check_latency_ms)),
            "check_error": self.check_error,
        }
        return out

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> BreakerState:
        """The state of a stored hash (bytes or text keys and values); empty: unknown."""
        if not fields:
            return cls()
        text = {
            (k.decode() if isinstance(k, bytes) else str(k)): (
                v.decode() if isinstance(v, bytes) else str(v)
            )
            for k, v in fields.items()
        }

        def number(name: str) -> float:
            try:
                return float(text.get(name) or 0)
            except ValueError:
                return 0.0

        ok = text.get("check_ok", "")
        latency = text.get("check_latency_ms", "")
        state = text.get("state") or CLOSED
        return cls(
            state=state if state in (CLOSED, OPEN, HALF_OPEN) else CLOSED,
            failures=int(number("failures")),
            window_start=number("window_start"),
            open_until=number("open_until"),
            probe_until=number("probe_until"),
            checked_at=number("checked_at"),
            check_ok=None if ok == "" else ok == "1",
            check_latency_ms=float(latency) if latency else None,
            check_error=text.get("check_error", ""),
            known=True,
        )


@dataclass(frozen=True, slots=True)
class Event:
    """What happened to a breaker (see the module docstring)."""

    kind: str
    now: float
    threshold: int = 5
    window_seconds: float = 30.0
    cooldown_seconds: float = 30.0
    probe_seconds: float = 30.0
    check_ok: bool = False
    check_latency_ms: float = 0.0
    check_error: str = ""

    def args(self) -> list[str]:
        """The Lua script's ARGV (after the key)."""
        return [
            self.kind,
            repr(float(self.now)),
            str(int(self.threshold)),
            repr(float(self.window_seconds)),
            repr(float(self.cooldown_seconds)),
            repr(float(self.probe_seconds)),
            "1" if self.check_ok else "0",
            repr(float(self.check_latency_ms)),
            self.check_error[:200],
            str(TTL_SECONDS * 1000),
        ]


def _opened(state: BreakerState, until: float) -> BreakerState:
    return dataclasses.replace(state, state=OPEN, open_until=until, probe_until=0.0)


def _closed(state: BreakerState, event: Event) -> BreakerState:
    return dataclasses.replace(
        state, state=CLOSED, failures=0, window_start=event.now, open_until=0.0, probe_until=0.0
    )


def apply(state: BreakerState, event: Event) -> tuple[bool, bool, BreakerState]:
    """``(granted, changed, new state)``: the rules the Redis script mirrors (the
    embedded backend runs this under a row lock). ``granted``: a probe was claimed."""
    now = event.now
    if event.kind == "fail":
        if state.state == CLOSED:
            fresh = now - state.window_start >= event.window_seconds
            failures = (0 if fresh else state.failures) + 1
            window_start = now if fresh else state.window_start
            new = dataclasses.replace(state, failures=failures, window_start=window_start)
            if failures >= event.threshold:
                new = _opened(new, now + event.cooldown_seconds)
            return False, True, new
        if state.effective(now) == HALF_OPEN:
            return False, True, _opened(state, now + event.cooldown_seconds)
        return False, False, state
    if event.kind == "ok":
        if state.state == CLOSED:
            return False, False, state
        return False, True, _closed(state, event)
    if event.kind == "probe":
        if state.probe_free(now):
            new = dataclasses.replace(state, state=HALF_OPEN, probe_until=now + event.probe_seconds)
            return True, True, new
        return False, False, state
    if event.kind == "check":
        checked = dataclasses.replace(
            state,
            checked_at=now,
            check_ok=event.check_ok,
            check_latency_ms=event.check_latency_ms,
            check_error=event.check_error[:200],
        )
        if event.check_ok:
            return False, True, checked if state.state == CLOSED else _closed(checked, event)
        until = max(now + event.cooldown_seconds, state.open_until if state.state == OPEN else 0)
        return False, True, _opened(checked, until)
    raise ValueError(f"unknown breaker event {event.kind!r}")


# The same rules in Lua: KEYS[1] the breaker's hash; ARGV as ``Event.args``.
# Replies {granted, state fields...} as text (Lua numbers would come back as integers).
BREAKER_SCRIPT = """
local key = KEYS[1]
local kind = ARGV[1]
local now = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local cooldown = tonumber(ARGV[5])
local probe_seconds = tonumber(ARGV[6])
local raw = redis.call('HGETALL', key)
local s = {}
for i = 1, #raw, 2 do s[raw[i]] = raw[i + 1] end
local state = s['state'] or 'closed'
local failures = tonumber(s['failures'] or '0')
local window_start = tonumber(s['window_start'] or '0')
local open_until = tonumber(s['open_until'] or '0')
local probe_until = tonumber(s['probe_until'] or '0')
local effective = 'closed'
if state == 'open' and now < open_until then
  effective = 'open'
elseif state == 'open' or state == 'half_open' then
  effective = 'half_open'
end
local changed = false
local granted = 0
local function open(untill)
  state = 'open'; open_until = untill; probe_until = 0
end
local function close()
  state = 'closed'; failures = 0; window_start = now; open_until = 0; probe_until = 0
end
if kind == 'fail' then
  if state == 'closed' then
    if now - window_start >= window then
      failures = 0; window_start = now
    end
    failures = failures + 1
    if failures >= threshold then open(now + cooldown) end
    changed = true
  elseif effective == 'half_open' then
    open(now + cooldown)
    changed = true
  end
elseif kind == 'ok' then
  if state ~= 'closed' then
    close()
    changed = true
  end
elseif kind == 'probe' then
  if effective == 'half_open' and probe_until <= now then
    state = 'half_open'; probe_until = now + probe_seconds
    changed = true; granted = 1
  end
elseif kind == 'check' then
  s['checked_at'] = ARGV[2]
  s['check_ok'] = ARGV[7]
  s['check_latency_ms'] = ARGV[8]
  s['check_error'] = ARGV[9]
  if ARGV[7] == '1' then
    if state ~= 'closed' then close() end
  else
    local untill = now + cooldown
    if state == 'open' and open_until > untill then untill = open_until end
    open(untill)
  end
  changed = true
end
local out = {
  'state', state,
  'failures', tostring(failures),
  'window_start', string.format('%.6f', window_start),
  'open_until', string.format('%.6f', open_until),
  'probe_until', string.format('%.6f', probe_until),
  'checked_at', s['checked_at'] or '0',
  'check_ok', s['check_ok'] or '',
  'check_latency_ms', s['check_latency_ms'] or '',
  'check_error', s['check_error'] or ''
}
if changed then
  redis.call('HSET', key, unpack(out))
  redis.call('PEXPIRE', key, tonumber(ARGV[10]))
end
table.insert(out, 1, tostring(granted))
return out
"""
