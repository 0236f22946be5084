"""The one clock of time-dependent rules (TOTP steps, throttle windows).

Tests shift it with the ``clock`` fixture instead of sleeping.
"""

from __future__ import annotations

import time as _time
from datetime import datetime, timedelta

from django.utils import timezone

_offset_seconds: float = 0.0


def time() -> float:
    return _time.time() + _offset_seconds


def now() -> datetime:
    return timezone.now() + timedelta(seconds=_offset_seconds)


def advance(seconds: float) -> None:
    global _offset_seconds
    _offset_seconds += seconds


def reset() -> None:
    global _offset_seconds
    _offset_seconds = 0.0
