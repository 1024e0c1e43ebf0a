"""The console's usage page: a daily spend chart drawn server-side as inline
SVG (axis labels, a legend, one bar per day that has spend), tables by model
and by agent, and each table as CSV.

SVG's presentation attributes (``fill``, ``stroke``) are markup, not style:
the chart needs no inline style, and the Content-Security-Policy holds.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ._pages import esc, layout, usd

__all__ = ["chart", "totals_csv", "usage_page"]

WIDTH, HEIGHT = 720, 240
_LEFT, _BOTTOM, _TOP = 64, 40, 16  # room for the axes' labels


def chart(days: Sequence[Any]) -> str:
    """Inline SVG: a bar per day that has spend (``Totals`` keyed by day)."""
    spent = [(t.key[0], t.cost_total or Decimal(0)) for t in days]
    spent = [(day, cost) for day, cost in spent if cost > 0]
    top = max((cost for _, cost in spent), default=Decimal(0))
    plot_w, plot_h = WIDTH - _LEFT - 8, HEIGHT - _BOTTOM - _TOP
    parts = [
        f'<svg role="img" aria-labelledby="chart-title" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="{WIDTH}" height="{HEIGHT}" class="chart">',
        '<title id="chart-title">Spend per day (USD)</title>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}"'
        ' stroke="#57606a"/>',
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{WIDTH - 8}"'
        f' y2="{_TOP + plot_h}" stroke="#57606a"/>',
    ]
    for i in range(3):  # the y axis: 0, half, the top
        value = top * i / 2
        y = _TOP + plot_h - (plot_h * i / 2)
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end"'
            f' font-size="11" class="y-label">${value:.2f}</text>'
        )
    if spent:
        step = plot_w / len(spent)
        bar = max(min(step * 0.7, 48), 2)
        for i, (day, cost) in enumerate(spent):
            h = float(cost / top) * plot_h if top else 0.0
            x = _LEFT + i * step + (step - bar) / 2
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{_TOP + plot_h - h:.1f}"'
                f' width="{bar:.1f}" height="{h:.1f}" fill="#0b57d0">'
                f"<title>{esc(day)}: ${cost:.6f}</title></rect>"
            )
            if len(spent) <= 16 or i % max(len(spent) // 8, 1) == 0:
                parts.append(
                    f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - _BOTTOM + 16}"'
                    ' text-anchor="middle" font-size="11" class="x-label">'
                    f"{esc(str(day)[5:])}</text>"
                )
    parts.append(
        f'<rect x="{WIDTH - 180}" y="2" width="10" height="10" fill="#0b57d0"/>'
        f'<text x="{WIDTH - 165}" y="11" font-size="11" class="legend">'
        "Spend per day (USD)</text></svg>"
    )
    return "".join(parts)


def _table(caption: str, rows: Sequence[Any], csv_href: str) -> str:
    body = "".join(
        f'<tr><td>{esc(t.key[0] or "(none)")}</td><td class="num">{t.calls:,}</td>'
        f'<td class="num">{t.input_uncached + t.cache_read + t.cache_write:,}</td>'
        f'<td class="num">{t.output:,}</td>'
        f'<td class="num">{esc(usd(t.cost_total))}</td></tr>'
        for t in rows
    )
    empty = '<tr><td colspan="5">No calls in this range</td></tr>'
    return (
        f"<table><caption>{esc(caption)} "
        f'<a href="{esc(csv_href)}">CSV</a></caption><thead><tr>'
        '<th scope="col">Name</th><th class="num" scope="col">Calls</th>'
        '<th class="num" scope="col">Input tokens</th>'
        '<th class="num" scope="col">Output tokens</th>'
        f'<th class="num" scope="col">Cost</th></tr></thead><tbody>{body or empty}'
        "</tbody></table>"
    )


def usage_page(
    root: str,
    *,
    days: int,
    by_day: Sequence[Any],
    by_model: Sequence[Any],
    by_agent: Sequence[Any],
) -> bytes:
    """The usage over the last ``days`` days."""
    choices = "".join(
        f'<option value="{n}"{" selected" if n == days else ""}>{n} days</option>'
        for n in (7, 30, 90, 365)
    )
    body = (
        "<h1>Usage</h1>"
        f'<form method="get" action="{esc(root)}/usage" class="range">'
        '<label for="days">Range</label>'
        f'<select id="days" name="days" data-autosubmit>{choices}</select>'
        '<button type="submit">Show</button></form>'
        f"{chart(by_day)}"
        + _table("By model", by_model, f"{root}/usage.csv?by=model&days={days}")
        + _table("By agent", by_agent, f"{root}/usage.csv?by=agent&days={days}")
    )
    return layout(root, "Usage", body, signed_in=True)


def totals_csv(rows: Sequence[Any], by: str) -> bytes:
    """A table as CSV (costs exact; cells that a spreadsheet would take
    for a formula are quoted with a leading apostrophe)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([by, "calls", "input_tokens", "output_tokens", "cost_usd"])
    for t in rows:
        writer.writerow(
            [
                _cell(t.key[0] or ""),
                t.calls,
                t.input_uncached + t.cache_read + t.cache_write,
                t.output,
                "" if t.cost_total is None else str(t.cost_total),
            ]
        )
    return out.getvalue().encode()


def _cell(value: str) -> str:
    return f"'{value}" if value[:1] in ("=", "+", "-", "@") else value
