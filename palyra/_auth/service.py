"""`client.auth`: connect, sign in, list, refresh and revoke auth profiles.

Each operation is one flow (`palyra._auth.steps`), run by `Auth`'s sync
method or awaited by its ``a``-prefixed twin: the two cannot drift. Secrets go
to the vault and the metadata to the profile file, in that order; when the
second step fails, the first is undone, so nothing is left half-stored.
"""

from __future__ import annotations

import logging
import webbrowser
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from .._config import PalyraConfig, ProviderConfig
from .._exceptions import AuthProfileError, InvalidRequestError, PalyraError
from .book import ProfileBook, expiry, now_utc
from .login import CallbackListener, loopback_redirect
from .oauth import OAuthAttempt, client_settings, start_attempt
from .oauth_wire import callback_error, code_request, parse_callback, revocation_request
from .profiles import (
    AuthProfile,
    check_profile_id,
    check_scope,
    new_profile_id,
    profile_of,
)
from .refresh import refresh_profile
from .remote import Deadline, exchange_tokens, revoke_token, validate_key
from .steps import AsyncSend, AuthFlow, Local, Send, adrive, drive

__all__ = ["Auth"]

logger = logging.getLogger("palyra")
_WELL_KNOWN = {"openai": "openai_compatible", "anthropic": "anthropic"}
Announce = bool | Callable[[str], object]
Profiles = list[AuthProfile]  # (``Auth.list`` shadows the builtin in the class)
T = TypeVar("T")


class Auth:
    """Auth profiles of one client: ``client.auth``.

    Every method has an async twin prefixed ``a`` (``aconnect_api_key``...).
    Secrets live in the client's vault (the OS keyring by default), the
    profiles' metadata in ``auth_profiles.json`` under the client's home.
    """

    def __init__(
        self,
        config: PalyraConfig,
        book: ProfileBook,
        send: Send,
        asend: AsyncSend,
        sleep: Callable[[float], None],
        asleep: Callable[[float], Awaitable[None]] | None,
    ) -> None:
        self._config = config
        self._book = book
        self._send = send
        self._asend = asend
        self._sleep = sleep
        self._asleep = asleep

    def __repr__(self) -> str:
        return f"Auth(home={str(self._book.file.path.parent)!r})"

    def _run(self, flow: AuthFlow[T]) -> T:
        return drive(flow, self._send, self._sleep)

    async def _arun(self, flow: AuthFlow[T]) -> T:
        return await adrive(flow, self._asend, self._asleep)

    # -- API keys ------------------------------------------------------------

    def connect_api_key(
        self,
        provider: str,
        key: str,
        *,
        profile_id: str | None = None,
        name: str | None = None,
        scope: str = "global",
        validate: bool = True,
        timeout: float = 30.0,
    ) -> AuthProfile:
        """Check an API key against the provider, then keep it.

        The key is validated first (OpenAI-compatible: ``GET {base}/models``
        with Bearer; Anthropic: ``GET {base}/v1/models`` with ``x-api-key``),
        then stored in the vault and the profile in the profile file.
        Connecting again with the same id rotates the key in place.

        Args:
            provider: A configured provider id, or ``openai`` / ``anthropic``.
            key: The API key.
            profile_id: The profile's id (default: ``<provider>-<name>``).
            name: A human name (default ``default``).
            scope: ``"global"`` or ``"agent:<id>"``.
            validate: Ask the provider before storing (default True).
            timeout: Seconds the whole operation may take.

        Raises:
            AuthenticationError: 401, nothing stored. PermissionDeniedError:
                403. RateLimitError: 429. InternalServerError: 5xx.
            APIConnectionError: the provider could not be reached.
            InvalidRequestError: a bad argument, named. VaultError: the vault
                could not store the key.
        """
        return self._run(
            self._connect(provider, key, profile_id, name, scope, validate, timeout)
        )

    async def aconnect_api_key(
        self,
        provider: str,
        key: str,
        *,
        profile_id: str | None = None,
        name: str | None = None,
        scope: str = "global",
        validate: bool = True,
        timeout: float = 30.0,
    ) -> AuthProfile:
        """Async `connect_api_key`."""
        return await self._arun(
            self._connect(provider, key, profile_id, name, scope, validate, timeout)
        )

    def _connect(
        self,
        provider_id: str,
        key: str,
        profile_id: str | None,
        name: str | None,
        scope: str,
        validate: bool,
        timeout: float,
    ) -> AuthFlow[AuthProfile]:
        provider = self._provider(provider_id)
        key = _checked_key(key)
        profile: AuthProfile = yield Local(
            lambda: self._draft(provider, "api_key", profile_id, name, scope)
        )
        if validate:
            yield from validate_key(provider, key, Deadline(timeout))
        saved: AuthProfile = yield Local(lambda: self._save(profile, {"api_key": key}))
        return saved

    # -- OAuth -----------------------------------------------------------------

    def start_oauth(
        self,
        provider: str,
        *,
        profile_id: str | None = None,
        scope: str = "global",
        name: str | None = None,
        **overrides: Any,
    ) -> OAuthAttempt:
        """Begin an OAuth 2.0 authorization-code sign-in with PKCE.

        Send the user to ``attempt.authorize_url``; the server redirects them
        to ``attempt.redirect_uri`` with a code, which `complete_oauth` takes.
        The attempt is single-use and expires after 10 minutes.

        Args:
            provider: A configured provider with an ``oauth`` table, or
                ``openai`` (the preset; pass ``client_id=``).
            **overrides: Any ``oauth`` setting (``client_id``,
                ``redirect_uri``, ``scopes``, ``token_url``...).

        Raises:
            InvalidRequestError: no OAuth settings, or a bad one (named).
        """
        return self._start(provider, profile_id, scope, name, overrides, None)

    async def astart_oauth(
        self,
        provider: str,
        *,
        profile_id: str | None = None,
        scope: str = "global",
        name: str | None = None,
        **overrides: Any,
    ) -> OAuthAttempt:
        """Async `start_oauth` (it does no I/O)."""
        return self._start(provider, profile_id, scope, name, overrides, None)

    def _start(
        self,
        provider_id: str,
        profile_id: str | None,
        scope: str,
        name: str | None,
        overrides: Mapping[str, Any],
        redirect_uri: str | None,
    ) -> OAuthAttempt:
        provider = self._provider(provider_id)
        scope = check_scope(scope)
        pid = check_profile_id(profile_id) if profile_id is not None else None
        label = _checked_name(name)
        settings = dict(overrides)
        if redirect_uri is not None:
            settings["redirect_uri"] = redirect_uri
        client = client_settings(provider.id, provider.oauth, settings)
        if not client.redirect_uri:
            raise InvalidRequestError(
                "redirect_uri: none configured; set it in the provider's oauth"
                " table, pass redirect_uri=, or use login_oauth"
            )
        attempt = start_attempt(
            client, profile_id=pid or "", scope=scope, redirect_uri=client.redirect_uri
        )
        secret_env = settings.get("client_secret_env") or (
            provider.oauth.client_secret_env if provider.oauth else None
        )
        self._book.attempts.add(attempt)
        self._book.attempt_notes[attempt.id] = (label, secret_env)
        return attempt

    def complete_oauth(
        self,
        callback_url: str | None = None,
        *,
        code: str | None = None,
        state: str | None = None,
        validate: bool = False,
        timeout: float = 30.0,
    ) -> AuthProfile:
        """Finish a sign-in: exchange the code for tokens and keep them.

        Args:
            callback_url: The URL the browser was sent back to (with
                ``code`` and ``state``, or ``error``).
            code, state: Instead of (or over) the URL's.
            validate: Also check the access token against the models
                endpoint before storing it.

        Raises:
            OAuthError: a wrong, expired or reused attempt, an ``error=``
                callback, or a token endpoint that refused.
        """
        return self._run(self._complete(callback_url, code, state, validate, timeout))

    async def acomplete_oauth(
        self,
        callback_url: str | None = None,
        *,
        code: str | None = None,
        state: str | None = None,
        validate: bool = False,
        timeout: float = 30.0,
    ) -> AuthProfile:
        """Async `complete_oauth`."""
        return await self._arun(
            self._complete(callback_url, code, state, validate, timeout)
        )

    def _complete(
        self,
        callback_url: str | None,
        code: str | None,
        state: str | None,
        validate: bool,
        timeout: float,
    ) -> AuthFlow[AuthProfile]:
        callback = parse_callback(callback_url, code=code, state=state)
        attempt = self._book.attempts.take(callback.state or "")
        if callback.error:
            raise callback_error(callback, attempt.provider)
        if not callback.code:
            raise InvalidRequestError("code: the callback carries no code")
        label, secret_env = self._book.attempt_notes.pop(attempt.id, ("default", None))
        request = code_request(attempt, callback.code)
        secrets = tuple(
            s
            for s in (
                callback.code,
                attempt.code_verifier,
                attempt.client.client_secret,
            )
            if s
        )
        deadline = Deadline(timeout)
        tokens = yield from exchange_tokens(
            request, secrets, deadline, attempt.provider
        )
        provider = self._provider(attempt.provider)
        if validate:
            yield from validate_key(_bearer(provider), tokens.access_token, deadline)
        draft = yield Local(
            lambda: self._draft(
                provider, "oauth", attempt.profile_id or None, label, attempt.scope
            )
        )
        client = attempt.client
        profile = draft.model_copy(
            update={
                "token_endpoint": client.token_url,
                "revocation_endpoint": client.revocation_url,
                "client_id": client.client_id,
                "client_secret_env": secret_env,
                "scopes": tokens.scopes or client.scopes,
                "expires_at": expiry(tokens.expires_in),
            }
        )
        kept = {"access_token": tokens.access_token}
        if tokens.refresh_token:
            kept["refresh_token"] = tokens.refresh_token
        saved: AuthProfile = yield Local(lambda: self._save(profile, kept))
        return saved

    def login_oauth(
        self,
        provider: str,
        *,
        open_browser: Announce = True,
        timeout: float = 300.0,
        profile_id: str | None = None,
        scope: str = "global",
        name: str | None = None,
        **overrides: Any,
    ) -> AuthProfile:
        """Sign in through the browser, with a listener on 127.0.0.1 for the
        redirect (the port of the configured ``redirect_uri``, or any free
        one).

        Args:
            open_browser: True opens the authorize URL in the browser (and
                prints it); False only prints it; a callable is given the URL.
            timeout: Seconds to wait for the whole sign-in.

        Raises:
            APITimeoutError: no callback came in time (the listener is closed
                either way). OAuthError: as `complete_oauth`.
        """
        return self._run(
            self._login(
                provider, open_browser, timeout, profile_id, scope, name, overrides
            )
        )

    async def alogin_oauth(
        self,
        provider: str,
        *,
        open_browser: Announce = True,
        timeout: float = 300.0,
        profile_id: str | None = None,
        scope: str = "global",
        name: str | None = None,
        **overrides: Any,
    ) -> AuthProfile:
        """Async `login_oauth`."""
        return await self._arun(
            self._login(
                provider, open_browser, timeout, profile_id, scope, name, overrides
            )
        )

    def _login(
        self,
        provider_id: str,
        open_browser: Announce,
        timeout: float,
        profile_id: str | None,
        scope: str,
        name: str | None,
        overrides: Mapping[str, Any],
    ) -> AuthFlow[AuthProfile]:
        provider = self._provider(provider_id)
        configured = overrides.get("redirect_uri") or (
            provider.oauth.resolved().redirect_uri if provider.oauth else None
        )
        host, port, path = loopback_redirect(configured)
        deadline = Deadline(timeout)
        listener: CallbackListener = yield Local(
            lambda: CallbackListener(host, port, path)
        )
        try:
            attempt = self._start(
                provider_id, profile_id, scope, name, overrides, listener.redirect_uri
            )
            yield Local(lambda: _announce(open_browser, attempt.authorize_url))
            url = yield Local(lambda: listener.wait(deadline.left()))
            try:
                profile = yield from self._complete(
                    url, None, None, False, max(deadline.left(), 5.0)
                )
            except PalyraError as exc:
                listener.answer(False, f"palyra could not finish the sign-in: {exc}")
                raise
            listener.answer(True, f"palyra is signed in to {provider.id}.")
            return profile
        finally:
            yield Local(listener.close)

    # -- reading -----------------------------------------------------------------

    def list(self, *, agent: str | None = None) -> Profiles:
        """Every profile (sorted by id); with ``agent``, those a call for that
        agent sees: the global ones, its own laid over those of the same
        provider and name."""
        return self._run(self._list(agent))

    async def alist(self, *, agent: str | None = None) -> Profiles:
        """Async `list`."""
        return await self._arun(self._list(agent))

    def _list(self, agent: str | None, fresh: bool = False) -> AuthFlow[Profiles]:
        book = self._book

        def read() -> Profiles:
            profiles = book.reload()
            chosen = (
                sorted(profiles.values(), key=lambda p: p.id)
                if agent is None
                else book.visible(agent)
            )
            return [book.with_health(p, fresh=fresh) for p in chosen]

        found: Any = yield Local(read)
        return found  # type: ignore[no-any-return]

    def get(self, profile_id: str) -> AuthProfile:
        """One profile, with its health as of now.

        Raises:
            AuthProfileError: no profile of that id.
        """
        return self._run(self._get(profile_id))

    async def aget(self, profile_id: str) -> AuthProfile:
        """Async `get`."""
        return await self._arun(self._get(profile_id))

    def _get(self, profile_id: str) -> AuthFlow[AuthProfile]:
        pid = check_profile_id(profile_id)
        book = self._book

        def read() -> AuthProfile:
            book.reload()
            return book.with_health(book.profile(pid))

        found: Any = yield Local(read)
        return found  # type: ignore[no-any-return]

    def health(self) -> Profiles:
        """Every profile with its health checked against the vault now:
        ``ok``, ``expiring``, ``expired``, ``missing``, ``static`` or
        ``refresh_failed``."""
        return self._run(self._list(None, fresh=True))

    async def ahealth(self) -> Profiles:
        """Async `health`."""
        return await self._arun(self._list(None, fresh=True))

    # -- refresh and revoke ------------------------------------------------------

    def refresh(self, profile_id: str, *, timeout: float = 30.0) -> AuthProfile:
        """Refresh an OAuth profile's access token now (ignoring any backoff).

        Raises:
            OAuthError: the token endpoint refused. AuthProfileError: no such
                profile, or no refresh token. InvalidRequestError: an API key.
        """
        return self._run(self._refresh(profile_id, timeout))

    async def arefresh(self, profile_id: str, *, timeout: float = 30.0) -> AuthProfile:
        """Async `refresh`."""
        return await self._arun(self._refresh(profile_id, timeout))

    def _refresh(self, profile_id: str, timeout: float) -> AuthFlow[AuthProfile]:
        pid = check_profile_id(profile_id)
        yield Local(self._book.reload)
        self._book.profile(pid)  # an unknown id is reported before any lock
        done = yield from refresh_profile(
            self._book, pid, Deadline(timeout), force=True
        )
        return done if done is not None else (yield from self._get(pid))

    def revoke(self, profile_id: str, *, timeout: float = 30.0) -> None:
        """Revoke a profile: at the server's revocation endpoint (RFC 7009)
        when it has one, then its secrets and the profile itself.

        A failed revocation deletes nothing (call again to finish); an API
        key cannot be revoked remotely: revoke it in the provider's console.

        Raises:
            AuthProfileError: no such profile. OAuthError: the endpoint refused.
        """
        self._run(self._revoke(profile_id, timeout))

    async def arevoke(self, profile_id: str, *, timeout: float = 30.0) -> None:
        """Async `revoke`."""
        await self._arun(self._revoke(profile_id, timeout))

    def _revoke(self, profile_id: str, timeout: float) -> AuthFlow[None]:
        pid = check_profile_id(profile_id)
        book = self._book
        profile: AuthProfile = yield Local(
            lambda: (book.reload(), book.profile(pid))[1]
        )
        if profile.kind == "oauth" and profile.revocation_endpoint:
            token = yield Local(
                lambda: (
                    book.vault.get(f"{pid}:refresh_token")
                    or book.vault.get(f"{pid}:access_token")
                )
            )
            if token:
                secret = _env_secret(profile.client_secret_env)
                request = revocation_request(
                    profile.revocation_endpoint,
                    token,
                    client_id=profile.client_id,
                    client_secret=secret,
                )
                secrets = tuple(s for s in (token, secret) if s)
                yield from revoke_token(
                    request, secrets, Deadline(timeout), profile.provider
                )
        yield Local(lambda: self._delete(profile))

    # -- storing -------------------------------------------------------------------

    def _provider(self, provider_id: str) -> ProviderConfig:
        if not isinstance(provider_id, str):
            raise InvalidRequestError(
                f"provider: must be a string, got {type(provider_id).__name__}"
            )
        wanted = provider_id.strip().lower()
        for provider in self._config.providers:
            if provider.id == wanted:
                if provider.kind == "deterministic":
                    raise InvalidRequestError(
                        f"provider: {wanted!r} is deterministic and takes no credential"
                    )
                return provider
        if wanted in _WELL_KNOWN:
            return ProviderConfig(id=wanted, kind=_WELL_KNOWN[wanted])
        known = sorted({p.id for p in self._config.providers} | set(_WELL_KNOWN))
        raise InvalidRequestError(
            f"provider: no provider {provider_id!r}; configured or known:"
            f" {', '.join(known)}"
        )

    def _draft(
        self,
        provider: ProviderConfig,
        kind: str,
        profile_id: str | None,
        name: str | None,
        scope: str,
    ) -> AuthProfile:
        scope = check_scope(scope)
        name = _checked_name(name)
        profiles = self._book.reload()
        if profile_id is None:
            suffix = "" if scope == "global" else "-" + scope[6:].lower()
            pid = check_profile_id(
                new_profile_id(provider.id, name + suffix, set())[:128], "profile_id"
            )
        else:
            pid = check_profile_id(profile_id)
        old = profiles.get(pid)
        if old is not None and (old.provider, old.scope) != (provider.id, scope):
            raise InvalidRequestError(
                f"profile_id: {pid!r} already holds a credential of provider"
                f" {old.provider!r} ({old.scope}); choose another id or revoke it"
            )
        now = now_utc()
        return AuthProfile(
            id=pid,
            provider=provider.id,
            name=name,
            scope=scope,
            kind=kind,
            created_at=old.created_at if old else now,
            updated_at=now,
        )

    def _save(self, profile: AuthProfile, secrets: dict[str, str]) -> AuthProfile:
        """Secrets to the vault, then the profile to the file; a failure of
        the second undoes the first."""
        vault = self._book.vault
        keys = {field: f"{profile.id}:{field}" for field in secrets}
        before = {field: vault.get(key) for field, key in keys.items()}
        written: list[str] = []
        try:
            for field, key in keys.items():
                vault.set(key, secrets[field])
                written.append(field)

            def change(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
                old = records.get(profile.id)
                record = profile.record()
                if old is not None:
                    record["created_at"] = old.get("created_at", record["created_at"])
                records[profile.id] = record
                return record

            record = self._book.file.update(change)
        except BaseException:
            for field in written:
                _restore(vault, keys[field], before[field])
            raise
        self._book.keep(profile.id, secrets)
        self._book.changed()
        self._book.settled(profile.id)
        self._book.warm(profile.id)
        return self._book.with_health(profile_of(record, "static"))

    def _delete(self, profile: AuthProfile) -> None:
        """The secrets first, then the profile: if the vault fails, the
        profile is still there for another try."""
        for key in profile.secret_refs.values():
            self._book.vault.delete(key)

        def change(records: dict[str, dict[str, Any]]) -> None:
            records.pop(profile.id, None)

        self._book.file.update(change)
        self._book.drop(profile.id)


def _restore(vault: Any, key: str, previous: str | None) -> None:
    try:
        if previous is None:
            vault.delete(key)
        else:
            vault.set(key, previous)
    except PalyraError as exc:
        logger.error("palyra: could not undo a vault write (%s)", type(exc).__name__)


def _checked_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidRequestError(f"key: must be a string, got {type(key).__name__}")
    key = key.strip()
    if not key:
        raise InvalidRequestError("key: is empty")
    if not (key.isascii() and key.isprintable()) or " " in key:
        raise InvalidRequestError(
            "key: must be visible ASCII with no spaces (check for a pasted line"
            " break or quote)"
        )
    return key


def _checked_name(name: object) -> str:
    if name is None:
        return "default"
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise InvalidRequestError("name: must be 1-256 characters")
    if not name.isprintable():
        raise InvalidRequestError("name: must not hold control characters")
    return name.strip()


def _bearer(provider: ProviderConfig) -> ProviderConfig:
    """The provider as an OAuth access token reaches it: with Bearer."""
    return provider.model_copy(update={"auth_header": "bearer"})


def _env_secret(name: str | None) -> str | None:
    import os

    if name is None:
        return None
    value = os.environ.get(name, "").strip()
    if not value:
        raise AuthProfileError(
            f"environment variable {name} (the client secret) is not set"
        )
    return value


def _announce(how: Announce, url: str) -> None:
    if callable(how):
        how(url)
        return
    print(f"palyra: open this URL to sign in:\n  {url}", flush=True)
    if how:
        try:
            webbrowser.open(url)
        except Exception as exc:  # no browser here: the printed URL will do
            logger.info("palyra: could not open a browser (%s)", type(exc).__name__)
