"""Server-side SVG bar charts for the dashboard (no JavaScript)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int
    title: str

    @property
    def cx(self) -> float:
        return round(self.x + self.width / 2, 1)


@dataclass(frozen=True)
class BarChart:
    title: str
    width: int
    height: int
    bars: list[Bar]
    max_value: int
    baseline: float

    @property
    def empty(self) -> bool:
        return not self.bars


def bar_chart(
    title: str, points: list[tuple[str, int]], *, width: int = 640, height: int = 200
) -> BarChart:
    """Bars for ``(label, value)`` points, scaled to the largest value; labels under bars."""
    top, bottom = 16, 36
    plot = height - top - bottom
    peak = max((value for _, value in points), default=0) or 1
    slot = width / max(len(points), 1)
    bar_width = max(slot * 0.7, 2)
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
                value=int(value),
                title=f"{label}: {int(value)}",
            )
        )
    return BarChart(
        title=title,
        width=width,
        height=height,
        bars=bars,
        max_value=max((int(value) for _, value in points), default=0),
        baseline=top + plot,
    )
