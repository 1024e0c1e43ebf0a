"""Auth profiles on the call path: the credential a call uses, and what its
outcome teaches about the profile.

`ProfileCredentials` answers the credential lookup (`palyra._credentials`)
from memory: the shared `ProfileBook` holds the profiles and the secrets
already read, so a call costs a few dictionary reads. Its two hooks join the
pipeline's seams: a failed candidate cools its profile down for as long as the
kind of failure says (or owes it a refresh, after a 401 on an OAuth token), a
served one ends its cooldown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .._config import ProviderConfig
from .._exceptions import AuthProfileError, CredentialError
from .book import Marks, ProfileBook
from .profiles import AuthProfile

__all__ = ["COOLDOWNS", "ProfileCredentials"]

COOLDOWNS: dict[str, tuple[str, float]] = {
    # failure class (palyra._core.failures) -> (profile failure kind, seconds)
    "auth_invalid": ("auth_invalid", 300.0),
    "permission": ("auth_invalid", 300.0),
    "rate_limited": ("rate_limit", 60.0),
    "quota_exhausted": ("quota", 1800.0),
    "timeout": ("transient", 15.0),
    "connection": ("transient", 15.0),
    "server_error": ("transient", 15.0),
    "overloaded": ("transient", 15.0),
}
"""How long a profile stays out of selection after each kind of failure."""
_REFRESH_DUE = ("refresh_due", 30.0)  # an OAuth token refused: refresh it


class ProfileCredentials:
    """The credential lookup's view of auth profiles, and its two hooks.

    Args:
        book: The profiles and secrets of this client's home and vault.
        classify: Names the failure class of an error (``auth_invalid``...).
    """

    def __init__(
        self, book: ProfileBook, classify: Callable[[BaseException], str]
    ) -> None:
        self.book = book
        self._classify = classify

    # -- the lookup ----------------------------------------------------------

    def named(self, provider: ProviderConfig, agent: str | None) -> str:
        """The secret of ``provider.auth_profile`` (or of the profile of the
        same provider and name of ``agent``, which overrides it)."""
        book = self.book
        profile_id = provider.auth_profile or ""
        try:
            profile = book.profile(profile_id)
        except AuthProfileError as exc:
            raise CredentialError(exc.message, provider=provider.id) from None
        if profile.agent not in (None, agent):
            raise CredentialError(
                f"auth profile {profile_id!r} belongs to agent {profile.agent!r};"
                f" a call for {_whom(agent)} cannot use it",
                provider=provider.id,
            )
        profile = book.stand_in(profile, agent)
        return self._secret(profile, provider)

    def chosen(
        self, profile_id: str, provider: ProviderConfig, agent: str | None
    ) -> str | None:
        """The secret of ``profile_id`` for a call that asks for it (a
        scheduled job's), when it is ``provider``'s; None when it is another
        provider's, so that the call's other providers choose as usual."""
        try:
            profile = self.book.profile(profile_id)
        except AuthProfileError as exc:
            raise CredentialError(exc.message, provider=provider.id) from None
        if profile.provider != provider.id:
            return None
        if profile.agent not in (None, agent):
            raise CredentialError(
                f"auth profile {profile_id!r} belongs to agent {profile.agent!r};"
                f" a call for {_whom(agent)} cannot use it",
                provider=provider.id,
            )
        return self._use(profile, provider)

    def selected(self, provider: ProviderConfig, agent: str | None) -> str | None:
        """The secret of the profile a call for ``agent`` uses, among the
        provider's: its default first, then its configured order, then the
        least recently used;
        profiles cooling down after a failure only when every one is."""
        profiles = self.book.candidates(provider.id, agent)
        if not profiles:
            return None
        if len(profiles) == 1:
            return self._use(profiles[0], provider)
        book, now, order = self.book, time.monotonic(), provider.auth_order
        chosen, best = profiles[0], None
        for profile in profiles:
            rank = _rank(profile, book.marks_of(profile.id), order, now)
            if best is None or rank < best:
                chosen, best = profile, rank
        if not book.secret(chosen, _field(chosen)):
            # Its secret is gone (revoked meanwhile): the next in rank serves.
            ranked = sorted(
                profiles, key=lambda p: _rank(p, book.marks_of(p.id), order, now)
            )
            chosen = next((p for p in ranked if book.secret(p, _field(p))), chosen)
        return self._use(chosen, provider)

    def _use(self, profile: AuthProfile, provider: ProviderConfig) -> str:
        self.book.marks(profile.id).last_used = time.monotonic()
        return self._secret(profile, provider)

    def _secret(self, profile: AuthProfile, provider: ProviderConfig) -> str:
        field = _field(profile)
        secret = self.book.secret(profile, field)
        if not secret:
            raise CredentialError(
                f"auth profile {profile.id!r} has no {field} in the vault"
                f" ({type(self.book.vault).__name__}); connect it again"
                " (client.auth.connect_api_key or login_oauth)",
                provider=provider.id,
            )
        return secret

    # -- the hooks -------------------------------------------------------------

    def failed(self, ctx: Any, failed: Any) -> None:
        """After-failure hook: a candidate whose profile failed cools it down."""
        candidate = failed.candidate
        if candidate is None:
            return
        book = self.book
        profile_id = book.owner(candidate.target.credential)
        if profile_id is None:
            return  # not a profile's secret (an environment key, say)
        kind = self._classify(failed.error)
        profile = book.load().get(profile_id)
        oauth = profile is not None and profile.kind == "oauth"
        if kind == "auth_invalid" and oauth:
            book.owe_refresh(profile_id)
            book.cool(profile_id, *_REFRESH_DUE)
        elif kind in COOLDOWNS:
            book.cool(profile_id, *COOLDOWNS[kind])

    def completed(self, ctx: Any, completion: Any) -> None:
        """After-completion hook: the serving profile's cooldown ends."""
        profile_id = self.book.owner(completion.candidate.target.credential)
        if profile_id is not None:
            self.book.warm(profile_id)


def _rank(
    profile: AuthProfile, marks: Marks | None, order: tuple[str, ...], now: float
) -> tuple[Any, ...]:
    """Eligible first (else the soonest out of its cooldown), then the
    default (an agent's own before the global one), then the configured
    order, then the least recently used."""
    profile_id = profile.id
    if profile.default:
        position = -2 if profile.agent is not None else -1
    else:
        position = order.index(profile_id) if profile_id in order else len(order)
    if marks is None:
        return (0, 0.0, position, 0.0, profile_id)
    if marks.cooldown_until > now:
        return (1, marks.cooldown_until, position, marks.last_used, profile_id)
    return (0, 0.0, position, marks.last_used, profile_id)


def _field(profile: AuthProfile) -> str:
    return "api_key" if profile.kind == "api_key" else "access_token"


def _whom(agent: str | None) -> str:
    return f"agent {agent!r}" if agent else "no agent"
