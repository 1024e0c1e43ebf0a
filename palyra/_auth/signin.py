"""Signing in with OAuth 2.0 (authorization code, PKCE): start an attempt,
complete it from the callback, or do both around a loopback listener
(`SignIn`). Each step that talks or stores is a flow (`palyra._auth.steps`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from .._config import OAuthConfig, ProviderConfig
from .._exceptions import InvalidRequestError, OAuthError, PalyraError
from .book import ProfileBook, expiry
from .keeping import Keeper, bearer, checked_name
from .oauth import OAuthAttempt, client_settings, start_attempt
from .oauth_wire import callback_error, code_request, parse_callback
from .profiles import AuthProfile, check_profile_id, check_scope
from .remote import Deadline, exchange_tokens, validate_key
from .steps import AuthFlow, Join, Local

__all__ = ["Announce", "SignIn"]

logger = logging.getLogger("palyra")
Announce = bool | Callable[[str], object]
"""How `login_oauth` shows the authorize URL: open a browser (True), print
it only (False), or hand it to a callable."""


class SignIn:
    """The OAuth operations of ``client.auth``."""

    def __init__(self, keeper: Keeper, book: ProfileBook) -> None:
        self._keep = keeper
        self._book = book

    def start(
        self,
        provider_id: str,
        profile_id: str | None,
        scope: str,
        name: str | None,
        overrides: Mapping[str, Any],
        redirect_uri: str | None,
    ) -> OAuthAttempt:
        """An attempt, kept in the book until completed or expired."""
        provider = self._keep.provider(provider_id)
        scope = check_scope(scope)
        pid = check_profile_id(profile_id) if profile_id is not None else None
        label = checked_name(name)
        settings = dict(overrides)
        if redirect_uri is not None:
            settings["redirect_uri"] = redirect_uri
        client = client_settings(provider.id, _oauth_of(provider), settings)
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

    def complete(
        self,
        callback_url: str | None,
        code: str | None,
        state: str | None,
        validate: bool,
        timeout: float,
    ) -> AuthFlow[AuthProfile]:
        """Exchange a callback's code for tokens, and keep them."""
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
        provider = self._keep.provider(attempt.provider)
        if validate:
            yield from validate_key(bearer(provider), tokens.access_token, deadline)
        draft = yield Local(
            lambda: self._keep.draft(
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
        saved: AuthProfile = yield Local(lambda: self._keep.save(profile, kept))
        return saved

    def login(
        self,
        provider_id: str,
        open_browser: Announce,
        timeout: float,
        profile_id: str | None,
        scope: str,
        name: str | None,
        overrides: Mapping[str, Any],
    ) -> AuthFlow[AuthProfile]:
        """Start an attempt, wait for its callback on loopback, complete it."""
        # Loaded for a sign-in only: http.server is no cost of every client.
        from .login import CallbackListener, loopback_redirect

        provider = self._keep.provider(provider_id)
        configured = overrides.get("redirect_uri") or (
            provider.oauth.resolved().redirect_uri if provider.oauth else None
        )
        host, port, path = loopback_redirect(configured)
        deadline = Deadline(timeout)
        listener: CallbackListener = yield Local(
            lambda: CallbackListener(host, port, path)
        )
        try:
            attempt = self.start(
                provider_id, profile_id, scope, name, overrides, listener.redirect_uri
            )
            yield Local(lambda: _announce(open_browser, attempt.authorize_url))
            listener.waiting = True
            late = f"no OAuth callback reached {listener.redirect_uri}; not signed in"
            yield Join(listener.arrival, deadline.left(), late)
            if not listener.url:
                raise OAuthError("the sign-in listener was closed before the callback")
            try:
                profile = yield from self.complete(
                    listener.url, None, None, False, max(deadline.left(), 5.0)
                )
            except PalyraError as exc:
                listener.answer(False, f"palyra could not finish the sign-in: {exc}")
                raise
            listener.answer(True, f"palyra is signed in to {provider.id}.")
            return profile
        finally:
            # Not a step: a cancelled sign-in must free the port at once.
            listener.close()


def _oauth_of(provider: ProviderConfig) -> OAuthConfig | None:
    """The provider's ``oauth`` table; for ``openai`` with none, the preset
    (a client id is still needed)."""
    if provider.oauth is None and provider.id == "openai":
        return OAuthConfig(preset="openai")
    return provider.oauth


def _announce(how: Announce, url: str) -> None:
    if callable(how):
        how(url)
        return
    print(f"palyra: open this URL to sign in:\n  {url}", flush=True)
    if how:
        import webbrowser  # loaded for a sign-in only: it pulls in subprocess

        try:
            webbrowser.open(url)
        except Exception as exc:  # no browser here: the printed URL will do
            logger.info("palyra: could not open a browser (%s)", type(exc).__name__)
