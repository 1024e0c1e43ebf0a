"""The console's budgets page: a bar per budget and scope value (spent,
reserved, the limit, when the window resets), the alerts fired lately, a
form to add one and a button to remove one, each form carrying the
session's CSRF token.

The bars are ``<meter>`` elements (the browser draws them, and reads them
out to a screen reader), with the figures written beside them for anyone
reading without a browser's help.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ._pages import esc, layout, usd

__all__ = ["budgets_page"]

_METRICS = ("usd", "tokens")
_WINDOWS = ("day", "week", "month", "lifetime")
_SCOPES = ("global", "agent", "session", "principal")


def _amount(metric: str, value: Decimal | None) -> str:
    if value is None:
        return "no limit"
    if metric == "usd":
        return usd(value)
    return f"{value:,} tokens"


def _bar(status: Any, csrf: str, root: str, n: int) -> str:
    limit = status.hard_limit or status.soft_limit  # a soft-only budget: its own
    used = status.spent + status.reserved
    meter = ""
    if limit:
        meter = (
            f'<meter min="0" max="{esc(limit)}" value="{esc(min(used, limit))}"'
            f' high="{esc(status.soft_limit or limit)}" optimum="0"'
            f' aria-label="{esc(status.policy)}: {esc(_amount(status.metric, used))}'
            f' of {esc(_amount(status.metric, limit))}"></meter>'
        )
    resets = (
        status.resets_at.isoformat(timespec="minutes") if status.resets_at else "never"
    )
    who = (
        "everyone"
        if status.scope == "global"
        else f"{status.scope} {status.scope_value}"
    )
    return (
        f'<section class="budget" aria-labelledby="b-{n}">'
        f'<h2 id="b-{n}">{esc(status.policy)}'
        f" <small>{esc(who)}, {esc(status.window)}</small></h2>{meter}"
        f"<p>spent {esc(_amount(status.metric, status.spent))}"
        f" + reserved {esc(_amount(status.metric, status.reserved))}"
        f" of {esc(_amount(status.metric, limit))}; state {esc(status.state)};"
        f" resets {esc(resets)}</p>"
        f'<form method="post" action="{esc(root)}/budgets/remove"'
        f' data-confirm="Remove budget {esc(status.policy)}?">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        f'<input type="hidden" name="id" value="{esc(status.policy)}">'
        f'<button type="submit">Remove {esc(status.policy)}</button></form></section>'
    )


def _select(name: str, label: str, options: Sequence[str]) -> str:
    choices = "".join(f'<option value="{esc(o)}">{esc(o)}</option>' for o in options)
    return (
        f'<label for="f-{name}">{esc(label)}</label>'
        f'<select id="f-{name}" name="{name}">{choices}</select>'
    )


def _field(name: str, label: str, *, required: bool = False) -> str:
    need = " required" if required else ""
    return (
        f'<label for="f-{name}">{esc(label)}</label>'
        f'<input id="f-{name}" name="{name}" type="text"{need}>'
    )


def _alerts(alerts: Sequence[Any]) -> str:
    if not alerts:
        return "<h2>Alerts fired</h2><p>No alerts yet.</p>"
    heads = ("When", "Budget", "For", "Passed", "Spent", "Limit")
    head = "".join(f'<th scope="col">{h}</th>' for h in heads)
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{esc(c)}</td>"
            for c in (
                a.at.isoformat(timespec="seconds"),
                a.policy,
                "everyone" if a.scope == "global" else f"{a.scope} {a.scope_value}",
                f"{(a.threshold * 100).normalize():f}%",
                _amount(a.metric, a.spent),
                _amount(a.metric, a.limit),
            )
        )
        + "</tr>"
        for a in alerts
    )
    return (
        '<h2 id="alerts">Alerts fired</h2><table aria-labelledby="alerts">'
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    )


def budgets_page(
    root: str,
    statuses: Sequence[Any],
    csrf: str,
    error: str | None = None,
    alerts: Sequence[Any] = (),
) -> bytes:
    """Each budget's bar, the alerts fired (newest first), and the form to
    add a budget."""
    said = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    # One heading id per bar: a budget per agent has a bar per agent.
    bars = "".join(_bar(s, csrf, root, n) for n, s in enumerate(statuses))
    bars = bars or "<p>No budgets.</p>"
    bars += _alerts(alerts)
    form = (
        f'<form class="budget-form" method="post" action="{esc(root)}/budgets">'
        "<h2>Add a budget</h2>"
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        + _field("id", "Name", required=True)
        + _select("metric", "Metric", _METRICS)
        + _select("window", "Window", _WINDOWS)
        + _field("hard_limit", "Hard limit", required=True)
        + _select("scope", "Scope", _SCOPES)
        + _field("value", "Scope value (an agent's id, say)")
        + '<button type="submit">Add</button></form>'
    )
    return layout(
        root, "Budgets", f"<h1>Budgets</h1>{said}{bars}{form}", signed_in=True
    )


def budget_of(fields: dict[str, Any]) -> dict[str, Any]:
    """A budget's config from the form's fields (empty ones left out)."""
    allowed = ("id", "metric", "window", "hard_limit", "scope", "value")
    return {k: v for k, v in fields.items() if k in allowed and v not in ("", None)}
