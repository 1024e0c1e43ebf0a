"""One OAuth refresh at a time per profile, across processes, on Redis.

A refresh already runs under its host's file lock (``palyra._auth.locks``).
With shared state it also takes this lock: a key per profile, set with
``SET NX`` and an expiry (the refresh's deadline and a margin, so that a
process that dies holding it frees it), released only by its holder.
Processes whose file locks do not meet (a home on a network filesystem,
where ``flock`` is not to be trusted) then still refresh once: the others
wait for the lock, read the profile again and find the new token.

When Redis cannot be reached the refresh goes on under the file lock alone
(logged): a refresh that waits for Redis would fail every call it serves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .._exceptions import AuthProfileError
from .._governance import new_record_id
from .link import RedisLink, ScriptError, StateDown

__all__ = ["MARGIN_S", "POLL_S", "RefreshLocks"]

logger = logging.getLogger("palyra")

POLL_S = 0.02
"""Seconds between tries of a lock another process holds."""
MARGIN_S = 5.0
"""Seconds a lock outlives its holder's deadline (a holder that died)."""

_TAKE = "return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])"
_GIVE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RefreshLocks:
    """Named locks over Redis (see the module docstring).

    Args:
        link: The Redis.
        prefix: Key prefix.
    """

    def __init__(self, link: RedisLink, prefix: str) -> None:
        self.link = link
        self._prefix = prefix
        self.unguarded = 0  # locks let go of because Redis was down

    def __repr__(self) -> str:
        return f"RefreshLocks({self.link.target})"

    @contextmanager
    def hold(self, name: str, timeout: float) -> Iterator[None]:
        """Hold lock ``name`` across every process on this Redis, waiting
        at most ``timeout`` seconds for it.

        Raises:
            palyra.AuthProfileError: Another process held it past ``timeout``.
        """
        key = f"{self._prefix}lock:{name}"
        token = new_record_id()
        self._take(key, name, max(timeout, 0.0), token)
        try:
            yield
        finally:
            # Given back even when taking it seemed to fail: a SET whose
            # answer was lost may have taken it (only our token is deleted).
            self._give(key, token)

    def _take(self, key: str, name: str, timeout: float, token: str) -> None:
        ttl_ms = int((timeout + MARGIN_S) * 1000)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.link.run(_TAKE, [key], [token, ttl_ms]) is not None:
                    return
            except StateDown as exc:
                self.unguarded += 1
                logger.warning(
                    "palyra: lock %r not taken on Redis (%s); this host's file"
                    " lock alone guards it",
                    name,
                    exc,
                )
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise AuthProfileError(
                    f"another process held lock {name!r} on Redis at"
                    f" {self.link.target} for {timeout:g} s"
                )
            time.sleep(min(POLL_S, left))

    def _give(self, key: str, token: str) -> None:
        """Delete the lock if it is ours; a blip of Redis is tried through
        (a lock left behind holds every other host up until it expires)."""
        for attempt in range(3):
            try:
                self.link.run(_GIVE, [key], [token], urgent=True)
            except ScriptError:
                return
            except StateDown:
                time.sleep(0.05 * (attempt + 1))
            else:
                return
