"""``client.tokens``: issue, list, revoke and verify API tokens.

Every operation has an async twin (``a`` prefix, same parameters) that runs
it in a worker thread, so an event loop never waits on SQLite.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from .limits import RateLimiter, RateWindows
from .store import TokenStore
from .tokens import (
    DEFAULT_SCOPES,
    APITokenError,
    TokenInfo,
    checked_agent,
    checked_expiry,
    checked_name,
    checked_rate,
    checked_scopes,
    digest,
    matches,
    new_secret,
    token_id_of,
    valid_id,
)

__all__ = ["TokenService"]

T = TypeVar("T")
_INVALID = "the API token is not valid: check its value, or make a new one"


class TokenService:
    """The API tokens of the ``/v1`` surface: ``client.tokens``.

    Args:
        path: Returns the token file's path (asked on first use):
            ``<home>/tokens.sqlite3``.
        now: The wall clock (UTC-aware), for expiry; tests pass their own.
        monotonic: Seconds, for rate windows.
        limiter: Counts requests against each token's rate limit (default:
            in this process; a client with shared state counts on Redis).
    """

    def __init__(
        self,
        path: Callable[[], Path],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._store = TokenStore(path)
        self._now = now
        self._monotonic = monotonic
        self._windows: RateLimiter = limiter or RateWindows()

    @property
    def path(self) -> Path:
        """The token file."""
        return self._store.path

    def create(
        self,
        name: str,
        *,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        agent: str | None = None,
        rate_limit: int | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[TokenInfo, str]:
        """Issue a token.

        Args:
            name: What it is for (1-128 characters).
            scopes: What it may call: ``chat``, ``embeddings``, ``audio``,
                ``models`` (these four by default), and ``admin`` (the
                console; only when named).
            agent: Every call through it runs as this agent.
            rate_limit: Requests per minute (None: no limit).
            expires_at: When it stops working (aware; None: never).

        Returns:
            The token's record and its secret (``pk-palyra-...``): the only
            time the secret is shown; palyra keeps its SHA-256 alone.

        Raises:
            InvalidRequestError: a bad argument, named.
        """
        now = self._now()
        token_id, secret = new_secret()
        info = TokenInfo(
            id=token_id,
            name=checked_name(name),
            scopes=checked_scopes(scopes),
            agent=checked_agent(agent),
            rate_limit=checked_rate(rate_limit),
            created_at=now,
            expires_at=checked_expiry(expires_at, now),
        )
        self._store.add(info, digest(secret))
        return info, secret

    def list(self) -> list[TokenInfo]:
        """Every token, revoked and expired ones included, oldest first."""
        return self._store.all()

    def get(self, token_id: str) -> TokenInfo:
        """The token of this id as it stands now (revoked, expired, or not).

        Raises:
            APITokenError: no token has that id (``token_not_found``).
        """
        found = self._store.find(token_id) if valid_id(token_id) else None
        if found is None:
            raise APITokenError(
                f"no API token {token_id!r}", status=404, code="token_not_found"
            )
        return found[0]

    def revoke(self, token_id: str) -> TokenInfo:
        """Stop a token at once (in every process using the file).

        Raises:
            APITokenError: no token has that id (``token_not_found``).
        """
        if not valid_id(token_id) or not self._store.revoke(token_id, self._now()):
            raise APITokenError(
                f"no API token {token_id!r}", status=404, code="token_not_found"
            )
        found = self._store.find(token_id)
        assert found is not None
        return found[0]

    def verify(self, secret: Any, scope: str | None = None) -> TokenInfo:
        """The token a presented secret is, if it may be used now.

        Args:
            secret: What the caller presented (``Authorization: Bearer ...``).
            scope: What it is used for (one of `TOKEN_SCOPES`), or None.

        Raises:
            APITokenError: 401 unknown, malformed, revoked or expired; 403
                without ``scope``; 429 past its rate limit (``retry_after``).
        """
        info = self._usable(secret, scope)
        if info.rate_limit is not None:
            wait = self._windows.admit(info.id, info.rate_limit, self._monotonic())
            _within_rate(info, wait)
        return info

    async def averify_inline(self, secret: Any, scope: str | None = None) -> TokenInfo:
        """`verify` on the event loop itself, for the ``/v1`` server: the
        token is a primary-key read of a local file (no thread hop per
        request), and a rate limit kept on Redis is counted through its
        asyncio client, so that a slow Redis never stalls the loop."""
        info = self._usable(secret, scope)
        if info.rate_limit is not None:
            aadmit = getattr(self._windows, "aadmit", None)
            now = self._monotonic()
            if aadmit is None:
                wait = self._windows.admit(info.id, info.rate_limit, now)
            else:
                wait = await aadmit(info.id, info.rate_limit, now)
            _within_rate(info, wait)
        return info

    def _usable(self, secret: Any, scope: str | None) -> TokenInfo:
        token_id = token_id_of(secret)
        found = None if token_id is None else self._store.find(token_id)
        if found is None or not matches(secret, found[1]):
            raise APITokenError(_INVALID, status=401, code="invalid_api_token")
        info = found[0]
        now = self._now()
        if info.revoked_at is not None:
            raise APITokenError(
                f"API token {info.id} was revoked", status=401, code="revoked_api_token"
            )
        if info.expires_at is not None and now >= info.expires_at:
            raise APITokenError(
                f"API token {info.id} expired at {info.expires_at.isoformat()}",
                status=401,
                code="expired_api_token",
            )
        if scope is not None and scope not in info.scopes:
            raise APITokenError(
                f"API token {info.id} may not use {scope!r}; its scopes:"
                f" {', '.join(info.scopes)}",
                status=403,
                code="missing_scope",
            )
        return info

    def close(self) -> None:
        """Close the token file (it reopens when used again)."""
        self._store.close()

    # -- async twins ---------------------------------------------------------

    async def acreate(
        self,
        name: str,
        *,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        agent: str | None = None,
        rate_limit: int | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[TokenInfo, str]:
        """Async `create`."""
        return await _threaded(
            lambda: self.create(
                name,
                scopes=scopes,
                agent=agent,
                rate_limit=rate_limit,
                expires_at=expires_at,
            )
        )

    async def alist(self) -> builtins.list[TokenInfo]:
        """Async `list`."""
        return await _threaded(self.list)

    async def arevoke(self, token_id: str) -> TokenInfo:
        """Async `revoke`."""
        return await _threaded(lambda: self.revoke(token_id))

    async def averify(self, secret: Any, scope: str | None = None) -> TokenInfo:
        """Async `verify`."""
        return await _threaded(lambda: self.verify(secret, scope))

    def __repr__(self) -> str:
        return f"TokenService({self._store.path})"


async def _threaded(work: Callable[[], T]) -> T:
    import asyncio  # the app's loop has loaded it already

    return await asyncio.to_thread(work)


def _within_rate(info: TokenInfo, wait: float | None) -> None:
    if wait is not None:
        raise APITokenError(
            f"API token {info.id} is past its {info.rate_limit} requests"
            f" a minute; retry in {wait:.1f}s",
            status=429,
            code="rate_limit_exceeded",
            retry_after=wait,
        )
