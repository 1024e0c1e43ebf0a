"""OAuth 2.0 authorization code with PKCE (RFC 6749, RFC 7636): the client's
settings and the attempts in progress, without I/O.

An attempt holds a fresh PKCE verifier (S256) and a ``state`` that is a
random value of its own, never the attempt's id; `AttemptBook` finds an
attempt by that state in constant time, once. What crosses the wire (the
callback, the token and revocation endpoints) is ``oauth_wire``'s.
"""

from __future__ import annotations

import base64
import collections
import difflib
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

from .._config import OAuthConfig
from .._exceptions import ConfigError, InvalidRequestError, OAuthError

__all__ = [
    "ATTEMPT_TTL",
    "AttemptBook",
    "OAuthAttempt",
    "OAuthClient",
    "client_settings",
    "start_attempt",
]

ATTEMPT_TTL = 600.0
"""Seconds an attempt waits for its callback (the reference's 10 minutes)."""
GONE_TTL = 1800.0
"""Seconds a completed or expired attempt's state is still recognised, so a
replayed callback is told what happened rather than "unknown"."""
MAX_PENDING = 1000
_FIELDS = tuple(OAuthConfig.model_fields)
_REQUIRED = ("client_id", "authorize_url", "token_url")
_OWN_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    }
)

# ------------------------------------------------------------------ settings


@dataclass(frozen=True, kw_only=True)
class OAuthClient:
    """The resolved settings of one provider's OAuth client, for one flow.

    ``client_secret`` (a confidential client's, read from its environment
    variable) never shows in the repr. ``redirect_uri`` is the configured
    one, if any: `start_attempt` takes the redirect URI to use explicitly
    (a loopback listener's port is often known only then).
    """

    provider: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    authorize_url: str
    token_url: str
    revocation_url: str | None = None
    scopes: tuple[str, ...] = ()
    redirect_uri: str | None = None
    extra_params: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )


def client_settings(
    provider_id: str,
    oauth: OAuthConfig | None,
    overrides: Mapping[str, Any],
    *,
    environ: Mapping[str, str] = os.environ,
) -> OAuthClient:
    """The client a flow uses: ``overrides`` (any `OAuthConfig` field) over
    the provider's ``oauth`` table, over its preset.

    Raises:
        InvalidRequestError: an unknown or invalid override, no OAuth settings
            at all, a missing client_id, authorize_url or token_url, or a
            ``client_secret_env`` variable that is not set.
    """
    unknown = [key for key in overrides if key not in _FIELDS]
    if unknown:
        raise InvalidRequestError(_unknown_message(unknown))
    given = (
        {} if oauth is None else {n: getattr(oauth, n) for n in oauth.model_fields_set}
    )
    if not given and not overrides:
        raise InvalidRequestError(
            f"provider {provider_id!r} has no OAuth settings: add an"
            ' [providers.oauth] table (or preset = "openai") or pass'
            " authorize_url=, token_url=, client_id="
        )
    config = _merged(provider_id, {**given, **overrides}).resolved()
    missing = [name for name in _REQUIRED if getattr(config, name) is None]
    if missing:
        raise InvalidRequestError(
            f"provider {provider_id!r} OAuth settings lack {', '.join(missing)}:"
            " set them in its [providers.oauth] table or pass "
            + ", ".join(f"{name}=" for name in missing)
        )
    assert config.client_id is not None
    assert config.authorize_url is not None
    assert config.token_url is not None
    return OAuthClient(
        provider=provider_id,
        client_id=config.client_id,
        client_secret=_client_secret(config.client_secret_env, environ),
        authorize_url=config.authorize_url,
        token_url=config.token_url,
        revocation_url=config.revocation_url,
        scopes=config.scopes,
        redirect_uri=config.redirect_uri,
        extra_params=MappingProxyType(dict(config.extra_params)),
    )


def _unknown_message(unknown: list[str]) -> str:
    parts = []
    for key in unknown:
        near = difflib.get_close_matches(str(key), _FIELDS, n=1, cutoff=0.6)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        parts.append(f"{str(key)!r}{hint}")
    return f"unknown OAuth setting {', '.join(parts)}; known: {', '.join(_FIELDS)}"


def _merged(provider_id: str, data: dict[str, Any]) -> OAuthConfig:
    errors: list[tuple[str, str]] = []
    try:
        return OAuthConfig(**data)
    except ConfigError as exc:
        errors = exc.errors
    # Outside the except block: the ConfigError stays out of the chain.
    raise InvalidRequestError(
        f"provider {provider_id!r} OAuth settings: "
        + "; ".join(f"{path}: {message}" for path, message in errors)
    )


def _client_secret(name: str | None, environ: Mapping[str, str]) -> str | None:
    if name is None:
        return None
    secret = (environ.get(name) or "").strip()
    if not secret:
        raise InvalidRequestError(
            f"environment variable {name} (oauth.client_secret_env) is not set or"
            " empty; export the client secret there, or drop client_secret_env"
            " for a public client"
        )
    return secret


# ------------------------------------------------------------------ attempts


@dataclass(frozen=True, kw_only=True, eq=False)
class OAuthAttempt:
    """One authorization in progress: send the user to ``authorize_url`` and
    hand the callback's ``state`` to `AttemptBook.take`.

    Attributes:
        id: The attempt's id, for status and logs (not the ``state``).
        provider: The provider id the tokens are for.
        authorize_url: The URL to open in the user's browser.
        state: The random value the callback must bring back.
        redirect_uri: Where the authorization server sends the browser.
        expires_at: When the attempt stops accepting its callback (UTC).
        profile_id: The auth profile the tokens will be kept in.
        scope: That profile's scope (``global`` or ``agent:<id>``).
        client: The `OAuthClient` the attempt was started with.
        code_verifier: The PKCE verifier, a secret until the code exchange.
        created_at: When the attempt started, in epoch seconds.

    The repr shows the id, provider, redirect URI and expiry only.
    """

    id: str
    provider: str
    authorize_url: str = field(repr=False)
    state: str = field(repr=False)
    redirect_uri: str
    expires_at: datetime
    profile_id: str = field(repr=False)
    scope: str = field(repr=False)
    client: OAuthClient = field(repr=False)
    code_verifier: str = field(repr=False)
    created_at: float = field(repr=False)

    def expired(self, now: float | None = None) -> bool:
        """Whether the attempt is past its ten minutes at ``now`` (epoch s)."""
        return (time.time() if now is None else now) >= self.created_at + ATTEMPT_TTL


def start_attempt(
    client: OAuthClient,
    *,
    profile_id: str,
    scope: str,
    redirect_uri: str,
    now: float | None = None,
) -> OAuthAttempt:
    """A new attempt: a fresh PKCE verifier (S256), a fresh ``state`` and
    the authorize URL carrying them. Nothing is sent anywhere."""
    redirect_uri = _checked_redirect(redirect_uri)
    created = time.time() if now is None else now
    verifier = _b64(secrets.token_bytes(32))  # 43 characters, RFC 7636 §4.1
    challenge = _b64(hashlib.sha256(verifier.encode("ascii")).digest())
    state = secrets.token_urlsafe(32)
    pairs = [
        ("response_type", "code"),
        ("client_id", client.client_id),
        ("redirect_uri", redirect_uri),
    ]
    if client.scopes:
        pairs.append(("scope", " ".join(client.scopes)))
    pairs += [("code_challenge", challenge), ("code_challenge_method", "S256")]
    pairs += [*_extra_params(client), ("state", state)]
    return OAuthAttempt(
        id=secrets.token_hex(16),
        provider=client.provider,
        authorize_url=f"{client.authorize_url}?{urlencode(pairs, quote_via=quote)}",
        state=state,
        redirect_uri=redirect_uri,
        expires_at=datetime.fromtimestamp(created + ATTEMPT_TTL, tz=UTC),
        profile_id=profile_id,
        scope=scope,
        client=client,
        code_verifier=verifier,
        created_at=created,
    )


def _extra_params(client: OAuthClient) -> list[tuple[str, str]]:
    # The config refuses these already; an OAuthClient built by hand could
    # still carry one, and a second state or challenge must never be sent.
    for key in client.extra_params:
        if key.lower() in _OWN_PARAMS:
            raise InvalidRequestError(
                f"extra_params: {key!r} is set by the authorization request itself"
            )
    return list(client.extra_params.items())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _checked_redirect(uri: str) -> str:
    problem = ""
    try:
        OAuthConfig(redirect_uri=uri)  # the same rules as the config's
    except ConfigError as exc:
        problem = "; ".join(message for _, message in exc.errors)
    if problem:
        raise InvalidRequestError(f"redirect_uri: {problem}")
    return uri


class _Gone(NamedTuple):
    """An attempt that left the book, remembered for a while."""

    digest: bytes  # sha256 of the state: the state itself is not kept
    expired: bool
    provider: str
    until: float


class AttemptBook:
    """The attempts in progress, in memory, safe to share between threads.

    An attempt is found by its callback's ``state``, compared in constant
    time with every pending one, and leaves the book when found: a code is
    single-use. Expired attempts are swept on every `add` and `take`; past
    ``max_pending`` the oldest is dropped.
    """

    def __init__(self, *, max_pending: int = MAX_PENDING) -> None:
        self._max = max_pending
        self._pending: dict[str, OAuthAttempt] = {}  # by id, oldest first
        self._gone: collections.deque[_Gone] = collections.deque(maxlen=4 * max_pending)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AttemptBook({len(self)} pending)"

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def add(self, attempt: OAuthAttempt, now: float | None = None) -> None:
        """Keep ``attempt`` until its callback comes or it expires."""
        moment = time.time() if now is None else now
        with self._lock:
            self._sweep(moment)
            self._pending[attempt.id] = attempt
            while len(self._pending) > self._max:
                del self._pending[next(iter(self._pending))]

    def get(self, attempt_id: str, now: float | None = None) -> OAuthAttempt | None:
        """The pending attempt of that id, or None."""
        with self._lock:
            self._sweep(time.time() if now is None else now)
            return self._pending.get(attempt_id)

    def take(self, state: str, now: float | None = None) -> OAuthAttempt:
        """Remove and return the pending attempt whose state is ``state``.

        Raises:
            OAuthError: no pending attempt has that state, it expired, or it
                was already taken (a replayed callback).
        """
        moment = time.time() if now is None else now
        given = str(state).encode("utf-8", "replace")
        with self._lock:
            match = self._match(given)
            if match is None:
                gone = self._seen(given, moment)
            else:
                del self._pending[match.id]
                gone = self._remember(given, match, moment)
            self._sweep(moment)
        if match is not None and not match.expired(moment):
            return match
        raise _state_error(gone)

    def _match(self, state: bytes) -> OAuthAttempt | None:
        match = None
        for attempt in self._pending.values():  # every one: no early exit
            if hmac.compare_digest(attempt.state.encode(), state):
                match = attempt
        return match

    def _remember(self, state: bytes, attempt: OAuthAttempt, now: float) -> _Gone:
        digest = hashlib.sha256(state).digest()
        gone = _Gone(digest, attempt.expired(now), attempt.provider, now + GONE_TTL)
        self._gone.append(gone)
        return gone

    def _seen(self, state: bytes, now: float) -> _Gone | None:
        """How the attempt of that state left the book, if it is remembered."""
        digest = hashlib.sha256(state).digest()
        found = None
        for gone in self._gone:
            if hmac.compare_digest(gone.digest, digest) and gone.until > now:
                found = gone
        return found

    def _sweep(self, now: float) -> None:
        for attempt in [a for a in self._pending.values() if a.expired(now)]:
            del self._pending[attempt.id]
            self._remember(attempt.state.encode(), attempt, now)
        while self._gone and self._gone[0].until <= now:
            self._gone.popleft()


def _state_error(gone: _Gone | None) -> OAuthError:
    if gone is None:
        return OAuthError(
            "unknown state: no OAuth attempt in progress matches it (a wrong state,"
            " an attempt from another process, or one already completed)"
        )
    if gone.expired:
        message = "this OAuth attempt expired after 10 minutes; start a new one"
    else:
        message = (
            "this OAuth attempt was already completed; an authorization code is"
            " single-use: start a new attempt"
        )
    return OAuthError(message, provider=gone.provider)
