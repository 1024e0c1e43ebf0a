"""Refreshing OAuth tokens: once per profile, however many callers need it.

A refresh is single-flight three ways. Callers of one process (threads and
tasks alike) join the refresh in flight (`Flight`). The leader holds the
profile's inter-process lock while it refreshes (the file lock, and with
shared state a lock on Redis too: ``ProfileBook.shared_lock``), and reads
the profile file again once it has them: if another process refreshed
meanwhile, its tokens are used and no request is sent. Every client of the
process reads the new token from the shared `ProfileBook` on its next call.

A failed refresh backs off per profile (``base * 2**(n-1)``, capped) and
marks it ``refresh_failed``; other profiles are untouched.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timedelta
from typing import Any

from .._exceptions import AuthProfileError, InvalidRequestError, OAuthError, PalyraError
from .book import REFRESH_WINDOW, ProfileBook, expiry, now_utc
from .oauth_wire import Tokens, refresh_request
from .profiles import AuthProfile, carried_over
from .remote import Deadline, exchange_tokens
from .steps import AuthFlow, Flight, Join, Local

__all__ = ["backoff", "refresh_owed", "refresh_profile"]

logger = logging.getLogger("palyra")

# (base, cap) seconds of the backoff after failed refreshes, by provider.
_BACKOFF = {"openai": (15.0, 300.0), "anthropic": (20.0, 600.0)}
_DEFAULT_BACKOFF = (30.0, 1800.0)


def backoff(provider: str, failures: int) -> float:
    """Seconds before the next refresh after ``failures`` failed ones."""
    base, cap = _BACKOFF.get(provider, _DEFAULT_BACKOFF)
    return float(min(base * 2 ** max(failures - 1, 0), cap))


def refresh_profile(
    book: ProfileBook, profile_id: str, deadline: Deadline, *, force: bool
) -> AuthFlow[AuthProfile | None]:
    """Refresh one OAuth profile, or join the refresh in flight.

    ``force`` (an explicit refresh, or a 401) ignores the backoff. Returns the
    profile after the refresh, or None when none was due.

    Raises:
        OAuthError: the token endpoint refused. AuthProfileError: no such
            profile, or no refresh token. APIConnectionError: no answer.
    """
    with book.flights_lock:
        flight = book.flights.get(profile_id)
        leader = flight is None or flight.landed
        if leader:
            flight = book.flights[profile_id] = Flight()
    assert flight is not None
    if not leader:
        yield Join(flight, deadline.left())
        if flight.error is not None and force:
            raise _joined_failure(profile_id, flight.error)
        joined: AuthProfile | None = flight.result
        return joined
    try:
        result = yield from _lead(book, profile_id, deadline, force)
    except BaseException as exc:
        flight.land(exc)
        raise
    else:
        flight.land(result=result)
        return result
    finally:
        with book.flights_lock:
            if book.flights.get(profile_id) is flight:
                del book.flights[profile_id]


def _joined_failure(profile_id: str, error: BaseException) -> PalyraError:
    """The leader's failure, for a caller that joined its flight: a new
    exception each (one instance raised in many threads would share a
    traceback)."""
    if isinstance(error, OAuthError):
        return OAuthError(
            error.message,
            error=error.error,
            error_description=error.error_description,
            provider=error.provider,
        )
    return AuthProfileError(
        f"refreshing auth profile {profile_id!r} failed ({type(error).__name__})"
        + (f": {error}" if isinstance(error, PalyraError) else "")
    )


def _lead(
    book: ProfileBook, profile_id: str, deadline: Deadline, force: bool
) -> AuthFlow[AuthProfile | None]:
    before = book.load().get(profile_id)
    lock = Held(book.refresh_lock(profile_id, deadline.left()))
    try:
        yield Local(lock.take)
        profiles: dict[str, AuthProfile] = yield Local(book.reload)
        fresh = profiles.get(profile_id)
        if fresh is None:
            raise AuthProfileError(f"auth profile {profile_id!r} no longer exists")
        if fresh.kind != "oauth":
            raise InvalidRequestError(
                f"auth profile {profile_id!r} holds an API key: only OAuth"
                " profiles are refreshed"
            )
        if (
            before is not None
            and fresh.updated_at != before.updated_at
            and not fresh.refresh_failures
        ):
            return fresh  # refreshed by another process while we waited
        if not force and _holding_off(fresh):
            return None
        try:
            tokens = yield from _exchange(book, fresh, deadline)
        except PalyraError as exc:
            # Every failure backs off, a missing refresh token included: a
            # profile that cannot be refreshed must not be tried per call.
            failure = exc
            yield Local(lambda: _failed(book, fresh, failure))
            raise
        stored: AuthProfile = yield Local(lambda: _refreshed(book, fresh, tokens))
        return stored
    finally:
        lock.release()


class Held:
    """An inter-process lock taken by a flow's `Local` step, whichever
    thread runs it, and released exactly once if (and only if) it was."""

    __slots__ = ("_held", "_lock")

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self._held = False

    def take(self) -> None:
        """Wait for the lock (within its timeout)."""
        self._lock.__enter__()
        self._held = True

    def release(self) -> None:
        """Let it go, if it was taken."""
        if self._held:
            self._held = False
            self._lock.__exit__(None, None, None)


def _exchange(
    book: ProfileBook, profile: AuthProfile, deadline: Deadline
) -> AuthFlow[Tokens]:
    refresh_token = yield Local(lambda: book.secret(profile, "refresh_token"))
    if not refresh_token:
        raise AuthProfileError(
            f"auth profile {profile.id!r} has no refresh token in the vault;"
            " log in again (client.auth.login_oauth)"
        )
    client_secret = _client_secret(profile)
    request = refresh_request(
        profile.token_endpoint or "",
        refresh_token,
        client_id=profile.client_id,
        client_secret=client_secret,
        scopes=profile.scopes,
    )
    secrets = tuple(s for s in (refresh_token, client_secret) if s)
    tokens: Tokens = yield from exchange_tokens(
        request, secrets, deadline, profile.provider, tries=2
    )
    return tokens


def _holding_off(profile: AuthProfile) -> bool:
    return profile.next_refresh_at is not None and profile.next_refresh_at > now_utc()


def _client_secret(profile: AuthProfile) -> str | None:
    if profile.client_secret_env is None:
        return None
    value = os.environ.get(profile.client_secret_env, "").strip()
    if not value:
        raise AuthProfileError(
            f"auth profile {profile.id!r} needs the client secret in environment"
            f" variable {profile.client_secret_env}, which is not set"
        )
    return value


def _refreshed(book: ProfileBook, profile: AuthProfile, tokens: Tokens) -> AuthProfile:
    """Keep the new tokens: the rotated refresh token first (the old one is
    dead once the server rotated it), then the access token, then the file."""
    book.forget(profile.id)  # a half-done write must not leave the old ones cached
    if tokens.refresh_token:
        book.vault.set(f"{profile.id}:refresh_token", tokens.refresh_token)
    book.vault.set(f"{profile.id}:access_token", tokens.access_token)
    kept = {"access_token": tokens.access_token}
    if tokens.refresh_token:
        kept["refresh_token"] = tokens.refresh_token
    expires = expiry(tokens.expires_in)
    update: dict[str, Any] = {
        "updated_at": _later(profile.updated_at),
        "refresh_failures": 0,
        "refresh_error": None,
        "next_refresh_at": None,
        # No expiry said: unknown, so no refresh ahead of time (a 401 still
        # asks for one). Keeping the old, passed one would refresh per call.
        "expires_at": expires,
    }
    if tokens.scopes:
        update["scopes"] = tokens.scopes
    stored = profile.model_copy(update=update)
    book.keep(profile.id, kept, stored.updated_at)

    def change(records: dict[str, dict[str, Any]]) -> None:
        if profile.id in records:
            records[profile.id] = carried_over(records[profile.id], stored.record())

    book.file.update(change)
    book.changed()
    book.settled(profile.id)
    book.warm(profile.id)
    book.marks(profile.id).refreshed = time.monotonic()
    return book.with_health(stored)


def _failed(book: ProfileBook, profile: AuthProfile, error: PalyraError) -> None:
    """Note a failed refresh in the file: the backoff holds for every process."""
    failures = profile.refresh_failures + 1
    wait = backoff(profile.provider, failures)
    phrase = _phrase(error)
    update = {
        "updated_at": _later(profile.updated_at),
        "refresh_failures": failures,
        "refresh_error": phrase,
        "next_refresh_at": now_utc() + timedelta(seconds=wait),
    }

    def change(records: dict[str, dict[str, Any]]) -> None:
        current = records.get(profile.id)
        # A failure older than a change made meanwhile (a success elsewhere)
        # is stale: it must not undo that change.
        if current is not None and current.get("updated_at") == profile.record().get(
            "updated_at"
        ):
            changed = profile.model_copy(update=update).record()
            records[profile.id] = carried_over(current, changed)

    try:
        book.file.update(change)
    except AuthProfileError as exc:
        logger.warning("palyra: could not note a failed refresh: %s", exc)
    book.changed()
    book.cool(profile.id, "refresh_failed", wait)


def _phrase(error: PalyraError) -> str:
    """What the file says of a failed refresh: fixed words, never server text."""
    if isinstance(error, OAuthError):
        return f"the token endpoint refused ({error.error or 'no error code'})"
    return f"the token endpoint could not be reached ({type(error).__name__})"


def _later(previous: datetime) -> datetime:
    # updated_at moves forward on every write, even within one millisecond:
    # it is what tells a reader the record changed.
    return max(now_utc(), previous + timedelta(milliseconds=1))


def refresh_owed(
    book: ProfileBook,
    agent: str | None,
    deadline: Deadline,
    *,
    force: bool,
    provider: str | None = None,
    window: float = REFRESH_WINDOW,
) -> AuthFlow[bool]:
    """Refresh the profiles ``agent`` sees that are owed a refresh (with
    ``force``, after a 401: those of ``provider`` the 401 marked, ignoring the
    backoff); a failure is logged and left for the call to meet. Before that,
    the secrets of the profiles ``agent`` sees are read, off the event loop.
    True if any profile was refreshed."""
    if agent not in book.prefetched:
        yield Local(lambda: book.prefetch(agent))
    refreshed = False
    owed = book.owed(agent, provider=provider, stale_only=force, window=window)
    for profile_id in owed:
        try:
            done = yield from refresh_profile(book, profile_id, deadline, force=force)
        except PalyraError as exc:
            logger.warning(
                "palyra: refreshing auth profile %s failed: %s", profile_id, exc
            )
            book.settled(profile_id)
            continue
        book.settled(profile_id)
        refreshed = refreshed or done is not None
    return refreshed
