"""What this process knows of one profile file and one vault: `ProfileBook`.

One book is shared by every client of the process that uses the same home
and vault, so a refreshed token is used by all of them at once. It holds the
profiles read from the file (re-read when the file changes, checked at most
once a second), the secrets read from the vault (read once, dropped on
refresh and revoke: a call never waits on the keyring), the in-memory marks
of each profile (last use, cooldown, a refresh owed after a 401) and the
refreshes in flight.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._exceptions import AuthProfileError
from .oauth import AttemptBook
from .profiles import AuthProfile, health_of, profile_of
from .steps import Flight
from .store import ProfileFile
from .vault import KeyringSecretStore, SecretStore

__all__ = ["Marks", "ProfileBook", "book_for"]

_RECHECK = 1.0  # seconds between two looks at the profile file's mtime
_MISSING = ""  # kept for a secret the vault does not hold
_RETIRED = 64  # replaced secrets still recognised
REFRESH_WINDOW = 5 * 60.0
"""Seconds before expiry from which a token is refreshed before a call."""


@dataclass(slots=True)
class Marks:
    """What this process has seen of one profile (never written to disk)."""

    last_used: float = 0.0  # time.monotonic()
    cooldown_until: float = 0.0
    failure: str | None = None  # the kind of failure behind the cooldown
    stale: bool = False  # a 401 asked for a refresh
    refreshed: float = 0.0  # time.monotonic() of this process's last refresh


class ProfileBook:
    """The profiles of one home and the secrets of one vault, in memory."""

    def __init__(self, file: ProfileFile, vault: SecretStore) -> None:
        self.file = file
        self.vault = vault
        self.attempts = AttemptBook()
        # attempt id -> (profile name, client secret variable): what the
        # profile made at completion needs that the attempt does not carry
        self.attempt_notes: dict[str, tuple[str, str | None]] = {}
        self.flights: dict[str, Flight] = {}
        self.flights_lock = threading.Lock()
        self._lock = threading.RLock()
        self._profiles: dict[str, AuthProfile] | None = None  # None: not read yet
        self._secrets: dict[str, str] = {}  # vault key -> secret
        self._owners: dict[str, str] = {}  # secret -> profile id
        # Secrets replaced lately, still owned: a call in flight with one may
        # yet fail, and its failure must reach the profile.
        self._retired: dict[str, str] = {}
        self.prefetched: set[str | None] = set()  # agents whose secrets are read
        self._generation = 0  # counts changes to the secrets kept
        self._written: dict[str, datetime] = {}  # what this process last wrote
        self._stand_ins: dict[tuple[str, str, str], tuple[object, AuthProfile]] = {}
        self._marks: dict[str, Marks] = {}
        # (provider, agent) -> (the profiles it was worked out from, the view)
        self._views: dict[tuple[str, str | None], tuple[object, list[AuthProfile]]] = {}
        self._stamp: float | None = None  # the file's mtime when read
        self._looked = 0.0
        # refresh window -> epoch time of the earliest refresh owed
        self._due: dict[float, float] = {}
        self._dirty = False  # this process wrote the file since reading it
        self.stale = 0  # profiles owed a refresh after a 401
        # A lock across processes and hosts, taken by a refresh after the
        # file lock (``palyra._state.locks``, with shared state): name, timeout.
        self.shared_lock: Callable[[str, float], AbstractContextManager[None]] | None
        self.shared_lock = None

    @contextmanager
    def refresh_lock(
        self, profile_id: str, timeout: float | None = None
    ) -> Iterator[None]:
        """Hold the profile's refresh lock: the file lock of this home, then
        (with shared state) the lock on Redis, within ``timeout`` seconds
        in all (the file's ``lock_timeout`` when None).

        Raises:
            palyra.AuthProfileError: Another process held it past ``timeout``.
        """
        wait = self.file.lock_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self.file.lock(f"refresh.{profile_id}", timeout=wait):
            shared = self.shared_lock
            if shared is None:
                yield
                return
            with shared(f"refresh:{profile_id}", max(deadline - time.monotonic(), 0.0)):
                yield

    # -- reading ---------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether the profile file has been read."""
        return self._profiles is not None

    def load(self) -> dict[str, AuthProfile]:
        """The profiles, read from the file on first use and when it changed."""
        profiles = self._profiles
        now = time.monotonic()
        if profiles is not None and now - self._looked < _RECHECK:
            return profiles
        with self._lock:
            stamp = _mtime(self.file.path)
            if self._profiles is None or stamp != self._stamp:
                self._adopt(self.file.load(), stamp)
            # Marked fresh only once adopted: a reader that skips the lock on
            # the strength of this must find the new profiles in place.
            self._looked = now
            assert self._profiles is not None
            return self._profiles

    def reload(self) -> dict[str, AuthProfile]:
        """The profiles, read from the file now."""
        with self._lock:
            self._looked = 0.0
            self._stamp = None  # adopted again, compared with what was known
        return self.load()

    def _adopt(self, records: dict[str, dict[str, Any]], stamp: float | None) -> None:
        old = self._profiles or {}
        profiles = {pid: profile_of(r, "static") for pid, r in records.items()}
        for pid, profile in old.items():
            kept = profiles.get(pid)
            if kept is None or (
                kept.updated_at != profile.updated_at
                and kept.updated_at != self._written.get(pid)
            ):
                self._forget(pid)  # revoked, rotated or refreshed elsewhere
            if kept is None:
                self._unmark(pid)
        self._profiles = profiles
        self._stamp = stamp
        self._views.clear()
        self._stand_ins.clear()
        self._due = {}
        self._dirty = False

    def due_by(self, window: float) -> float:
        """When the earliest refresh is owed, for a refresh ``window``
        (minus infinity: not known until the file is read again)."""
        due = self._due.get(window)
        if due is None:
            if self._dirty or self._profiles is None:
                return float("-inf")
            due = min(
                (_due_at(p, window) for p in self._profiles.values()),
                default=float("inf"),
            )
            self._due[window] = due
        return due

    def profile(self, profile_id: str) -> AuthProfile:
        """One profile, as last read.

        Raises:
            AuthProfileError: no profile of that id.
        """
        found = self.load().get(profile_id)
        if found is None:
            raise AuthProfileError(
                f"no auth profile {profile_id!r} in {self.file.path}; see"
                " client.auth.list() for the profiles there"
            )
        return found

    def secret(self, profile: AuthProfile, field: str) -> str | None:
        """One secret of a profile: from memory, else read from the vault once
        (a secret the vault does not hold is remembered as missing too)."""
        key = f"{profile.id}:{field}"
        value = self._secrets.get(key)
        if value is None:
            generation = self._generation
            value = self.vault.get(key) or _MISSING
            with self._lock:
                # A refresh that kept new secrets while the vault was read
                # wins: what was read may be the token it replaced.
                if generation != self._generation:
                    value = self._secrets.get(key, value)
                else:
                    self._secrets[key] = value
                    if value:
                        self._owners[value] = profile.id
        return value or None

    def owner(self, secret: str | None) -> str | None:
        """The profile a secret this book handed out belongs to."""
        if not secret:
            return None
        return self._owners.get(secret) or self._retired.get(secret)

    def prefetch(self, agent: str | None) -> None:
        """Read the secrets calls for ``agent`` would use (blocking: the
        vault may be slow), so the call path finds them in memory."""
        for profile in self.visible(agent):
            self.secret(
                profile, "api_key" if profile.kind == "api_key" else "access_token"
            )
        self.prefetched.add(agent)

    def with_health(self, profile: AuthProfile, *, fresh: bool = False) -> AuthProfile:
        """``profile`` with its health as of now (``fresh``: asking the vault)."""
        if fresh:
            self._forget(profile.id)
        present = {f for f in profile.secret_refs if self.secret(profile, f)}
        return profile.model_copy(update={"health": health_of(profile, present)})

    # -- who sees what -----------------------------------------------------

    def visible(self, agent: str | None) -> list[AuthProfile]:
        """The profiles a call for ``agent`` sees: the global ones, with the
        agent's own laid over those of the same provider and name. Other
        agents' profiles are left out."""
        return _merged(self.load(), agent)

    def candidates(self, provider: str, agent: str | None) -> list[AuthProfile]:
        """The profiles of ``provider`` a call for ``agent`` sees (one
        consistent reading of the file, whatever changes meanwhile)."""
        profiles = self.load()
        entry = self._views.get((provider, agent))
        if entry is not None and entry[0] is profiles:
            return entry[1]
        view = [p for p in _merged(profiles, agent) if p.provider == provider]
        self._views[(provider, agent)] = (profiles, view)
        return view

    def stand_in(self, profile: AuthProfile, agent: str | None) -> AuthProfile:
        """What ``agent`` gets for a named global profile: its own profile of
        the same provider and name, if it has one."""
        if agent is None or profile.agent is not None:
            return profile
        profiles = self.load()
        key = (profile.provider, agent, profile.name)
        entry = self._stand_ins.get(key)
        if entry is not None and entry[0] is profiles:
            return entry[1]
        name = profile.name.lower()
        found = next(
            (
                other
                for other in self.candidates(profile.provider, agent)
                if other.name.lower() == name
            ),
            profile,
        )
        self._stand_ins[key] = (profiles, found)
        return found

    # -- marks -------------------------------------------------------------

    def marks_of(self, profile_id: str) -> Marks | None:
        """The marks of a profile, if it has any yet."""
        return self._marks.get(profile_id)

    def marks(self, profile_id: str) -> Marks:
        """The in-memory marks of a profile (made on first use)."""
        marks = self._marks.get(profile_id)
        if marks is None:
            marks = self._marks.setdefault(profile_id, Marks())
        return marks

    def cool(self, profile_id: str, failure: str, seconds: float) -> None:
        """Keep a profile out of selection for ``seconds``."""
        marks = self.marks(profile_id)
        marks.failure = failure
        marks.cooldown_until = max(marks.cooldown_until, time.monotonic() + seconds)

    def warm(self, profile_id: str) -> None:
        """A call through the profile succeeded: its cooldown ends."""
        marks = self._marks.get(profile_id)
        if marks is not None and marks.cooldown_until:
            marks.cooldown_until = 0.0
            marks.failure = None

    def owe_refresh(self, profile_id: str) -> None:
        """A 401 came back for an OAuth profile: refresh it before trusting it."""
        with self._lock:
            marks = self.marks(profile_id)
            if not marks.stale:
                marks.stale = True
                self.stale += 1

    def owed(
        self,
        agent: str | None,
        *,
        provider: str | None = None,
        stale_only: bool = False,
        window: float = REFRESH_WINDOW,
    ) -> list[str]:
        """Ids of the OAuth profiles ``agent`` sees (of ``provider``, if
        given) that a refresh is owed: after a 401, or (unless
        ``stale_only``) within the window of expiry."""
        now = time.time()
        owed = []
        for profile in self.visible(agent):
            if profile.kind != "oauth" or provider not in (None, profile.provider):
                continue
            marks = self._marks.get(profile.id)
            stale = marks is not None and marks.stale
            if stale or (not stale_only and _due_at(profile, window) <= now):
                owed.append(profile.id)
        return owed

    def settled(self, profile_id: str) -> None:
        """A refresh owed after a 401 was made (or found unneeded)."""
        with self._lock:
            marks = self._marks.get(profile_id)
            if marks is not None and marks.stale:
                marks.stale = False
                self.stale -= 1

    def _unmark(self, profile_id: str) -> None:
        self.settled(profile_id)
        self._marks.pop(profile_id, None)

    # -- writing -------------------------------------------------------------

    def keep(
        self, profile_id: str, secrets: dict[str, str], updated_at: datetime
    ) -> None:
        """Remember secrets just written to the vault, for the profile as it
        is written (``updated_at``): reading that write back from the file
        keeps them."""
        with self._lock:
            self._forget(profile_id)
            self._written[profile_id] = updated_at
            for field, value in secrets.items():
                self._secrets[f"{profile_id}:{field}"] = value
                self._owners[value] = profile_id

    def forget(self, profile_id: str) -> None:
        """Drop what is kept of a profile's secrets: the vault is read again."""
        self._forget(profile_id)

    def _forget(self, profile_id: str) -> None:
        with self._lock:
            self._generation += 1
            self.prefetched.clear()
            prefix = f"{profile_id}:"
            for key in [k for k in self._secrets if k.startswith(prefix)]:
                secret = self._secrets.pop(key)
                if self._owners.pop(secret, None) is not None:
                    self._retired[secret] = profile_id
            while len(self._retired) > _RETIRED:
                del self._retired[next(iter(self._retired))]

    def changed(self) -> None:
        """This process changed the file: read it again on next use."""
        with self._lock:
            self._stamp = None
            self._looked = 0.0
            # What is owed is worked out again on the next call's way in.
            self._due = {}
            self._dirty = True

    def drop(self, profile_id: str) -> None:
        """A profile was revoked: forget its secrets and marks."""
        self._forget(profile_id)
        self._unmark(profile_id)
        self.changed()


def _merged(profiles: dict[str, AuthProfile], agent: str | None) -> list[AuthProfile]:
    """The global profiles, with ``agent``'s own laid over those of the same
    provider and name; other agents' left out. Sorted by id."""
    merged: dict[tuple[str, str], AuthProfile] = {}
    for profile in sorted(profiles.values(), key=lambda p: p.agent is not None):
        if profile.agent in (None, agent):
            merged[(profile.provider, profile.name.lower())] = profile
    return sorted(merged.values(), key=lambda p: p.id)


def _due_at(profile: AuthProfile, window: float) -> float:
    """When a refresh of ``profile`` is owed: ``window`` seconds before its
    token expires, but not before its backoff ends."""
    if profile.kind != "oauth" or profile.expires_at is None:
        return float("inf")
    due = profile.expires_at.timestamp() - window
    if profile.next_refresh_at is not None:
        due = max(due, profile.next_refresh_at.timestamp())
    return due


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None


def now_utc() -> datetime:
    """The time of day, in UTC, to the millisecond (what the file keeps)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# One book per (vault, home) in this process: clients that share both share
# what they know, refreshed tokens included.
_BOOKS: dict[tuple[str, str, Path], ProfileBook] = {}
_OTHER_BOOKS: weakref.WeakKeyDictionary[Any, dict[Path, ProfileBook]] = (
    weakref.WeakKeyDictionary()
)
_BOOKS_LOCK = threading.Lock()


def book_for(
    home: Path,
    vault: SecretStore,
    make: Callable[[Path, SecretStore], ProfileBook],
) -> ProfileBook:
    """The process's book for ``home`` and ``vault`` (made on first use)."""
    with _BOOKS_LOCK:
        if isinstance(vault, KeyringSecretStore):
            key = ("keyring", vault.service, home)
            book = _BOOKS.get(key)
            if book is None:
                book = _BOOKS[key] = make(home, vault)
            return book
        per_vault = _OTHER_BOOKS.setdefault(vault, {})
        book = per_vault.get(home)
        if book is None:
            book = per_vault[home] = make(home, vault)
        return book


def expiry(expires_in: float | None, now: float | None = None) -> datetime | None:
    """When a token that lasts ``expires_in`` seconds from now expires."""
    if expires_in is None:
        return None
    at = (time.time() if now is None else now) + expires_in
    return datetime.fromtimestamp(at, UTC).replace(microsecond=0)
