"""Delivering events off the call path: one bounded queue, one thread.

A call only appends a note to the queue (and wakes the thread when it
sleeps for want of events): it never waits for a callback, never runs one,
and never starts a thread of its own. The dispatcher thread, started with the
first event, builds each event and hands it to every callback in turn, in
the order the calls queued them. A full queue drops the new note (and
counts it); a callback that raises is counted and logged (its class, once
per callback) and the next one still runs. An ``async def`` callback is
run on the dispatcher's own event loop, never on the app's.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .events import CallEvent

if TYPE_CHECKING:
    import asyncio

__all__ = ["DEFAULT_QUEUE", "EventDispatcher", "ObservabilityStats"]

logger = logging.getLogger("palyra.events")

DEFAULT_QUEUE = 10_000
"""Events waiting for the callbacks, at most; past it new ones are dropped."""
GATHER_S = 0.02
"""While events come, the thread lets them gather this long between rounds:
calls then only append (no wake-up each), and events reach the callbacks
within about this much."""

Note = tuple[Callable[[Any], CallEvent], Any]
"""What a call queues: a builder and its argument (built by the thread)."""


_LIVE: weakref.WeakSet[EventDispatcher] = weakref.WeakSet()


def _after_fork() -> None:
    for dispatcher in list(_LIVE):
        dispatcher._forked()


def _at_exit() -> None:
    """A script's last calls: their events still reach the callbacks (within
    a second each, at most)."""
    for dispatcher in list(_LIVE):
        dispatcher.flush(1.0)


os.register_at_fork(after_in_child=_after_fork)
# At exit, before atexit's handlers where CPython allows it (concurrent.futures
# does the same): an OpenTelemetry provider made after palyra was imported
# shuts down in its own atexit handler, which atexit's order would run first,
# and the last calls' spans would find it closed.
_before_atexit = getattr(threading, "_register_atexit", None)
try:
    if _before_atexit is None:
        raise RuntimeError
    _before_atexit(_at_exit)
except RuntimeError:  # not this Python, or the interpreter is already exiting
    atexit.register(_at_exit)


@dataclass(frozen=True, slots=True)
class ObservabilityStats:
    """How event delivery is going (``client.observability.stats()``).

    Attributes:
        emitted: Events the calls queued.
        delivered: Events every callback was handed.
        dropped: Events not queued: the queue was full.
        callback_errors: Callback runs that raised.
        queued: Events waiting now.
        otel_failures: With OpenTelemetry on, calls whose trace or spans
            palyra failed to make (logged once; never the call's failure).
    """

    emitted: int
    delivered: int
    dropped: int
    callback_errors: int
    queued: int
    otel_failures: int = 0


class EventDispatcher:
    """The queue and the thread of one client's ``on_event`` callbacks.

    Args:
        callbacks: Called with each `CallEvent`, in order (plain or async).
        limit: Most events waiting at once.
    """

    def __init__(
        self,
        callbacks: Sequence[Callable[[CallEvent], Any]],
        limit: int = DEFAULT_QUEUE,
    ) -> None:
        self._callbacks = list(callbacks)
        self._limit = limit
        self._queue: deque[Note] = deque()
        self._wake = threading.Condition()
        self._idle = True  # the thread waits for a wake-up (or is not started)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._hurry = 0  # flushes waiting: no gathering
        self._half = max(limit // 2, 1)
        self._taken = 0  # notes the thread took from the queue
        self._busy = 0  # of those, not delivered yet
        self._loop: asyncio.AbstractEventLoop | None = None
        self._said: set[int] = set()  # callbacks whose failure was logged
        self.delivered = self.dropped = self.errors = 0

        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"EventDispatcher({len(self._callbacks)} callbacks)"

    def _forked(self) -> None:
        """In a forked child: no thread, a new lock, nothing of the parent's
        queue (the parent delivers it)."""
        self._wake = threading.Condition()
        self._queue.clear()
        self._thread, self._idle, self._busy, self._loop = None, True, 0, None
        self._hurry = 0

    def emit(self, build: Callable[[Any], CallEvent], arg: Any) -> bool:
        """Queue an event (built later by the thread); never blocks, and
        takes no lock while the thread is at work (a deque's append is
        atomic): a call pays an append. False: it was dropped."""
        queue = self._queue
        if len(queue) >= self._limit or self._closed:
            with self._wake:
                self.dropped += 1
            return False
        queue.append((build, arg))
        if self._idle or len(queue) == self._half:  # asleep, or half full
            with self._wake:
                if self._thread is None and not self._closed:
                    return self._start()
                self._wake.notify()
        return True

    def add(self, callback: Callable[[CallEvent], Any]) -> None:
        """One more callback (for the events not delivered yet)."""
        self._callbacks = [*self._callbacks, callback]  # rebound: no lock

    def stats(self) -> ObservabilityStats:
        """The counts so far."""
        with self._wake:
            queued = len(self._queue) + self._busy
            emitted = self._taken + len(self._queue)
        return ObservabilityStats(
            emitted, self.delivered, self.dropped, self.errors, queued
        )

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued event to be
        delivered; whether they were (at once False from a callback: the
        thread that would deliver them is the one waiting)."""
        if threading.current_thread() is self._thread:
            return False
        deadline = time.monotonic() + timeout
        with self._wake:
            self._hurry += 1
            try:
                self._wake.notify_all()  # no gathering: deliver now
                while self._queue or self._busy:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._thread is None:
                        return not (self._queue or self._busy)
                    self._wake.wait(min(left, 0.05))
                    self._wake.notify_all()
            finally:
                self._hurry -= 1
        return True

    def close(self, timeout: float) -> bool:
        """Deliver what is queued, then stop the thread, all within
        ``timeout`` seconds; later events (a stream read after its client
        closed) are dropped. Whether everything was delivered."""
        deadline = time.monotonic() + timeout
        drained = self.flush(timeout)
        with self._wake:
            self._closed = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(deadline - time.monotonic(), 0.0))
        return drained

    # -- the thread -------------------------------------------------------------

    def _start(self) -> bool:
        thread = threading.Thread(target=self._work, name="palyra-events", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread now (interpreter exit, none left)
            self._queue.clear()  # dropped, counted: a call never fails here
            self.dropped += 1
            return False
        self._thread = thread
        return True

    def _work(self) -> None:
        try:
            while True:
                notes = self._take()
                if notes is None:
                    return
                self._round(notes)
                del notes  # nothing of a delivered round is kept while idle
        except BaseException:  # a bug of ours: the next event starts anew
            logger.exception("palyra: the events' thread stopped")
            with self._wake:
                self._thread, self._idle, self._busy = None, True, 0
                self._wake.notify_all()
        finally:
            if self._loop is not None:  # async callbacks' loop: this thread's
                self._loop.close()
                self._loop = None

    def _round(self, notes: list[Note]) -> None:
        for build, arg in notes:
            self._deliver(build, arg)
        with self._wake:
            self._busy = 0
            self._wake.notify_all()  # flush() waits on it

    def _take(self) -> list[Note] | None:
        """The notes queued, once a few have gathered; None to stop."""
        with self._wake:
            if not (self._closed or self._hurry) and len(self._queue) < self._half:
                # A round per GATHER_S while calls come, however fast: a round
                # per event or two would trade the GIL with the calls on
                # every one (a flush, and a queue half full, cut it short).
                self._wake.wait(GATHER_S)  # calls append without waking us
            while not self._queue and not self._closed:
                self._idle = True  # from now on an emit wakes us...
                if self._queue:  # ...and one just before it is seen here
                    break
                self._wake.wait()
            self._idle = False
            if not self._queue:
                return None  # closed, and nothing left
            queue = self._queue
            notes = [queue.popleft() for _ in range(len(queue))]
            self._taken += len(notes)
            self._busy = len(notes)
            return notes

    def _deliver(self, build: Callable[[Any], CallEvent], arg: Any) -> None:
        try:
            event = build(arg)
        except Exception:  # a bug of ours: the event is lost, never the call
            logger.exception("palyra: building a call event failed")
            self.errors += 1
            return
        for callback in self._callbacks:
            try:
                result = callback(event)
                if inspect.isawaitable(result):  # async def, or an object's
                    self._event_loop().run_until_complete(result)
            except BaseException as exc:  # SystemExit, CancelledError too:
                self._failed(callback, exc)  # the thread must go on
        self.delivered += 1

    def _failed(self, callback: Callable[..., Any], exc: BaseException) -> None:
        self.errors += 1
        if id(callback) not in self._said:
            self._said.add(id(callback))
            logger.warning(
                "palyra: on_event callback %s raised %s (counted in"
                " client.observability.stats(); said once)",
                getattr(callback, "__qualname__", type(callback).__name__),
                type(exc).__name__,
            )

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            import asyncio  # only for async callbacks

            self._loop = asyncio.new_event_loop()
        return self._loop
