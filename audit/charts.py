"""Server-side SVG bar charts for the dashboard (no JavaScript)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# At most this many labels under the bars: with more bars, every n-th is labelled.
MAX_LABELS = 12


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4g}"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: float
    title: str
    display: str = ""
    show_label: bool = True

    @property
    def cx(self) -> float:
        return round(self.x + self.width / 2, 1)


@dataclass(frozen=True)
class BarChart:
    title: str
    width: int
    height: int
    bars: list[Bar]
    max_value: float
    baseline: float
    max_display: str = ""
    show_values: bool = True

    @property
    def empty(self) -> bool:
        return not self.bars

    @property
    def all_zero(self) -> bool:
        return not any(bar.value for bar in self.bars)


def bar_chart(
    title: str,
    points: list[tuple[str, float]],
    *,
    width: int = 640,
    height: int = 200,
    fmt: Callable[[float], str] = _number,
) -> BarChart:
    """Bars for ``(label, value)`` points, scaled to the largest value; labels under bars
    (every n-th when there are many), values above them while they fit."""
    top, bottom = 16, 36
    plot = height - top - bottom
    peak = max((value for _, value in points), default=0) or 1
    slot = width / max(len(points), 1)
    bar_width = max(slot * 0.7, 2)
    every = max(1, math.ceil(len(points) / MAX_LABELS))
    bars = []
    for index, (label, value) in enumerate(points):
        bar_height = plot * value / peak
        bars.append(
            Bar(
                x=round(index * slot + (slot - bar_width) / 2, 1),
                y=round(top + plot - bar_height, 1),
                width=round(bar_width, 1),
                height=round(bar_height, 1),
                label=label,
                value=value,
                title=f"{label}: {fmt(value)}",
                display=fmt(value),
                show_label=index % every == 0,
            )
        )
    top_value = max((value for _, value in points), default=0)
    return BarChart(
        title=title,
        width=width,
        height=height,
        bars=bars,
        max_value=top_value,
        baseline=top + plot,
        max_display=fmt(top_value),
        show_values=len(points) <= 16,
    )
