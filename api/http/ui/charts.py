"""Charts drawn on the server as inline SVG (no script, no chart library, nothing fetched).

Only SVG presentation attributes are used, never `style` attributes: the CSP allows no inline style."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
ROW = 34


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    maximum: float


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def dimension_bars(bars: list[Bar], title: str) -> Markup:
    """Points per dimension against each dimension's maximum: grey track = the maximum, filled = the points."""
    if not bars:
        return Markup("")
    longest = max(b.maximum for b in bars) or 1.0
    track = WIDTH - 120
    parts = [f'<svg class="chart dims" viewBox="0 0 {WIDTH} {ROW * len(bars) + 6}" role="img" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for i, bar in enumerate(bars):
        y = i * ROW
        full = track * bar.maximum / longest
        filled = full * min(max(bar.value / bar.maximum, 0.0), 1.0) if bar.maximum else 0.0
        parts.append(
            f'<g class="dim" data-value="{_num(bar.value)}" data-max="{_num(bar.maximum)}">'
            f'<text x="0" y="{y + 12}" class="label">{escape(bar.label)}</text>'
            f'<rect x="0" y="{y + 16}" width="{full:.1f}" height="12" rx="2" class="track"/>'
            f'<rect x="0" y="{y + 16}" width="{filled:.1f}" height="12" rx="2" class="fill"/>'
            f'<text x="{full + 8:.1f}" y="{y + 27}" class="value">{_num(bar.value)} / {_num(bar.maximum)}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class Step:
    label: str
    contribution: float


def shap_waterfall(base: float, steps: list[Step], final: float, labels: tuple[str, str, str], title: str
                   ) -> Markup:
    """A waterfall from the model's base value through each factor's SHAP contribution to the raw score.
    `labels`: the base row's, the remainder row's (factors not shown) and the final row's label."""
    base_label, rest_label, final_label = labels
    rest = final - base - sum(s.contribution for s in steps)
    rows = [*steps, Step(rest_label, rest)] if abs(rest) > 1e-9 else list(steps)
    levels = [base]
    for step in rows:
        levels.append(levels[-1] + step.contribution)
    low, high = min(levels), max(levels)
    span = (high - low) or 1.0
    left, right = 10.0, WIDTH - 70.0

    def x(value: float) -> float:
        return left + (value - low) / span * (right - left)

    count = len(rows) + 2
    parts = [f'<svg class="chart shap" viewBox="0 0 {WIDTH} {ROW * count + 6}" role="img" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>']

    def marker(y: float, value: float, label: str, css: str) -> None:
        parts.append(f'<g class="{css}"><text x="0" y="{y + 12}" class="label">{escape(label)}: {value:.3f}</text>'
                     f'<rect x="{x(value) - 1.5:.1f}" y="{y + 15}" width="3" height="14" class="mark"/></g>')

    marker(0, base, base_label, "base")
    for i, step in enumerate(rows):
        y = (i + 1) * ROW
        start, end = levels[i], levels[i + 1]
        lo, hi = sorted((x(start), x(end)))
        css = "raises" if step.contribution > 0 else "lowers"
        sign = "+" if step.contribution > 0 else "−"
        parts.append(
            f'<g class="step {css}" data-contribution="{step.contribution:.6f}">'
            f'<text x="0" y="{y + 12}" class="label">{escape(step.label)}</text>'
            f'<rect x="{lo:.1f}" y="{y + 16}" width="{max(hi - lo, 1.0):.1f}" height="12" class="bar"/>'
            f'<text x="{hi + 6:.1f}" y="{y + 27}" class="value">{sign}{abs(step.contribution):.3f}</text></g>')
    marker((len(rows) + 1) * ROW, final, final_label, "final")
    parts.append("</svg>")
    return Markup("".join(parts))


def rate_band(low: float, high: float, rate: float, title: str) -> Markup:
    """The product's rate band for the grade as a line, with the point rate marked on it."""
    left, right = 40.0, WIDTH - 40.0
    span = (high - low) or 1.0
    at = left + (min(max(rate, low), high) - low) / span * (right - left)
    return Markup(
        f'<svg class="chart band" viewBox="0 0 {WIDTH} 44" role="img" aria-label="{escape(title)}">'
        f'<title>{escape(title)}</title>'
        f'<rect x="{left}" y="18" width="{right - left}" height="8" rx="4" class="track"/>'
        f'<text x="{left}" y="42" class="value" text-anchor="middle">{low:.2f}%</text>'
        f'<text x="{right}" y="42" class="value" text-anchor="middle">{high:.2f}%</text>'
        f'<circle cx="{at:.1f}" cy="22" r="7" class="point" data-rate="{rate:.2f}"/>'
        f'<text x="{at:.1f}" y="12" class="value strong" text-anchor="middle">{rate:.2f}%</text></svg>')
