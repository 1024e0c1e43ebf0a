"""`create_console`: the console's ASGI app, its sign-in and its guards.

Every request needs an admin: a browser session (a cookie made by
``POST /login`` with an ``admin``-scoped API token) or the token itself as
a bearer (scripts). A session's state-changing requests also carry its CSRF
token (the ``x-palyra-csrf`` header or a ``csrf`` form field). Every answer
carries a strict Content-Security-Policy, ``X-Frame-Options: DENY``,
``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store``. Errors use
the ``/v1`` surface's JSON envelope. The admin API's routes are in
``palyra.asgi._console_api``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from .._access import APITokenError
from .._client import Palyra
from . import _console_api, _console_pages, _pages
from ._errors import Problem, problem_of
from ._http import Exchange, Receive, Scope, Send, lifespan, new_request_id, under_mount
from ._sessions import (
    Session,
    SessionStore,
    cookie_header,
    cookie_of,
    csrf_matches,
    on_loopback,
)

__all__ = ["Admin", "Console", "create_console"]

logger = logging.getLogger("palyra.console")

MAX_BODY = 64 * 1024  # the console takes forms and small JSON bodies only
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'{}; frame-ancestors 'none';"
    " base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
]


@dataclass(frozen=True, slots=True)
class Admin:
    """Who a console request is from: a token's id (empty when the console
    asks for none), and the session it came with (None: a bearer)."""

    token_id: str
    session: Session | None


class Console:
    """The console over one client (see `create_console`)."""

    def __init__(
        self,
        client: Palyra,
        *,
        admin_token_required: bool = True,
        secure_cookies: bool | None = None,
        public_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.require_token = admin_token_required
        self.secure_cookies = secure_cookies
        self.public_url = public_url
        self.sessions = SessionStore()
        self._clock = clock
        # "Sign in with" posts a form answered by a redirect to the
        # authorization server: form-action must name its origin too.
        csp = _CSP.format("".join(f" {o}" for o in _sign_in_origins(client)))
        self._headers = [(b"content-security-policy", csp.encode()), *SECURITY_HEADERS]

    def __repr__(self) -> str:
        return f"Console(admin_token_required={self.require_token})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(self.client, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        extra = [(b"x-request-id", request_id.encode()), *self._headers]
        ex = Exchange(scope, receive, send, under_mount(scope), extra)
        try:
            await self._route(ex)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            problem = problem_of(exc, request_id)
            if ex.started:
                logger.warning("palyra.console: %s failed after its head", request_id)
                return
            await ex.answer_json(problem.status, problem.body(), problem.headers)

    async def _route(self, ex: Exchange) -> None:
        if not self.require_token and not self._named_host(ex):
            # Without tokens, a page elsewhere whose name was pointed at
            # 127.0.0.1 (DNS rebinding) could sign itself in: it would send
            # its own name as the Host.
            raise Problem(
                403,
                "this console signs in without a token, so it answers only"
                " requests to 127.0.0.1, localhost, [::1] or its public_url",
                code="host_not_allowed",
            )
        if ex.path == "/login" and ex.method == "POST":
            await self._login(ex)
            return
        if ex.path == "/oauth/callback" and ex.method == "GET":
            await self._callback(ex)
            return
        if ex.method == "GET" and ex.path in _console_pages.PUBLIC:
            await _console_pages.PUBLIC[ex.path](ex)
            return
        if ex.method == "GET" and ex.path in _console_pages.PAGES:
            await _console_pages.page(self, ex)
            return
        if ex.method == "POST" and ex.path in _console_pages.FORMS:
            await _console_pages.form(self, ex)
            return
        if ex.path == "/logout" and ex.method == "POST":
            admin = await self._admin(ex)
            self._check_csrf(ex, admin, await self._body(ex))
            self.sessions.end(cookie_of(ex.headers.get("cookie")))
            await ex.answer(204, b"", [self._cookie(ex, "", 0)])
            return
        admin = await self._admin(ex)
        body = None
        if ex.method not in _SAFE:
            body = await self._body(ex)
            self._check_csrf(ex, admin, body)
        await _console_api.serve(ex, self, admin, body)

    def _named_host(self, ex: Exchange) -> bool:
        try:
            host = urlsplit(f"//{ex.headers.get('host', '')}").hostname or ""
            public = urlsplit(self.public_url or "").hostname
        except ValueError:  # a Host no URL could hold ("[::1", say)
            return False
        return host in _LOOPBACK_NAMES or (public is not None and host == public)

    # -- sign-in ---------------------------------------------------------------

    async def _login(self, ex: Exchange) -> None:
        """``POST /login`` with ``token`` (JSON or a form): the session's
        cookie and its CSRF token; a form is sent back to the console."""
        form = _is_form(ex)
        data = await self._body(ex)
        token_id = ""
        if self.require_token:
            try:
                token_id = await self._verified(data.get("token"))
            except (Problem, APITokenError) as exc:
                if not form:
                    raise
                root = ex.scope.get("root_path", "") or ""
                page = _pages.login_page(root, _console_pages.refusal(exc))
                await ex.answer(401, page, [_console_pages.HTML])
                return
        now = self._clock()
        session_id, session = self.sessions.create(token_id, now)
        cookie = self._cookie(ex, session_id, session.left(now))
        if form:
            root = ex.scope.get("root_path", "") or ""
            await ex.answer(303, b"", [(b"location", f"{root}/".encode()), cookie])
            return
        await ex.answer_json(
            200,
            {"csrf": session.csrf, "expires_in": round(session.left(now))},
            {"set-cookie": cookie[1].decode("latin-1")},
        )

    async def _callback(self, ex: Exchange) -> None:
        """The authorization server's redirect: no session is asked for (a
        ``SameSite=Strict`` cookie does not come back from another site),
        the attempt's single-use ``state`` is what binds it; the browser is
        then sent to the console, told how it went (never the error's text)."""
        query = ex.scope.get("query_string", b"").decode("latin-1")
        url = f"{_console_api.callback_url(ex, self.public_url)}?{query}"
        root = ex.scope.get("root_path", "") or ""
        try:
            profile = await self.client.auth.acomplete_oauth(url)
            where = f"{root}/?connected={quote(profile.id)}"
        except Exception as exc:  # an OAuthError, or the vault failing
            # Its class only, at INFO: anyone may call this route, and the
            # error's text quotes what the caller sent.
            logger.info(
                "palyra.console: an OAuth sign-in failed: %s", type(exc).__name__
            )
            where = f"{root}/?oauth_failed={quote(type(exc).__name__)}"
        await ex.answer(303, b"", [(b"location", where.encode())])

    async def _verified(self, secret: Any) -> str:
        """The id of an admin token presented at sign-in."""
        if isinstance(secret, str):
            secret = secret.strip()  # as a bearer is
        if not isinstance(secret, str) or not secret:
            raise Problem(401, "sign in with an admin API token", code="no_token")
        info = await self.client.tokens.averify(secret, "admin")
        return info.id

    def _cookie(self, ex: Exchange, value: str, max_age: float) -> tuple[bytes, bytes]:
        root = ex.scope.get("root_path", "") or "/"
        secure = self.secure_cookies
        if secure is None:
            # Without Secure only when everything says loopback: the server's
            # address, the caller's and the Host (a proxy on the same host
            # sends "Host: 127.0.0.1" for its https users).
            server = (ex.scope.get("server") or ("",))[0]
            caller = (ex.scope.get("client") or ("",))[0]
            local = all(
                on_loopback(h) for h in (server, caller, ex.headers.get("host"))
            )
            secure = ex.scope.get("scheme") == "https" or not local
        return cookie_header(value, max_age, path=root, secure=secure)

    # -- who is asking -----------------------------------------------------------

    async def _admin(self, ex: Exchange) -> Admin:
        """The admin behind a request, or 401 (403: a token without the
        admin scope)."""
        bearer = _bearer(ex.headers)
        if bearer is not None:
            info = await self.client.tokens.averify(bearer, "admin")
            return Admin(info.id, None)
        session = self.sessions.get(cookie_of(ex.headers.get("cookie")), self._clock())
        if session is None:
            raise Problem(
                401, "sign in first: POST /login with an admin token", code="signed_out"
            )
        if session.token_id and not await self._still_admin(session.token_id):
            self.sessions.end_token(session.token_id)
            raise Problem(401, "the session's token no longer works", code="signed_out")
        # The cookie slides with the session (logout's clearing one comes later).
        value = cookie_of(ex.headers.get("cookie")) or ""
        ex.extra.append(self._cookie(ex, value, session.left(self._clock())))
        return Admin(session.token_id, session)

    async def _still_admin(self, token_id: str) -> bool:
        import asyncio
        from datetime import UTC, datetime

        try:
            info = await asyncio.to_thread(self.client.tokens.get, token_id)
        except APITokenError:
            return False
        return info.active(datetime.now(UTC)) and "admin" in info.scopes

    def _check_csrf(self, ex: Exchange, admin: Admin, body: dict[str, Any]) -> None:
        if admin.session is None:
            return  # a bearer: no cookie a page elsewhere could ride on
        given = ex.headers.get("x-palyra-csrf") or body.get("csrf")
        if not csrf_matches(admin.session, given if isinstance(given, str) else None):
            raise Problem(403, "missing or wrong CSRF token", code="csrf_failed")

    async def _body(self, ex: Exchange) -> dict[str, Any]:
        if _is_form(ex):
            raw = await ex.body(MAX_BODY)
            try:
                fields = parse_qs(raw.decode(), keep_blank_values=True)
            except UnicodeDecodeError:
                raise Problem(
                    400, "the form is not UTF-8", code="invalid_form"
                ) from None
            return {k: v[-1] for k, v in fields.items()}
        length = ex.headers.get("content-length", "")
        if length in ("", "0") and "transfer-encoding" not in ex.headers:
            return {}
        return await ex.json(MAX_BODY)


def _is_form(ex: Exchange) -> bool:
    kind: str = ex.headers.get("content-type", "")
    return kind.split(";", 1)[0].strip() == "application/x-www-form-urlencoded"


def _bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def create_console(
    client: Palyra,
    *,
    admin_token_required: bool = True,
    secure_cookies: bool | None = None,
    public_url: str | None = None,
) -> Console:
    """The console of ``client`` as a raw ASGI app: its admin API under
    ``/v1/`` of wherever it is mounted (``create_app(client, console=True)``
    mounts it at ``/console``).

    Args:
        client: The client it administers.
        admin_token_required: False lets anyone on the network sign in
            without a token (local use only); sessions and CSRF still apply.
        secure_cookies: The session cookie's ``Secure``: None decides (set
            unless the server, the caller and the Host are all loopback and
            the scheme is http).
        public_url: The console's URL as browsers reach it (behind a proxy:
            ``https://console.example.com/console``), for the OAuth callback.

    Returns:
        An ASGI 3 callable; its lifespan's shutdown closes ``client``.
    """
    return Console(
        client,
        admin_token_required=admin_token_required,
        secure_cookies=secure_cookies,
        public_url=public_url,
    )


def _sign_in_origins(client: Palyra) -> list[str]:
    """The origins of the configured providers' authorization endpoints."""
    origins: set[str] = set()
    for provider in client.config.providers:
        oauth = getattr(provider, "oauth", None)
        url = None if oauth is None else oauth.resolved().authorize_url
        if url:
            parts = urlsplit(url)
            origins.add(f"{parts.scheme}://{parts.netloc}")
    return sorted(origins)
