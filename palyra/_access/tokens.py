"""What an API token is: `TokenInfo`, the secret's format, the checks of
what a token is made with, and `APITokenError`.

A secret is ``pk-palyra-<id>_<43 characters of base64url>``: 32 random bytes
after the token's public id. The id finds the record; the SHA-256 of the
whole secret, compared with `hmac.compare_digest`, decides. Nothing of the
secret but its digest is ever kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from .._core import NOBODY
from .._exceptions import InvalidRequestError, PalyraError
from .._utils import shown

__all__ = [
    "DEFAULT_SCOPES",
    "PREFIX",
    "TOKEN_SCOPES",
    "APITokenError",
    "TokenInfo",
    "checked_agent",
    "checked_expiry",
    "checked_name",
    "checked_rate",
    "checked_scopes",
    "digest",
    "matches",
    "new_secret",
    "token_id_of",
    "valid_id",
]

PREFIX = "pk-palyra-"
TOKEN_SCOPES = ("chat", "embeddings", "audio", "models", "admin")
"""What a token may be allowed: chat (``/v1/chat/completions`` and
``/v1/messages``), embeddings, audio (transcriptions), models (lists), and
admin (the console: never given unless asked for)."""
DEFAULT_SCOPES = ("chat", "embeddings", "audio", "models")
"""A token's scopes when none are named: every call, not the console."""
MAX_RATE = 1_000_000  # requests per minute

_ID = re.compile(r"tok_[0-9a-f]{16}")
_SECRET = re.compile(r"pk-palyra-(tok_[0-9a-f]{16})_[A-Za-z0-9_-]{43}")


class APITokenError(PalyraError):
    """A presented API token was refused, or a token operation failed.

    Attributes:
        status: The HTTP status the ``/v1`` surface answers with: 401 (no
            such token, malformed, revoked or expired), 403 (the token lacks
            the scope), 429 (its rate limit), 404 (revoking an unknown id).
        code: ``invalid_api_token``, ``revoked_api_token``,
            ``expired_api_token``, ``missing_scope``, ``rate_limit_exceeded``
            or ``token_not_found``.
        retry_after: Seconds until the rate limit lets the token through.
    """

    def __init__(
        self, message: str, *, status: int, code: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


class TokenInfo(BaseModel):
    """An API token as palyra keeps it: everything but the secret.

    Attributes:
        id: The public id (``tok_`` and 16 hex digits), also inside the secret.
        name: What it is for, as given.
        scopes: What it may call (a subset of `TOKEN_SCOPES`).
        agent: Every call through it runs as this agent (budgets, auth
            profiles and the ledger follow), whatever the request says.
        rate_limit: Requests per minute it may make (None: no limit).
        created_at: When it was made (UTC).
        expires_at: When it stops working (None: never).
        revoked_at: When it was revoked, if it was.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    scopes: tuple[str, ...]
    agent: str | None = None
    rate_limit: int | None = None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        """Whether it works at ``now``: not revoked, not expired."""
        return self.revoked_at is None and (
            self.expires_at is None or now < self.expires_at
        )


def new_secret() -> tuple[str, str]:
    """A new token's id and secret."""
    token_id = "tok_" + secrets.token_hex(8)
    tail = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return token_id, f"{PREFIX}{token_id}_{tail}"


def digest(secret: str) -> str:
    """The SHA-256 of a secret, hex: all that is kept of it."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def token_id_of(secret: Any) -> str | None:
    """The id inside a well-formed secret; None for anything else."""
    if not isinstance(secret, str) or len(secret) > 128:
        return None
    found = _SECRET.fullmatch(secret)
    return found.group(1) if found else None


def matches(secret: str, kept: str) -> bool:
    """Whether ``secret`` is the one whose digest is ``kept`` (constant time)."""
    return hmac.compare_digest(digest(secret), kept)


def checked_name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 128:
        raise InvalidRequestError(f"name: must be 1-128 characters, got {shown(name)}")
    if not name.isprintable():
        raise InvalidRequestError("name: must have no control characters")
    return name.strip()


def checked_scopes(scopes: Any) -> tuple[str, ...]:
    if isinstance(scopes, str) or not isinstance(scopes, Iterable):
        raise InvalidRequestError(
            f"scopes: must be a list of {', '.join(TOKEN_SCOPES)}, got {shown(scopes)}"
        )
    given = list(scopes)
    unknown = [s for s in given if s not in TOKEN_SCOPES]
    if unknown or not given:
        raise InvalidRequestError(
            f"scopes: must be one or more of {', '.join(TOKEN_SCOPES)}; got"
            f" {shown(unknown or given)}"
        )
    return tuple(s for s in TOKEN_SCOPES if s in given)


def checked_agent(agent: Any) -> str | None:
    """An agent id, checked by the rules every call's agent follows."""
    return None if agent is None else NOBODY.merged(agent=agent).agent


def checked_rate(rate: Any) -> int | None:
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, int) or not 1 <= rate <= MAX_RATE:
        raise InvalidRequestError(
            f"rate_limit: must be requests per minute, 1 to {MAX_RATE:,}, or None;"
            f" got {shown(rate)}"
        )
    return rate


def checked_expiry(expires_at: Any, now: datetime) -> datetime | None:
    if expires_at is None:
        return None
    if not isinstance(expires_at, datetime) or expires_at.utcoffset() is None:
        raise InvalidRequestError(
            "expires_at: must be an aware datetime (with a time zone) or None"
        )
    if expires_at <= now:
        raise InvalidRequestError("expires_at: must be in the future")
    return expires_at


def valid_id(token_id: Any) -> bool:
    """Whether ``token_id`` looks like a token id."""
    return isinstance(token_id, str) and _ID.fullmatch(token_id) is not None
