"""`client.auth`: connect, sign in, list, refresh and revoke auth profiles.

Each operation is one flow (`palyra._auth.steps`), run by `Auth`'s sync
method or awaited by its ``a``-prefixed twin: the two cannot drift. Secrets go
to the vault and the metadata to the profile file, in that order; when the
second step fails, the first is undone, so nothing is left half-stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .._config import PalyraConfig
from .book import ProfileBook
from .keeping import Keeper, checked_key, env_secret
from .oauth import OAuthAttempt
from .oauth_wire import revocation_request
from .profiles import AuthProfile, check_profile_id, key_hint
from .refresh import Held, refresh_profile
from .remote import Deadline, revoke_token, validate_key
from .signin import Announce, SignIn
from .steps import AsyncSend, AuthFlow, Local, Send, adrive, drive

__all__ = ["Auth"]

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
        self._book = book
        self._keep = Keeper(config, book)
        self._signin = SignIn(self._keep, book)
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

    def _save(self, profile: AuthProfile, secrets: dict[str, str]) -> AuthProfile:
        """Store a profile and its secrets (blocking; for tests and tools)."""
        return self._keep.save(profile, secrets)

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
        provider = self._keep.provider(provider_id)
        key = checked_key(key)
        profile: AuthProfile = yield Local(
            lambda: self._keep.draft(provider, "api_key", profile_id, name, scope)
        )
        if validate:
            yield from validate_key(provider, key, Deadline(timeout))
        profile = profile.model_copy(update={"key_hint": key_hint(key)})
        saved: AuthProfile = yield Local(
            lambda: self._keep.save(profile, {"api_key": key})
        )
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
        return self._signin.start(provider, profile_id, scope, name, overrides, None)

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
        return self._signin.start(provider, profile_id, scope, name, overrides, None)

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
        return self._run(
            self._signin.complete(callback_url, code, state, validate, timeout)
        )

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
            self._signin.complete(callback_url, code, state, validate, timeout)
        )

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
            self._signin.login(
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
            self._signin.login(
                provider, open_browser, timeout, profile_id, scope, name, overrides
            )
        )

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

    # -- the default profile ---------------------------------------------------

    def set_default(self, profile_id: str) -> AuthProfile:
        """Make a profile its provider's default in its scope (global, or its
        agent's): calls that select among the provider's profiles try it
        first, ahead of ``auth_order``. The provider's previous default in
        that scope stops being one. Kept in the profile file, so every
        process sees it; a provider's ``auth_profile`` still wins.

        Raises:
            AuthProfileError: no such profile.
        """
        return self._run(self._default(profile_id, True))

    async def aset_default(self, profile_id: str) -> AuthProfile:
        """Async `set_default`."""
        return await self._arun(self._default(profile_id, True))

    def clear_default(self, profile_id: str) -> AuthProfile:
        """Stop a profile being its provider's default (nothing if it was not).

        Raises:
            AuthProfileError: no such profile.
        """
        return self._run(self._default(profile_id, False))

    async def aclear_default(self, profile_id: str) -> AuthProfile:
        """Async `clear_default`."""
        return await self._arun(self._default(profile_id, False))

    def _default(self, profile_id: str, on: bool) -> AuthFlow[AuthProfile]:
        pid = check_profile_id(profile_id)
        done: Any = yield Local(lambda: self._keep.mark_default(pid, on))
        return done  # type: ignore[no-any-return]

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
        deadline = Deadline(timeout)
        # Under the profile's refresh lock: a refresh in flight cannot write
        # new tokens after they were revoked and deleted.
        lock = Held(book.refresh_lock(pid, deadline.left()))
        try:
            yield Local(lock.take)
            profile: AuthProfile = yield Local(
                lambda: (book.reload(), book.profile(pid))[1]
            )
            if profile.kind == "oauth" and profile.revocation_endpoint:
                yield from self._revoke_remote(profile, deadline)
            yield Local(lambda: self._keep.delete(profile))
        finally:
            lock.release()

    def _revoke_remote(
        self, profile: AuthProfile, deadline: Deadline
    ) -> AuthFlow[None]:
        """RFC 7009 at the profile's endpoint: the refresh token (which takes
        its access tokens with it), else the access token."""
        vault = self._book.vault
        hint = "refresh_token"
        token = yield Local(lambda: vault.get(f"{profile.id}:refresh_token"))
        if not token:
            hint = "access_token"
            token = yield Local(lambda: vault.get(f"{profile.id}:access_token"))
        if not token or not profile.revocation_endpoint:
            return  # nothing left to revoke: a retry finishing a revoke
        secret = env_secret(profile.client_secret_env)
        request = revocation_request(
            profile.revocation_endpoint,
            token,
            client_id=profile.client_id,
            client_secret=secret,
            hint=hint,
        )
        secrets = tuple(s for s in (token, secret) if s)
        yield from revoke_token(request, secrets, deadline, profile.provider)
