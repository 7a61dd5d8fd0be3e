"""Line charts drawn on the server as SVG: labelled axes, points, horizontal threshold rules.

Colours come from the page's stylesheet (CSS classes and variables), so one chart reads in
light and in dark mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 540, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 108, 16, 48
MAX_X_LABELS = 6
Y_TICKS = 5


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    title: str
    kind: str = "point"  # CSS class: point, production, current


@dataclass(frozen=True)
class Rule:
    """A horizontal line across the chart (a threshold), labelled at its right end."""

    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    x_label: str
    y_label: str
    points: Sequence[Point]
    rules: Sequence[Rule] = ()
    x_ticks: Sequence[tuple[float, str]] = ()


class _Scale:
    def __init__(self, low: float, high: float, start: float, end: float) -> None:
        self.low, self.high = (low, high) if high > low else (low - 1, high + 1)
        self.start, self.end = start, end

    def __call__(self, value: float) -> float:
        share = (value - self.low) / (self.high - self.low)
        return round(self.start + share * (self.end - self.start), 1)


def render(chart: Chart) -> Markup:
    """The chart as an inline <svg> element."""
    xs = [p.x for p in chart.points]
    ys = [p.y for p in chart.points] + [r.y for r in chart.rules]
    pad = (max(ys) - min(ys)) * 0.1 or 0.05
    x = _Scale(min(xs), max(xs), LEFT + 12, WIDTH - RIGHT - 12)
    y = _Scale(min(ys) - pad, max(ys) + pad, HEIGHT - BOTTOM, TOP)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(chart.title)}"><title>{escape(chart.title)}</title>',
        *_y_axis(y),
        *_x_axis(x, chart.x_ticks or [(v, _number(v)) for v in sorted(set(xs))]),
        *_axis_labels(chart),
        *_rules(chart.rules, y),
        _line(chart.points, x, y),
        *_points(chart.points, x, y),
        "</svg>",
    ]
    # Every text that came from data went through escape() above.
    return Markup("".join(parts))  # noqa: S704


def _y_axis(y: _Scale) -> list[str]:
    out = [f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}"/>']
    for i in range(Y_TICKS):
        value = y.low + (y.high - y.low) * i / (Y_TICKS - 1)
        at = y(value)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{at}" x2="{WIDTH - RIGHT}" y2="{at}"/>')
        out.append(
            f'<text class="tick" x="{LEFT - 6}" y="{at + 4}" text-anchor="end">'
            f"{_number(value)}</text>"
        )
    return out


def _x_axis(x: _Scale, ticks: Sequence[tuple[float, str]]) -> list[str]:
    base = HEIGHT - BOTTOM
    out = [f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}"/>']
    step = -(-len(ticks) // MAX_X_LABELS)  # a few labels, so they never overlap
    for value, label in list(ticks)[::step]:
        at = x(value)
        out.append(f'<line class="axis" x1="{at}" y1="{base}" x2="{at}" y2="{base + 4}"/>')
        out.append(
            f'<text class="tick" x="{at}" y="{base + 16}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    return out


def _axis_labels(chart: Chart) -> list[str]:
    middle_x = (LEFT + WIDTH - RIGHT) / 2
    middle_y = (TOP + HEIGHT - BOTTOM) / 2
    return [
        f'<text class="axis-label x-label" x="{middle_x}" y="{HEIGHT - 8}" '
        f'text-anchor="middle">{escape(chart.x_label)}</text>',
        f'<text class="axis-label y-label" x="16" y="{middle_y}" text-anchor="middle" '
        f'transform="rotate(-90 16 {middle_y})">{escape(chart.y_label)}</text>',
    ]


def _rules(rules: Sequence[Rule], y: _Scale) -> list[str]:
    out = []
    for rule in rules:
        at = y(rule.y)
        out.append(f'<line class="rule" x1="{LEFT}" y1="{at}" x2="{WIDTH - RIGHT}" y2="{at}"/>')
        out.append(
            f'<text class="rule-label" x="{WIDTH - RIGHT + 4}" y="{at + 4}">'
            f"{escape(rule.label)}</text>"
        )
    return out


def _line(points: Sequence[Point], x: _Scale, y: _Scale) -> str:
    coordinates = " ".join(f"{x(p.x)},{y(p.y)}" for p in sorted(points, key=lambda p: p.x))
    return f'<polyline class="series" points="{coordinates}"/>'


def _points(points: Sequence[Point], x: _Scale, y: _Scale) -> list[str]:
    return [
        f'<circle class="{escape(p.kind)}" cx="{x(p.x)}" cy="{y(p.y)}" r="4">'
        f"<title>{escape(p.title)}</title></circle>"
        for p in points
    ]


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
