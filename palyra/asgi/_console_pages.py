"""The console's pages, routed: which need an admin, which do not, the
forms they post, and the figures each is made from. The pages themselves
are drawn by ``_pages``, ``_usage_page``, ``_budgets_page`` and
``_tables_page``; the guards (who is asking, CSRF) are the console's own."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .._access import APITokenError
from .._exceptions import (
    AuthenticationError,
    ConfigError,
    InvalidRequestError,
    PermissionDeniedError,
)
from . import _budgets_page, _pages, _providers_page, _tables_page, _tokens_page
from . import _usage_data as _usage
from ._errors import Problem
from ._http import Exchange
from ._script import SCRIPT
from ._sessions import cookie_of

if TYPE_CHECKING:
    from .._client import Palyra
    from ._console import Console

__all__ = ["FORMS", "HTML", "PAGES", "PUBLIC", "form", "page", "refusal"]

HTML = (b"content-type", b"text/html; charset=utf-8")
FORMS = frozenset(
    {"/budgets", "/budgets/remove", "/tokens", "/tokens/revoke"}
    | {
        f"/providers/{a}"
        for a in ("key", "oauth", "refresh", "revoke", "default", "undefault")
    }
)


async def _login_page(ex: Exchange) -> None:
    root = ex.scope.get("root_path", "") or ""
    await ex.answer(200, _pages.login_page(root), [HTML])


async def _style(ex: Exchange) -> None:
    await ex.answer(200, _pages.CSS, [(b"content-type", b"text/css; charset=utf-8")])


async def _script(ex: Exchange) -> None:
    kind = (b"content-type", b"text/javascript; charset=utf-8")
    await ex.answer(200, SCRIPT, [kind])


PUBLIC = {
    "/login": _login_page,
    "/static/console.css": _style,
    "/static/console.js": _script,
}
PAGES = frozenset(
    {
        "/",
        "/usage",
        "/usage.csv",
        "/budgets",
        "/health",
        "/jobs",
        "/tokens",
        "/providers",
    }
)


async def _read_page(client: Palyra, root: str, path: str) -> bytes:
    import asyncio

    if path == "/health":
        return _tables_page.health_page(root, await asyncio.to_thread(client.health))
    scheduler = client.scheduler

    def jobs() -> list[tuple[Any, Any]]:
        return [(job, scheduler.runs(job.id, 5)) for job in scheduler.list()]

    return _tables_page.jobs_page(root, await asyncio.to_thread(jobs))


def refusal(exc: Exception) -> str:
    """What the sign-in page says of a refused token (never the token)."""
    if isinstance(exc, APITokenError) and exc.code == "missing_scope":
        return "That token has no admin scope."
    return "That token was not accepted."


async def _overview_page(client: Palyra, root: str) -> bytes:
    """The overview's figures: this month's totals from the ledger (its
    indexes: by time, then grouped), today's spend."""
    from datetime import UTC, datetime

    from .._exceptions import LedgerError

    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    try:
        by_model = await client.usage.atotals("model", month)
        today = await client.usage.atotals("currency", day)
        by_status = await client.usage.atotals("status", month)
    except LedgerError:  # no ledger: nothing to show
        by_model, today, by_status = [], [], []
    calls = sum(t.calls for t in by_status)
    errors = sum(t.calls for t in by_status if t.key[0] == "error")
    top = sorted(by_model, key=lambda t: (t.cost_total or 0, t.calls), reverse=True)
    return _pages.overview_page(
        root,
        today=_pages.total(today),
        month=_pages.total(by_model),
        calls=calls,
        errors=errors,
        top=top[:10],
    )


def _days(ex: Exchange) -> int:
    value = ex.query("days") or "30"
    if not (value.isascii() and value.isdigit() and 0 < int(value[:4]) <= 366):
        raise Problem(400, "days: a whole number of days, 1 to 366", param="days")
    return int(value)


async def page(console: Console, ex: Exchange) -> None:
    """A page (signed out: the sign-in form instead)."""
    root = ex.scope.get("root_path", "") or ""
    try:
        await console._admin(ex)
    except Problem:
        await ex.answer(303, b"", [(b"location", f"{root}/login".encode())])
        return
    if ex.path == "/":
        await ex.answer(200, await _overview_page(console.client, root), [HTML])
        return
    if ex.path == "/budgets":
        await _budgets(console, ex, root, None, 200)
        return
    if ex.path == "/tokens":
        await _tokens(console, ex)
        return
    if ex.path == "/providers":
        await _providers(console, ex)
        return
    if ex.path in ("/health", "/jobs"):
        await ex.answer(200, await _read_page(console.client, root, ex.path), [HTML])
        return
    days = _days(ex)
    if ex.path == "/usage":
        page = await _usage.page(console.client, root, days)
        await ex.answer(200, page, [HTML])
        return
    by = ex.query("by") or "model"
    if by not in ("model", "agent", "day", "provider"):
        raise Problem(400, "by: model, agent, day or provider", param="by")
    body = await _usage.csv(console.client, by, days)
    disposition = f'attachment; filename="palyra-usage-{by}-{days}d.csv"'
    await ex.answer(
        200,
        body,
        [
            (b"content-type", b"text/csv; charset=utf-8"),
            (b"content-disposition", disposition.encode()),
        ],
    )


async def _budgets(
    console: Console, ex: Exchange, root: str, error: str | None, status: int
) -> None:
    session = console.sessions.get(
        cookie_of(ex.headers.get("cookie")), console._clock()
    )
    csrf = "" if session is None else session.csrf  # a bearer posts no form
    budgets = console.client.budgets
    statuses = await budgets.astatus()
    page = _budgets_page.budgets_page(root, statuses, csrf, error, budgets.alerts())
    await ex.answer(status, page, [HTML])


async def form(console: Console, ex: Exchange) -> None:
    """A budget added or removed from the page, then the page again
    (303: a reload does not post twice); a refused one says why."""
    import asyncio

    admin = await console._admin(ex)
    fields = await console._body(ex)
    console._check_csrf(ex, admin, fields)
    if ex.path.startswith("/tokens"):
        await _token_form(console, ex, fields)
        return
    if ex.path.startswith("/providers/"):
        await _provider_form(console, ex, fields)
        return
    root = ex.scope.get("root_path", "") or ""
    budgets = console.client.budgets
    try:
        if ex.path == "/budgets":
            policy = _budgets_page.budget_of(fields)
            await asyncio.to_thread(budgets.add, policy)
        else:
            await asyncio.to_thread(budgets.remove, str(fields.get("id", "")))
    except (ConfigError, InvalidRequestError) as exc:
        await _budgets(console, ex, root, str(exc), 400)
        return
    await ex.answer(303, b"", [(b"location", f"{root}/budgets".encode())])


async def _tokens(
    console: Console,
    ex: Exchange,
    status: int = 200,
    *,
    made: tuple[Any, str] | None = None,
    error: str | None = None,
) -> None:
    root = ex.scope.get("root_path", "") or ""
    session = console.sessions.get(
        cookie_of(ex.headers.get("cookie")), console._clock()
    )
    csrf = "" if session is None else session.csrf
    tokens = await asyncio.to_thread(console.client.tokens.list)
    page = _tokens_page.tokens_page(root, tokens, csrf, made=made, error=error)
    await ex.answer(status, page, [HTML])


async def _token_form(console: Console, ex: Exchange, fields: dict[str, Any]) -> None:
    """A token made (its secret in the answer, this once) or revoked."""
    tokens = console.client.tokens
    root = ex.scope.get("root_path", "") or ""
    try:
        if ex.path == "/tokens/revoke":
            token_id = str(fields.get("id", ""))
            await asyncio.to_thread(tokens.revoke, token_id)
            console.sessions.end_token(token_id)
            await ex.answer(303, b"", [(b"location", f"{root}/tokens".encode())])
            return
        given = _tokens_page.token_fields(fields)
        if fields.get("days"):
            given["expires_at"] = _tokens_page.expiry_in(fields["days"])
        made = await tokens.acreate(given.pop("name"), **given)
    except (InvalidRequestError, APITokenError) as exc:
        await _tokens(console, ex, 400, error=str(exc))
        return
    await _tokens(console, ex, 200, made=made)


async def _providers(
    console: Console,
    ex: Exchange,
    status: int = 200,
    *,
    said: str | None = None,
    error: str | None = None,
) -> None:
    root = ex.scope.get("root_path", "") or ""
    session = console.sessions.get(
        cookie_of(ex.headers.get("cookie")), console._clock()
    )
    csrf = "" if session is None else session.csrf
    profiles = await console.client.auth.alist()
    providers = list(console.client.config.providers)
    page = _providers_page.providers_page(
        root, profiles, providers, csrf, said=said, error=error
    )
    await ex.answer(status, page, [HTML])


async def _provider_form(
    console: Console, ex: Exchange, fields: dict[str, Any]
) -> None:
    """A key connected (checked first), an OAuth sign-in begun (the browser
    sent to the authorization server), a profile refreshed or revoked."""
    from .._exceptions import PalyraError
    from ._console_api import callback_url

    auth = console.client.auth
    action = ex.path.rsplit("/", 1)[-1]
    try:
        if action == "key":
            provider = str(fields.get("provider", ""))
            key = str(fields.get("key", ""))
            name = str(fields.get("name") or "") or None
            try:
                profile = await auth.aconnect_api_key(provider, key, name=name)
            except (AuthenticationError, PermissionDeniedError):
                # Never the provider's reply: it may quote the key.
                raise InvalidRequestError(
                    f"provider {provider!r} refused the key; nothing was kept"
                ) from None
            said = f"Connected {profile.id}."
        elif action == "oauth":
            provider = str(fields.get("provider", ""))
            attempt = await auth.astart_oauth(
                provider, redirect_uri=callback_url(ex, console.public_url)
            )
            where = attempt.authorize_url.encode()
            await ex.answer(303, b"", [(b"location", where)])
            return
        else:
            profile_id = str(fields.get("id", ""))
            if profile_id not in {p.id for p in await auth.alist()}:
                raise InvalidRequestError(f"no auth profile {profile_id[:128]!r}")
            if action == "refresh":
                await auth.arefresh(profile_id)
                said = f"Refreshed {profile_id}."
            elif action == "default":
                await auth.aset_default(profile_id)
                said = f"{profile_id} is now the default."
            elif action == "undefault":
                await auth.aclear_default(profile_id)
                said = f"{profile_id} is no longer the default."
            else:
                await auth.arevoke(profile_id)
                said = f"Revoked {profile_id}."
    except PalyraError as exc:
        await _providers(console, ex, 400, error=str(exc))
        return
    await _providers(console, ex, 200, said=said)
