"""API tokens: who may call the ``/v1`` surface, for what, and how often.

What it is for: `TokenService` (``client.tokens``) issues bearer tokens
(``pk-palyra-<id>_<secret>``, shown once), keeps only their SHA-256 in a
SQLite file under palyra's home (``tokens.sqlite3``, mode 0600), lists and
revokes them, and verifies a presented token: found by its public id,
compared in constant time, refused when revoked or expired (at once, also
when another process revoked it), checked for the scope asked for, and held
to its own rate limit. Inside: ``tokens`` (`TokenInfo`, the secret's format,
the checks of what a token is made with, `APITokenError`), ``store`` (the
SQLite file), ``limits`` (per-token rate windows) and ``service``.

May import: ``_exceptions``, ``_utils``, ``_core`` (its `Caller` checks an
agent id, through ``palyra._core``), pydantic and the standard library
(``sqlite3`` only when the file is first used). Never another subsystem.

Exports to the rest of palyra: `TokenService`, `TokenInfo`, `APITokenError`,
`TOKEN_SCOPES`, `DEFAULT_SCOPES`, and the rate-limit seam (`RateLimiter`,
`RateWindows`).
"""

from .limits import RateLimiter, RateWindows
from .service import TokenService
from .tokens import DEFAULT_SCOPES, TOKEN_SCOPES, APITokenError, TokenInfo

__all__ = [
    "DEFAULT_SCOPES",
    "TOKEN_SCOPES",
    "APITokenError",
    "RateLimiter",
    "RateWindows",
    "TokenInfo",
    "TokenService",
]
