"""Latency percentiles that survive aggregation: a fixed histogram per rollup row.

A percentile of several rollup rows cannot be computed from their percentiles
(averaging p95s is wrong, and so is taking the largest). Each row therefore also
keeps how many requests fell in each of the fixed ``BUCKETS_MS`` ranges; rows add
up bucket by bucket, and ``percentile`` reads the merged histogram, interpolating
linearly inside the bucket that holds the rank. The error is bounded by that
bucket's width (a few ms for fast calls, 10-20 % of the value for slow ones).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

# Upper bounds (ms) of each bucket; the last bucket holds everything slower.
BUCKETS_MS: tuple[float, ...] = (
    5,
    10,
    20,
    35,
    50,
    75,
    100,
    150,
    200,
    300,
    400,
    500,
    750,
    1_000,
    1_500,
    2_000,
    3_000,
    4_000,
    5_000,
    7_500,
    10_000,
    15_000,
    20_000,
    30_000,
    45_000,
    60_000,
    90_000,
    120_000,
)
SIZE = len(BUCKETS_MS) + 1


def histogram(latencies_ms: Iterable[float]) -> list[int]:
    """Counts per bucket: bucket ``i`` holds ``BUCKETS_MS[i-1] < value <= BUCKETS_MS[i]``."""
    counts = [0] * SIZE
    for value in latencies_ms:
        counts[bisect.bisect_left(BUCKETS_MS, max(float(value), 0.0))] += 1
    return counts


def merge(histograms: Iterable[Sequence[int]]) -> list[int]:
    """The histogram of the union; rows written before histograms existed (empty) add nothing."""
    total = [0] * SIZE
    for counts in histograms:
        for index, count in enumerate(counts[:SIZE]):
            total[index] += int(count)
    return total


def percentile(counts: Sequence[int], fraction: float) -> float:
    """The ``fraction`` (0..1) percentile of a histogram, in ms; 0.0 for no requests."""
    total = sum(counts)
    if total <= 0:
        return 0.0
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            low = BUCKETS_MS[index - 1] if index > 0 else 0.0
            if index >= len(BUCKETS_MS):
                return float(low)  # slower than the last bound: report the bound
            high = BUCKETS_MS[index]
            return round(low + (high - low) * (rank - seen) / count, 1)
        seen += count
    return float(BUCKETS_MS[-1])
