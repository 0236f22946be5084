"""The window engine's inputs and outputs, shared by both backends."""

from __future__ import annotations

from dataclasses import dataclass

# A count that never refuses: counters that only count (login throttle, once()).
UNLIMITED = 2**62


class StoreUnavailable(Exception):
    """Neither Redis nor the database could answer (the caller decides: fail closed...)."""


class StaleEpoch(Exception):
    """The caller's cache was built before the org's latest access change."""

    def __init__(self, epoch: int) -> None:
        super().__init__(epoch)
        self.epoch = epoch


@dataclass(slots=True)
class Counter:
    """One fixed window: its key names its window, which starts at ``window_start``
    and ends ``reset_in`` seconds from now. ``amount`` is added when every counter
    of the call stays within its ``limit``."""

    key: str
    window_start: int
    reset_in: int
    limit: int
    amount: int

    @property
    def ttl_ms(self) -> int:
        # The counter outlives its window a little; callers report the window.
        return (self.reset_in + 5) * 1000


@dataclass(slots=True)
class Counts:
    """``denied``: the index of the first counter that would pass its limit (then
    nothing was counted), else None. ``values``: every counter's value after the
    call (its current value when denied or only read)."""

    denied: int | None
    values: list[int]


def fixed_window(window_seconds: int, now: float) -> tuple[int, int]:
    """(start, seconds until reset) of the window ``now`` falls in."""
    start = int(now) - int(now) % window_seconds
    return start, start + window_seconds - int(now)
