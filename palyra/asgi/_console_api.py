"""The console's admin API (JSON, under ``/v1/`` of the console): what the
library's own services say, as they say it.

Every route is the client's public API and nothing more: ``client.health()``,
``client.budgets``, ``client.usage``, ``client.tokens``, ``client.auth``.
What goes out is what those return, dumped: references and ids, never a
secret (an API token's secret once, in the answer that made it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .._exceptions import (
    AuthenticationError,
    ConfigError,
    InvalidRequestError,
    PermissionDeniedError,
)
from ._errors import Problem
from ._http import Exchange
from ._tokens_page import expiry_in

if TYPE_CHECKING:
    from ._console import Admin, Console

__all__ = ["serve"]

_TOKEN_FIELDS = ("name", "scopes", "agent", "rate_limit")


async def serve(
    ex: Exchange, console: Console, admin: Admin, body: dict[str, Any] | None
) -> None:
    """Answer one admin API request (404 for a path it does not know)."""
    parts = [p for p in ex.path.split("/") if p]
    if len(parts) < 2 or parts[0] != "v1":
        raise Problem(404, f"no console route {ex.path!r}", code="not_found")
    route = _ROUTES.get((ex.method, parts[1], len(parts)))
    if route is None:
        raise Problem(404, f"no console route {ex.method} {ex.path}", code="not_found")
    found = await route(_Request(ex, console, admin, parts[2:], body or {}))
    await ex.answer_json(200, jsonable(found))


@dataclasses.dataclass(slots=True)
class _Request:
    ex: Exchange
    console: Console
    admin: Admin
    args: list[str]  # the path's parts after the resource
    body: dict[str, Any]

    @property
    def client(self) -> Any:
        return self.console.client

    def query(self, name: str) -> str | None:
        return self.ex.query(name)

    def fields(self, *allowed: str) -> dict[str, Any]:
        """The body's fields, the CSRF token aside; an unknown one is named."""
        given = {k: v for k, v in self.body.items() if k != "csrf"}
        unknown = sorted(set(given) - set(allowed)) if allowed else []
        if unknown:
            raise InvalidRequestError(f"{unknown[0]}: not a field here")
        return given


async def _threaded(fn: Callable[[], Any]) -> Any:
    # The services read SQLite, the keyring or Redis: off the loop.
    return await asyncio.to_thread(fn)


async def _session(r: _Request) -> Any:
    session = r.admin.session
    return {
        "token_id": r.admin.token_id or None,
        "csrf": None if session is None else session.csrf,
        "expires_in": None
        if session is None
        else int(session.left(r.console._clock())),
    }


async def _health(r: _Request) -> Any:
    return await _threaded(r.client.health)


async def _budgets(r: _Request) -> Any:
    return await r.client.budgets.astatus()


async def _alerts(r: _Request) -> Any:
    """``GET /v1/budgets/alerts?limit=``: the alerts sent lately, newest first."""
    if r.args != ["alerts"]:
        raise Problem(404, f"no console route {r.ex.path}", code="not_found")
    return r.client.budgets.alerts(_count(r.query("limit"), "limit", 50))


async def _add_budget(r: _Request) -> Any:
    policy = r.fields()
    try:
        return await _threaded(lambda: r.client.budgets.add(policy))
    except ConfigError as exc:  # the admin's input, not the server's config
        raise Problem(400, str(exc), code="invalid_budget") from None


async def _remove_budget(r: _Request) -> Any:
    (policy_id,) = r.args
    if policy_id not in {p.id for p in r.client.budgets.policies()}:
        raise Problem(404, f"no budget {policy_id[:128]!r}", code="budget_not_found")
    await _threaded(lambda: r.client.budgets.remove(policy_id))
    return {"removed": policy_id}


async def _totals(r: _Request) -> Any:
    if r.args != ["totals"]:
        raise Problem(404, f"no console route {r.ex.path}", code="not_found")
    by = r.query("by") or "model"
    keys: str | tuple[str, ...] = tuple(by.split(",")) if "," in by else by
    since, until = _when(r.query("since"), "since"), _when(r.query("until"), "until")
    tz = r.query("tz") or "UTC"
    return await r.client.usage.atotals(keys, since, until, tz)


async def _tokens(r: _Request) -> Any:
    return await _threaded(r.client.tokens.list)


async def _create_token(r: _Request) -> Any:
    given = r.fields(*_TOKEN_FIELDS, "days")
    name = given.pop("name", None)
    if "scopes" in given and not isinstance(given["scopes"], list):
        raise InvalidRequestError('scopes: a list, e.g. ["chat"]')
    days = given.pop("days", None)
    if days is not None:
        if not isinstance(days, int):  # JSON: a number, not a string of one
            raise InvalidRequestError("days: a whole number of days, 1 to 3650")
        given["expires_at"] = expiry_in(days)
    info, secret = await r.client.tokens.acreate(name, **given)
    return {"token": info, "secret": secret}  # shown this once


async def _revoke_token(r: _Request) -> Any:
    token_id, verb = r.args
    if verb != "revoke":
        raise Problem(404, f"no console route {r.ex.path}", code="not_found")
    info = await _threaded(lambda: r.client.tokens.revoke(token_id))
    r.console.sessions.end_token(token_id)  # its browsers are signed out
    return info


async def _profiles(r: _Request) -> Any:
    return await r.client.auth.alist()


async def _connect_key(r: _Request) -> Any:
    """``POST /v1/profiles`` with ``provider`` and ``key``: validated
    against the provider, then kept in the vault; the answer is the profile
    (references only)."""
    given = r.fields("provider", "key", "name", "profile_id", "scope")
    provider, key = given.pop("provider", None), given.pop("key", None)
    if not isinstance(provider, str) or not isinstance(key, str) or not key:
        raise InvalidRequestError("provider and key: both are needed")
    try:
        return await r.client.auth.aconnect_api_key(provider, key, **given)
    except (AuthenticationError, PermissionDeniedError) as exc:
        # The provider refused the key typed in: the admin's input (on /v1
        # the same refusal is palyra's own credential failing upstream). Its
        # reply is not passed on: it may quote the key in a form no
        # redaction recognises (escaped, cut short).
        what = "refused" if isinstance(exc, AuthenticationError) else "forbade"
        raise Problem(
            400,
            f"provider {provider!r} {what} the key; nothing was kept",
            code="invalid_api_key",
            param="key",
        ) from None


async def _profile_action(r: _Request) -> Any:
    """``POST /v1/profiles/{id}/refresh|revoke|default``, and ``DELETE
    /v1/profiles/{id}/default`` (it stops being its provider's default)."""
    profile_id, verb = r.args
    if verb not in ("refresh", "revoke", "default") or (
        r.ex.method == "DELETE" and verb != "default"
    ):
        raise Problem(404, f"no console route {r.ex.path}", code="not_found")
    known = {p.id for p in await r.client.auth.alist()}
    if profile_id not in known:  # not the library's error: it names a path
        raise Problem(
            404, f"no auth profile {profile_id[:128]!r}", code="profile_not_found"
        )
    auth = r.client.auth
    if verb == "refresh":
        return await auth.arefresh(profile_id)
    if verb == "default":
        if r.ex.method == "DELETE":
            return await auth.aclear_default(profile_id)
        return await auth.aset_default(profile_id)
    await auth.arevoke(profile_id)
    return {"revoked": profile_id}


async def _start_oauth(r: _Request) -> Any:
    """``POST /v1/oauth`` with ``provider``: the authorize URL to send the
    browser to; the server sends it back to the console's callback."""
    given = r.fields("provider", "name", "profile_id", "scope")
    provider = given.pop("provider", None)
    if not isinstance(provider, str):
        raise InvalidRequestError("provider: the provider to sign in to")
    attempt = await r.client.auth.astart_oauth(
        provider, redirect_uri=callback_url(r.ex, r.console.public_url), **given
    )
    return {  # never the PKCE verifier
        "id": attempt.id,
        "provider": attempt.provider,
        "authorize_url": attempt.authorize_url,
        "redirect_uri": attempt.redirect_uri,
        "expires_at": attempt.expires_at,
        "profile_id": attempt.profile_id,
    }


async def _jobs(r: _Request) -> Any:
    scheduler = r.client.scheduler

    def read() -> list[dict[str, Any]]:
        return [{"job": j, "runs": scheduler.runs(j.id, 5)} for j in scheduler.list()]

    return await _threaded(read)


async def _savings(r: _Request) -> Any:
    since, until = _when(r.query("since"), "since"), _when(r.query("until"), "until")
    return await r.client.usage.arouting_savings(since, until)


async def _records(r: _Request) -> Any:
    """A page of records, newest first: ``limit`` (at most 500) from
    ``offset``, paged by the ledger; ``next_offset`` is where the next page
    starts (None: this is the last). One record more is read to know, never
    a count of them all."""
    limit, offset = (
        min(_count(r.query("limit"), "limit", 50), 500),
        _count(r.query("offset"), "offset", 0),
    )
    if limit < 1:  # a page of none would point at itself for ever
        raise InvalidRequestError("limit: 1 to 500 records a page")
    since, until = _when(r.query("since"), "since"), _when(r.query("until"), "until")
    page = await r.client.usage.arecords(
        since, until, limit=limit + 1, offset=offset, newest_first=True
    )
    more = len(page) > limit
    return {
        "records": page[:limit],
        "offset": offset,
        "next_offset": offset + limit if more else None,
    }


def callback_url(ex: Exchange, public_url: str | None = None) -> str:
    """Where the authorization server sends the browser back: the console's
    own callback, at its public URL when given (behind a proxy), else on the
    host the admin reached it by."""
    if public_url:
        return f"{public_url.rstrip('/')}/oauth/callback"
    scheme = ex.scope.get("scheme", "http")
    host = ex.headers.get("host", "127.0.0.1")
    return f"{scheme}://{host}{ex.scope.get('root_path', '')}/oauth/callback"


def _count(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 9):
        raise InvalidRequestError(f"{name}: a whole number, got {value[:20]!r}")
    return int(value)


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(
            f"{name}: an ISO 8601 time with its zone, got {value[:40]!r}"
        ) from None


_ROUTES: dict[tuple[str, str, int], Callable[[_Request], Any]] = {
    ("GET", "session", 2): _session,
    ("GET", "health", 2): _health,
    ("GET", "budgets", 2): _budgets,
    ("POST", "budgets", 2): _add_budget,
    ("GET", "budgets", 3): _alerts,  # /v1/budgets/alerts
    ("DELETE", "budgets", 3): _remove_budget,
    ("GET", "usage", 3): _totals,  # /v1/usage/totals
    ("GET", "tokens", 2): _tokens,
    ("POST", "tokens", 2): _create_token,
    ("POST", "tokens", 4): _revoke_token,  # /v1/tokens/{id}/revoke
    ("GET", "profiles", 2): _profiles,
    ("POST", "profiles", 2): _connect_key,
    ("POST", "profiles", 4): _profile_action,  # /v1/profiles/{id}/refresh|...
    ("DELETE", "profiles", 4): _profile_action,  # /v1/profiles/{id}/default
    ("POST", "oauth", 2): _start_oauth,
    ("GET", "jobs", 2): _jobs,
    ("GET", "savings", 2): _savings,
    ("GET", "records", 2): _records,
}


def jsonable(value: Any) -> Any:
    """What a service returned, as JSON values (decimals as strings, to
    keep them exact; times in ISO 8601)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {  # what its repr shows: never a private or hidden field
            f.name: jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.repr and not f.name.startswith("_")
        }
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    spec = getattr(value, "spec", None)  # a budget's window: as configured
    if isinstance(spec, str):
        return {"spec": spec, "tz": getattr(value, "tz", None)}
    return str(value)
