"""The console's tokens page: every API token (never a secret), a button
to revoke an active one, and a form to make one, whose secret is shown in
the page that answers it, that once (``Cache-Control: no-store``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .._access import TOKEN_SCOPES
from .._exceptions import InvalidRequestError
from ._pages import esc, layout

__all__ = ["expiry_in", "token_fields", "tokens_page"]


def _row(token: Any, csrf: str, root: str, now: datetime) -> str:
    state = (
        "active"
        if token.active(now)
        else ("revoked" if token.revoked_at else "expired")
    )
    action = ""
    if state == "active":
        action = (
            f'<form method="post" action="{esc(root)}/tokens/revoke"'
            f' data-confirm="Revoke token {esc(token.name)}? Its users are refused.">'
            f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
            f'<input type="hidden" name="id" value="{esc(token.id)}">'
            f'<button type="submit">Revoke {esc(token.name)}</button></form>'
        )
    expires = "never" if token.expires_at is None else token.expires_at.date()
    cells = (token.id, token.name, " ".join(token.scopes), token.agent or "",
             token.rate_limit or "", expires, state)  # fmt: skip
    return (
        "<tr>"
        + "".join(f"<td>{esc(c)}</td>" for c in cells)
        + f"<td>{action}</td></tr>"
    )


def tokens_page(
    root: str,
    tokens: Sequence[Any],
    csrf: str,
    *,
    made: tuple[Any, str] | None = None,
    error: str | None = None,
) -> bytes:
    """The tokens, and ``made``'s secret when one was just made."""
    now = datetime.now(UTC)
    said = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    if made is not None:
        info, secret = made
        said += (
            f'<p role="status">Token {esc(info.name)} made. Its secret, shown this'
            f' once: <code class="secret">{esc(secret)}</code></p>'
        )
    heads = ("Id", "Name", "Scopes", "Agent", "Rate limit", "Expires", "State", "")
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in heads)
    rows = "".join(_row(t, csrf, root, now) for t in tokens)
    boxes = "".join(
        f'<label><input type="checkbox" name="scope_{s}" value="1"'
        f"{' checked' if s != 'admin' else ''}> {esc(s)}</label>"
        for s in TOKEN_SCOPES
    )
    form = (
        f'<form class="budget-form" method="post" action="{esc(root)}/tokens">'
        "<h2>Make a token</h2>"
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        '<label for="t-name">Name</label>'
        '<input id="t-name" name="name" type="text" required>'
        f"<fieldset><legend>Scopes</legend>{boxes}</fieldset>"
        '<label for="t-agent">Agent (optional)</label>'
        '<input id="t-agent" name="agent" type="text">'
        '<label for="t-days">Days until it expires (optional)</label>'
        '<input id="t-days" name="days" type="text" inputmode="numeric">'
        '<button type="submit">Make</button></form>'
    )
    body = (
        f"<h1>API tokens</h1>{said}<table><thead><tr>{head}</tr></thead>"
        f"<tbody>{rows}</tbody></table>{form}"
    )
    return layout(root, "Tokens", body, signed_in=True)


def token_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """``TokenService.create``'s arguments from the form."""
    made: dict[str, Any] = {
        "name": fields.get("name", ""),
        "scopes": [s for s in TOKEN_SCOPES if fields.get(f"scope_{s}")],
    }
    if fields.get("agent"):
        made["agent"] = fields["agent"]
    return made


def expiry_in(days: object) -> datetime:
    """When a token made now for ``days`` days expires (a form's text or a
    JSON number: a whole number, 1 to 3650)."""
    plain = isinstance(days, int | str) and not isinstance(days, bool)
    text = str(days) if plain else ""
    if not (text.isascii() and text.isdigit() and 0 < int(text[:5]) <= 3650):
        raise InvalidRequestError("days: a whole number of days, 1 to 3650")
    return datetime.now(UTC) + timedelta(days=int(text))
