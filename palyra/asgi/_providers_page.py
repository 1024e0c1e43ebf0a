"""The console's providers page: each auth profile (its provider, kind,
scope, health, expiry, an API key's masked tail and whether it is its
provider's default), buttons to make it the default, refresh and revoke
it, a form to connect an API key, and a "Sign in with ..." button for each
provider with OAuth settings. Every form carries the session's
CSRF token; the key typed in is a password field, never shown again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._pages import esc, layout

__all__ = ["providers_page"]


def _button(root: str, csrf: str, action: str, profile_id: str, label: str) -> str:
    ask = (
        f' data-confirm="Revoke {esc(profile_id)}? Calls can no longer use it."'
        if action == "revoke"
        else ""
    )
    return (
        f'<form method="post" action="{esc(root)}/providers/{action}"{ask}>'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        f'<input type="hidden" name="id" value="{esc(profile_id)}">'
        f'<button type="submit">{esc(label)} {esc(profile_id)}</button></form>'
    )


def _row(root: str, csrf: str, profile: Any) -> str:
    expires = (
        ""
        if profile.expires_at is None
        else profile.expires_at.isoformat(timespec="minutes")
    )
    cells = (profile.id, profile.provider, profile.kind, profile.scope,
             profile.health, expires, profile.key_hint or "")  # fmt: skip
    actions = _button(root, csrf, "revoke", profile.id, "Revoke")
    if profile.kind == "oauth":
        actions = _button(root, csrf, "refresh", profile.id, "Refresh") + actions
    if profile.default:
        actions = _button(root, csrf, "undefault", profile.id, "Not default") + actions
    else:
        actions = _button(root, csrf, "default", profile.id, "Make default") + actions
    default = "<td>default</td>" if profile.default else "<td></td>"
    return (
        "<tr>"
        + "".join(f"<td>{esc(c)}</td>" for c in cells)
        + f"{default}<td>{actions}</td></tr>"
    )


def providers_page(
    root: str,
    profiles: Sequence[Any],
    providers: Sequence[Any],
    csrf: str,
    *,
    said: str | None = None,
    error: str | None = None,
) -> bytes:
    """The profiles, and the ways to connect one."""
    notes = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    if said:
        notes += f'<p role="status">{esc(said)}</p>'
    heads = ("Profile", "Provider", "Kind", "Scope", "Health", "Expires", "Key",
             "Default", "")  # fmt: skip
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in heads)
    rows = "".join(_row(root, csrf, p) for p in profiles)
    empty = f'<tr><td colspan="{len(heads)}">No profiles yet</td></tr>'
    keyed = [p for p in providers if p.kind != "deterministic"]
    options = "".join(
        f'<option value="{esc(p.id)}">{esc(p.id)}</option>' for p in keyed
    )
    connect = (
        f'<form class="budget-form" method="post" action="{esc(root)}/providers/key">'
        "<h2>Connect an API key</h2>"
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        f'<label for="p-provider">Provider</label>'
        f'<select id="p-provider" name="provider">{options}</select>'
        '<label for="p-key">API key</label>'
        '<input id="p-key" name="key" type="password" autocomplete="off" required>'
        '<label for="p-name">Name</label>'
        '<input id="p-name" name="name" type="text" value="default">'
        '<button type="submit">Check and connect</button></form>'
    )
    sign_ins = "".join(
        f'<form method="post" action="{esc(root)}/providers/oauth">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        f'<input type="hidden" name="provider" value="{esc(p.id)}">'
        f'<button type="submit">Sign in with {esc(p.id)}</button></form>'
        for p in providers
        if getattr(p, "oauth", None) is not None
    )
    body = (
        f"<h1>Providers</h1>{notes}<table><thead><tr>{head}</tr></thead>"
        f"<tbody>{rows or empty}</tbody></table>{connect}{sign_ins}"
    )
    return layout(root, "Providers", body, signed_in=True)
