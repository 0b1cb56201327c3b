"""Charts drawn on the server as SVG: stacked bars, lines and horizontal bars.

No library and nothing for the browser to run: each function returns a <figure> (the SVG, its
legend and caption) as markup. Every piece of text in it is escaped; colours come from the
stylesheet through the series' class names (`s-NAME`), so the CSP needs no inline style.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 40, 12, 28  # margins for the axes' labels
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
NO_VALUE = "\N{EN DASH}"


@dataclass(frozen=True, slots=True)
class Series:
    """One named row of values, one per label; None where there is no value."""

    name: str
    values: Sequence[float | None]


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _css(name: str) -> str:
    return "s-" + "".join(c if c.isalnum() else "-" for c in name.lower())


def _figure(title: str, svg: list[str], series: Sequence[Series], height: int = HEIGHT) -> Markup:
    legend = "".join(f'<li class="{_css(s.name)}">{escape(s.name)}</li>' for s in series)
    return Markup(
        f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
        f'<svg viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{''.join(svg)}</svg>"
        f'<ul class="legend">{legend}</ul></figure>'
    )


def nice_top(value: float) -> float:
    """The axis' top: 1, 2 or 4 times a power of ten at or above the value, so its half reads well."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 4, 10) if step * power >= value)


def _axes(labels: Sequence[str], top: float, label_of: Callable[[float], str]) -> list[str]:
    """Grid lines at 0, half and the top, and the first and last labels under their slots."""
    parts = []
    for share in (0.0, 0.5, 1.0):
        y = TOP + PLOT_H * (1 - share)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        tick = escape(label_of(top * share))
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}">{tick}</text>')
    slot = PLOT_W / max(len(labels), 1)
    for i in sorted({0, len(labels) - 1}) if labels else ():
        x = LEFT + slot * (i + 0.5)
        parts.append(f'<text class="label" x="{x:.1f}" y="{HEIGHT - 8}">{escape(labels[i])}</text>')
    return parts


def stacked_bars(title: str, labels: Sequence[str], series: Sequence[Series]) -> Markup:
    """A bar per label, its series stacked from the bottom in order."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    top = nice_top(max(totals, default=0))
    slot = PLOT_W / max(len(labels), 1)
    width = max(slot * 0.8, 1)
    parts = _axes(labels, top, _count)
    for i, label in enumerate(labels):
        x, base = LEFT + slot * i + (slot - width) / 2, 0.0
        for s in series:
            value = s.values[i] or 0
            if value <= 0:
                continue
            height = PLOT_H * value / top
            y = TOP + PLOT_H - PLOT_H * base / top - height
            tip = f"{escape(label)}: {escape(s.name)} {_count(value)}"
            parts.append(
                f'<rect class="bar {_css(s.name)}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                f'height="{height:.1f}"><title>{tip}</title></rect>'
            )
            base += value
    return _figure(title, parts, series)


def lines(
    title: str, labels: Sequence[str], series: Sequence[Series], label_of: Callable[[float], str]
) -> Markup:
    """A line per series over the labels; a missing value breaks its line."""
    known = [v for s in series for v in s.values if v is not None]
    top = nice_top(max(known, default=0))
    slot = PLOT_W / max(len(labels), 1)
    parts = _axes(labels, top, label_of)
    for s in series:
        runs: list[list[str]] = [[]]
        for i, value in enumerate(s.values):
            if value is None:
                runs.append([])
                continue
            x, y = LEFT + slot * (i + 0.5), TOP + PLOT_H * (1 - value / top)
            runs[-1].append(f"{x:.1f},{y:.1f}")
            parts.append(
                f'<circle class="point {_css(s.name)}" cx="{x:.1f}" cy="{y:.1f}" r="2.5">'
                f"<title>{escape(labels[i])}: {escape(s.name)} {escape(label_of(value))}</title></circle>"
            )
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline class="line {_css(s.name)}" points="{" ".join(run)}"/>')
    return _figure(title, parts, series)


def bar_rows(
    title: str, rows: Sequence[tuple[str, float | None]], label_of: Callable[[float], str]
) -> Markup:
    """A horizontal bar per row, scaled to 1 (rates); a row without a value has no bar."""
    row_h = 26
    height = TOP + row_h * max(len(rows), 1) + 8
    parts = []
    for i, (label, value) in enumerate(rows):
        y = TOP + row_h * i
        parts.append(f'<text class="row-label" x="{LEFT + 150}" y="{y + 16}">{escape(label)}</text>')
        shown = NO_VALUE if value is None else label_of(value)
        if value is not None:
            width = max((PLOT_W - 230) * value, 1)
            parts.append(
                f'<rect class="bar s-rate" x="{LEFT + 160}" y="{y + 4}" width="{width:.1f}" '
                f'height="{row_h - 8}"><title>{escape(label)}: {escape(shown)}</title></rect>'
            )
        parts.append(f'<text class="row-value" x="{WIDTH - RIGHT}" y="{y + 16}">{escape(shown)}</text>')
    return _figure(title, parts, [], height)
