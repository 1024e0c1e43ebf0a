"""Circuit breakers shared on Redis: the `BreakerBus` of `HealthTracker`.

One hash holds every open breaker (``<prefix>breakers``: provider and model
-> until, epoch ms). A process that opens a breaker writes it there; every
process reads the hash at its first call and then every `POLL_S`, opens its
own breaker until then, and closes it once the entry is gone. At half-open,
the one probe of all processes is a ``SET NX`` with an expiry: whoever wins
probes, the others are refused and ask again. Writes go through one thread
per client, never the call's; on a call's path are only the first call's
read and the probe's ``SET``, once a cooldown. When Redis cannot be reached,
breakers work locally (the probe is allowed).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from typing import Any

from .._core import HealthTracker, SharedBreaker
from .link import RedisLink, StateDown
from .parts import text

__all__ = ["POLL_S", "RedisBreakers"]

logger = logging.getLogger("palyra")

POLL_S = 0.25
"""Seconds between two reads of the other processes' open breakers."""
_SEP = "\x1f"
_QUEUE_MAX = 1000

OPEN = """
-- KEYS: the breakers hash, the probe key. ARGV: field, until (ms).
local now = redis.call('HGET', KEYS[1], ARGV[1])
if not now or tonumber(now) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('DEL', KEYS[2])
return 1
"""
CLOSE = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""
POLL = "return redis.call('HGETALL', KEYS[1])"
PROBE = "return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])"


def _field(key: tuple[str, str]) -> str:
    return f"{key[0]}{_SEP}{key[1]}"


class RedisBreakers:
    """The breaker bus of one client (see the module docstring).

    Args:
        link: The Redis.
        prefix: Key prefix.
    """

    def __init__(self, link: RedisLink, prefix: str) -> None:
        self.link = link
        self._hash = f"{prefix}breakers"
        self._prefix = prefix
        self._token = uuid.uuid4().hex  # this process's name on a probe
        self._tracker: HealthTracker | None = None
        self._queue: deque[tuple[str, tuple[str, str], int]] = deque(maxlen=_QUEUE_MAX)
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._seen_open: set[tuple[str, str]] = set()
        self._closed_at: dict[tuple[str, str], float] = {}
        self.probes_lost = 0  # half-open probes another process took
        self._read = threading.Event()  # set once the first read is done

    def __repr__(self) -> str:
        return f"RedisBreakers({self.link.target})"

    # -- the bus ---------------------------------------------------------------

    def breaker(
        self, key: tuple[str, str], threshold: int, cooldown: float, clock: Any
    ) -> SharedBreaker:
        """A breaker for ``key`` that reports to this bus."""
        return SharedBreaker(key, self, threshold, cooldown, clock)

    def watch(self, tracker: HealthTracker) -> None:
        """Follow the other processes' transitions for ``tracker``: read
        them once now (the client's first call, once: a breaker open
        elsewhere refuses it already), then from the bus's thread."""
        with self._wake:
            self._tracker = tracker
            if self._thread is not None or self._closing:
                return
            self._thread = threading.Thread(
                target=self._work, name="palyra-state-breakers", daemon=True
            )
        try:
            with contextlib.suppress(StateDown):  # then breakers work locally
                self._poll()
        finally:
            self._read.set()
        self._thread.start()

    def first_read(self) -> None:
        """Return once `watch` has read the open breakers a first time."""
        if not self._read.is_set():
            self.link.wait_bound(self._read)

    def opened(self, key: tuple[str, str], seconds: float) -> None:
        """Publish an open (from the bus's thread)."""
        until = int((time.time() + seconds) * 1000)
        self._put(("open", key, until))

    def closed(self, key: tuple[str, str]) -> None:
        """Publish a close (from the bus's thread)."""
        self._closed_at[key] = time.monotonic()
        self._put(("close", key, 0))

    def probe(self, key: tuple[str, str], seconds: float) -> bool:
        """Take the one probe of ``key`` across processes, for ``seconds``."""
        ms = max(int(seconds * 1000), 1)
        try:
            taken = self.link.run(PROBE, [self._probe_key(key)], [self._token, ms])
        except StateDown:
            return True  # Redis is down: the breaker works locally
        if taken is None:
            self.probes_lost += 1
            return False
        return True

    # -- the thread -------------------------------------------------------------

    def _put(self, item: tuple[str, tuple[str, str], int]) -> None:
        with self._wake:
            self._queue.append(item)
            self._wake.notify()

    def _probe_key(self, key: tuple[str, str]) -> str:
        return f"{self._prefix}probe:{_field(key)}"

    def _work(self) -> None:
        while True:
            with self._wake:
                if not self._queue and not self._closing:
                    self._wake.wait(POLL_S)
                if self._closing:
                    return
            try:
                self._publish()
                self._poll()
            except StateDown:
                time.sleep(POLL_S)  # tried again; breakers work locally
            except Exception:
                logger.exception("palyra: sharing circuit breakers failed")
                time.sleep(POLL_S)

    def _publish(self) -> None:
        while self._queue:
            kind, key, until = self._queue[0]
            keys = [self._hash, self._probe_key(key)]
            if kind == "open":
                self.link.run(OPEN, keys, [_field(key), until])
            else:
                self.link.run(CLOSE, keys, [_field(key)])
            self._queue.popleft()

    def _poll(self) -> None:
        tracker = self._tracker
        if tracker is None:
            return
        found = self.link.run(POLL, [self._hash], [])
        now = time.time() * 1000
        open_now: dict[tuple[str, str], float] = {}
        for field, until in zip(found[0::2], found[1::2], strict=True):
            provider, _, model = text(field).partition(_SEP)
            open_now[(provider, model)] = max((float(text(until)) - now) / 1000, 0.0)
        recent = time.monotonic() - 2 * POLL_S
        for key, seconds in open_now.items():
            breaker = tracker.follow(key)
            if not isinstance(breaker, SharedBreaker):
                continue  # breakers are off in this client
            if self._closed_at.get(key, 0.0) > recent:
                continue  # closed here just now: our close is on its way
            self._seen_open.add(key)
            breaker.remote_open(seconds)
        for key in [k for k in self._seen_open if k not in open_now]:
            self._seen_open.discard(key)
            gone = tracker.breaker(key)
            if isinstance(gone, SharedBreaker):
                gone.remote_close()

    def close(self, timeout: float = 2.0) -> None:
        """Publish what is queued (within ``timeout``), stop, close the link."""
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline and not self.link.down:
            time.sleep(0.01)
        with self._wake:
            self._closing = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self.link.close()
