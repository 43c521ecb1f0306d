"""Inline SVG charts drawn in Python: no JavaScript library, no network, every label escaped.

Values arrive as fractions and are drawn as percentages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from markupsafe import Markup, escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")
WIDTH, HEIGHT = 600, 320
LEFT, RIGHT, TOP, BOTTOM = 56, 170, 30, 46
LEGEND_CHARS = 22


@dataclass(frozen=True)
class Series:
    """One line: (x, y, err) points, y and err as fractions. A reference line spans the whole x range."""

    label: str
    points: list[tuple[float, float, float]] = field(default_factory=list)
    color: str = PALETTE[0]
    dashed: bool = False
    reference: bool = False


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = max(hi - lo, 1e-9)
    raw = span / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    start = math.ceil(lo / step) * step
    return [round(start + i * step, 6) for i in range(int((hi - start) / step + 1e-9) + 1)]


def _y_range(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.1, 1.0)
    return max(0.0, lo - pad), min(100.0, hi + pad)


def _frame(title: str, x_label: str, y_label: str, lo: float, hi: float) -> list[str]:
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = [
        (
            f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{escape(title)}">'
        ),
        f'<text class="title" x="{LEFT}" y="18">{escape(title)}</text>',
        f'<rect class="plot-area" x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}"/>',
        (
            f'<text class="axis-label" x="{LEFT + pw / 2}" y="{HEIGHT - 8}" text-anchor="middle">'
            f"{escape(x_label)}</text>"
        ),
        (
            f'<text class="axis-label" transform="translate(14 {TOP + ph / 2}) rotate(-90)" text-anchor="middle">'
            f"{escape(y_label)}</text>"
        ),
    ]
    for t in _ticks(lo, hi):
        y = TOP + ph * (1 - (t - lo) / (hi - lo))
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>'
        )
    return out


def _legend(items: list[tuple[str, str, bool]]) -> list[str]:
    out = []
    for i, (label, color, dashed) in enumerate(items):
        y = TOP + 8 + 18 * i
        x = WIDTH - RIGHT + 12
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        short = label if len(label) <= LEGEND_CHARS else label[: LEGEND_CHARS - 1] + "…"
        out.append(
            f'<g class="legend-item"><line x1="{x}" x2="{x + 18}" y1="{y}" y2="{y}" stroke="{color}" '
            f'stroke-width="2"{dash}/><text x="{x + 24}" y="{y + 4}">{escape(short)}'
            f"<title>{escape(label)}</title></text></g>"
        )
    return out


def line_chart(
    *, series: list[Series], x_values: list[int], title: str, y_label: str, x_label: str = "shots per class"
) -> Markup:
    """Metric against shots: one line per series, error bars for the std over seeds, categorical x."""
    ys = [
        100 * (y + s * e)
        for ser in series
        for x, y, e in ser.points
        for s in (-1, 1)
        if not math.isnan(y) and not math.isnan(e)
    ]
    ys += [100 * y for ser in series for _, y, _ in ser.points if not math.isnan(y)]
    if not ys or not x_values:
        return Markup(f'<p class="no-data">No data for {escape(title)}.</p>')
    lo, hi = _y_range(ys)
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    xpos = {x: LEFT + pw * (i + 0.5) / len(x_values) for i, x in enumerate(x_values)}

    def ypos(v: float) -> float:
        return TOP + ph * (1 - (100 * v - lo) / (hi - lo))

    out = _frame(title, x_label, y_label, lo, hi)
    out += [
        f'<text class="tick" x="{xpos[x]:.1f}" y="{TOP + ph + 16}" text-anchor="middle">{x}</text>' for x in x_values
    ]
    for ser in series:
        pts = [(x, y, e) for x, y, e in ser.points if x in xpos and not math.isnan(y)]
        if not pts:
            continue
        dash = ' stroke-dasharray="5 3"' if ser.dashed or ser.reference else ""
        label = escape(ser.label)
        out.append(f'<g class="series" data-series="{label}">')
        if ser.reference:
            y = ypos(pts[0][1])
            out.append(
                f'<line class="ref" x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="{ser.color}"{dash}/>'
            )
        elif len(pts) > 1:
            path = " ".join(f"{xpos[x]:.1f},{ypos(y):.1f}" for x, y, _ in sorted(pts))
            out.append(f'<polyline class="line" points="{path}" stroke="{ser.color}"{dash}/>')
        for x, y, e in pts:
            cx, cy = xpos[x], ypos(y)
            if not math.isnan(e) and e > 0:
                out.append(
                    f'<line class="err" x1="{cx:.1f}" x2="{cx:.1f}" y1="{ypos(y - e):.1f}" '
                    f'y2="{ypos(y + e):.1f}" stroke="{ser.color}"/>'
                )
            out.append(
                f'<circle class="pt" cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{ser.color}" data-x="{x}" '
                f'data-y="{100 * y:.2f}"><title>{label}, {x} shots: {100 * y:.1f}'
                + (f" ± {100 * e:.1f}" if not math.isnan(e) else "")
                + "</title></circle>"
            )
        out.append("</g>")
    out += _legend([(s.label, s.color, s.dashed or s.reference) for s in series])
    out.append("</svg>")
    return Markup("".join(out))


def scatter_chart(*, points: list[tuple[str, float, float, str]], title: str, x_label: str, y_label: str) -> Markup:
    """(label, x, y, colour) points, x and y as fractions; the legend lists each label once."""
    points = [p for p in points if not (math.isnan(p[1]) or math.isnan(p[2]))]
    if not points:
        return Markup(f'<p class="no-data">No data for {escape(title)}.</p>')
    x_lo, x_hi = _y_range([100 * p[1] for p in points])
    lo, hi = _y_range([100 * p[2] for p in points])
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = _frame(title, x_label, y_label, lo, hi)
    for t in _ticks(x_lo, x_hi):
        x = LEFT + pw * (t - x_lo) / (x_hi - x_lo)
        out.append(f'<text class="tick" x="{x:.1f}" y="{TOP + ph + 16}" text-anchor="middle">{t:g}</text>')
    for label, xv, yv, color in points:
        cx = LEFT + pw * (100 * xv - x_lo) / (x_hi - x_lo)
        cy = TOP + ph * (1 - (100 * yv - lo) / (hi - lo))
        out.append(
            f'<circle class="pt" cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{color}" data-x="{100 * xv:.2f}" '
            f'data-y="{100 * yv:.2f}"><title>{escape(label)}: {100 * xv:.1f}, {100 * yv:.1f}</title></circle>'
        )
    legend = list(dict.fromkeys((p[0].split(" · ")[0], p[3], False) for p in points))
    out += _legend(legend)
    out.append("</svg>")
    return Markup("".join(out))


def _x_ticks(lo: float, hi: float, to_x) -> list[str]:
    return [
        f'<text class="tick" x="{to_x(t):.1f}" y="{TOP + HEIGHT - TOP - BOTTOM + 16}" text-anchor="middle">{t:g}</text>'
        for t in _ticks(lo, hi)
        if lo - 1e-9 <= t <= hi + 1e-9
    ]


def roc_chart(*, curves: list[tuple[str, list[float], list[float], str]], title: str) -> Markup:
    """ROC curves: (label, FPR values, TPR values, colour) as fractions; ID is the positive class. The dashed
    diagonal is a detector that guesses."""
    if not curves:
        return Markup(f'<p class="no-data">No data for {escape(title)}.</p>')
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def at(f: float, t: float) -> str:
        return f"{LEFT + pw * f:.1f},{TOP + ph * (1 - t):.1f}"

    out = _frame(title, "FPR: OOD images accepted (%)", "TPR: ID images accepted (%)", 0.0, 100.0)
    out[0] = out[0].replace('class="chart"', 'class="chart roc"', 1)
    out += _x_ticks(0.0, 100.0, lambda t: LEFT + pw * t / 100)
    out.append(f'<polyline class="chance" points="{at(0, 0)} {at(1, 1)}" stroke="#999" stroke-dasharray="4 3"/>')
    for label, fpr, tpr, color in curves:
        points = " ".join(at(f, t) for f, t in zip(fpr, tpr, strict=True))
        out.append(
            f'<polyline class="roc-line" data-series="{escape(label)}" points="{points}" stroke="{color}" '
            f'fill="none" stroke-width="2"><title>{escape(label)}</title></polyline>'
        )
    out += _legend([(label, color, False) for label, _, _, color in curves])
    out.append("</svg>")
    return Markup("".join(out))


def histogram_chart(
    *, edges: list[float], id_share: list[float], ood_share: list[float], title: str, ood_label: str, note: str = ""
) -> Markup:
    """ID and OOD scores on shared bins, as the fraction of each set's images per bin (bars overlap)."""
    shares = [*id_share, *ood_share]
    if not shares or len(edges) != len(id_share) + 1:
        return Markup(f'<p class="no-data">No data for {escape(title)}.</p>')
    hi = max(100 * max(shares), 1e-9) * 1.08  # headroom above the tallest bar
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    lo_x, hi_x = float(edges[0]), float(edges[-1])

    def x(v: float) -> float:
        return LEFT + pw * (v - lo_x) / (hi_x - lo_x)

    def y(share: float) -> float:
        return TOP + ph * (1 - 100 * share / hi)

    out = _frame(title, "score (higher: more in-distribution)" + (f"; {note}" if note else ""), "images (%)", 0.0, hi)
    out[0] = out[0].replace('class="chart"', 'class="chart hist"', 1)
    out += _x_ticks(lo_x, hi_x, x)
    items = (("ID test set", id_share, PALETTE[0]), (ood_label, ood_share, PALETTE[1]))
    for cls, (label, share, color) in zip(("id", "ood"), items, strict=True):
        out.append(f'<g class="bars {cls}" fill="{color}" fill-opacity="0.45" data-series="{escape(label)}">')
        for left, right, s in zip(edges[:-1], edges[1:], share, strict=True):
            if s > 0:
                out.append(
                    f'<rect x="{x(left):.1f}" y="{y(s):.1f}" width="{max(x(right) - x(left), 0.5):.1f}" '
                    f'height="{TOP + ph - y(s):.1f}"><title>{escape(label)}: {100 * s:.1f}% of images in '
                    f"[{left:.4g}, {right:.4g})</title></rect>"
                )
        out.append("</g>")
    out += _legend([(label, color, False) for label, _, color in items])
    out.append("</svg>")
    return Markup("".join(out))
