"""The console's pages: server-rendered HTML, readable without JavaScript.

Every value is HTML-escaped where it is put in (`esc`); the style sheet and
the one script are served from the package (``/static/console.css``,
``/static/console.js``), so the pages need no inline style or script and
the Content-Security-Policy stays strict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from html import escape
from typing import Any

__all__ = ["CSS", "esc", "layout", "login_page", "overview_page", "usd"]

CSS = b"""
:root { --ink: #1b1f24; --muted: #57606a; --line: #d0d7de; --accent: #0b57d0; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, sans-serif; color: var(--ink); margin: 0; }
header { display: flex; gap: 1.5rem; align-items: center; padding: 0.75rem 1.5rem;
         border-bottom: 1px solid var(--line); }
header nav a { color: var(--ink); margin-right: 1rem; }
main { padding: 1.5rem; max-width: 72rem; }
a:focus, button:focus, input:focus, select:focus {
  outline: 3px solid var(--accent); outline-offset: 2px;
}
.cards { display: flex; flex-wrap: wrap; gap: 1rem; margin-bottom: 1.5rem; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 0.75rem 1rem;
        min-width: 11rem; }
.card .label { color: var(--muted); font-size: 0.875rem; }
.card .value { font-size: 1.5rem; font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
th, td {
  text-align: left; padding: 0.4rem 0.6rem; border-bottom: 1px solid var(--line);
}
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
form.login { max-width: 28rem; display: grid; gap: 0.5rem; }
input, select { font: inherit; padding: 0.4rem; border: 1px solid var(--muted); }
button { font: inherit; padding: 0.4rem 1rem; background: var(--accent); color: #fff;
         border: 0; border-radius: 4px; cursor: pointer; }
.error { color: #a40e26; }
svg.chart { display: block; margin: 1rem 0; max-width: 100%; height: auto; }
form.range { display: flex; gap: 0.5rem; align-items: center; }
caption { text-align: left; font-weight: 600; padding: 1rem 0 0.25rem; }
section.budget { border-bottom: 1px solid var(--line); padding-bottom: 0.75rem; }
section.budget meter { width: 100%; height: 1.25rem; }
form.budget-form { display: grid; gap: 0.4rem; max-width: 28rem; margin-top: 1.5rem; }
button.copy { margin-left: 0.5rem; }
"""


def esc(value: Any) -> str:
    """``value`` as text safe anywhere in HTML (quotes included)."""
    return escape("" if value is None else str(value), quote=True)


def layout(root: str, title: str, body: str, *, signed_in: bool) -> bytes:
    """A whole page: its head, the console's header and navigation, ``body``."""
    nav = ""
    if signed_in:
        nav = (
            f'<nav aria-label="Console"><a href="{esc(root)}/">Overview</a>'
            f'<a href="{esc(root)}/usage">Usage</a>'
            f'<a href="{esc(root)}/budgets">Budgets</a>'
            f'<a href="{esc(root)}/health">Health</a>'
            f'<a href="{esc(root)}/jobs">Jobs</a>'
            f'<a href="{esc(root)}/providers">Providers</a>'
            f'<a href="{esc(root)}/tokens">Tokens</a></nav>'
        )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · palyra console</title>"
        f'<link rel="stylesheet" href="{esc(root)}/static/console.css">'
        f'<script src="{esc(root)}/static/console.js" defer></script>'
        f"</head><body><header><strong>palyra console</strong>{nav}</header>"
        f"<main>{body}</main></body></html>"
    ).encode()


def login_page(root: str, error: str | None = None) -> bytes:
    """The sign-in form (an admin-scoped API token)."""
    said = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    body = (
        "<h1>Sign in</h1>"
        f"{said}"
        f'<form class="login" method="post" action="{esc(root)}/login">'
        '<label for="token">Admin API token</label>'
        '<input id="token" name="token" type="password" autocomplete="off" required>'
        '<button type="submit">Sign in</button></form>'
        "<p>Make one with <code>palyra tokens create ops --scope admin</code>.</p>"
    )
    return layout(root, "Sign in", body, signed_in=False)


def overview_page(
    root: str,
    *,
    today: Any,
    month: Any,
    calls: int,
    errors: int,
    top: Sequence[Any],
) -> bytes:
    """Spend today and this month, calls, the error rate, the top models."""
    rate = f"{errors / calls:.1%}" if calls else "none"
    cards = (
        _card("Spend today", usd(today))
        + _card("Spend this month", usd(month))
        + _card("Calls this month", f"{calls:,}")
        + _card("Error rate", rate)
    )
    rows = "".join(
        f'<tr><td>{esc(t.key[0])}</td><td class="num">{t.calls:,}</td>'
        f'<td class="num">{esc(usd(t.cost_total))}</td></tr>'
        for t in top
    )
    table = (
        "<table><caption>Top models this month</caption><thead><tr>"
        '<th scope="col">Model</th><th class="num" scope="col">Calls</th>'
        '<th class="num" scope="col">Cost</th></tr></thead>'
        f"<tbody>{rows or '<tr><td colspan=3>No calls yet</td></tr>'}</tbody></table>"
    )
    body = f'<h1>Overview</h1><div class="cards">{cards}</div>{table}'
    return layout(root, "Overview", body, signed_in=True)


def _card(label: str, value: str) -> str:
    return (
        f'<div class="card"><div class="label">{esc(label)}</div>'
        f'<div class="value">{esc(value)}</div></div>'
    )


def usd(value: Decimal | None) -> str:
    """A dollar amount for a page: cents, or six places below a cent."""
    if value is None:
        return "$0.00"
    return (
        f"${value:,.2f}" if value >= Decimal("0.01") or value == 0 else f"${value:.6f}"
    )


def total(rows: Iterable[Any]) -> Decimal:
    """The sum of rows' costs (unpriced ones count nothing)."""
    return sum((r.cost_total or Decimal(0) for r in rows), Decimal(0))
