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

import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .events import CallEvent

if TYPE_CHECKING:
    import asyncio

__all__ = ["DEFAULT_QUEUE", "EventDispatcher", "Observability", "ObservabilityStats"]

logger = logging.getLogger("palyra.events")

DEFAULT_QUEUE = 10_000
"""Events waiting for the callbacks, at most; past it new ones are dropped."""
GATHER_S = 0.02
"""While events come, the thread lets them gather this long between rounds:
calls then only append (no wake-up each), and events reach the callbacks
within about this much."""

Note = tuple[Callable[[Any], CallEvent], Any]
"""What a call queues: a builder and its argument (built by the thread)."""


@dataclass(frozen=True, slots=True)
class ObservabilityStats:
    """How event delivery is going (``client.observability.stats()``).

    Attributes:
        emitted: Events the calls queued.
        delivered: Events every callback was handed.
        dropped: Events not queued: the queue was full.
        callback_errors: Callback runs that raised.
        queued: Events waiting now.
    """

    emitted: int
    delivered: int
    dropped: int
    callback_errors: int
    queued: int


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
        self._taken = 0  # notes the thread took from the queue
        self._busy = 0  # of those, not delivered yet
        self._loop: asyncio.AbstractEventLoop | None = None
        self._said: set[int] = set()  # callbacks whose failure was logged
        self.delivered = self.dropped = self.errors = 0

    def __repr__(self) -> str:
        return f"EventDispatcher({len(self._callbacks)} callbacks)"

    def emit(self, build: Callable[[Any], CallEvent], arg: Any) -> None:
        """Queue an event (built later by the thread); never blocks, and
        takes no lock while the thread is at work (a deque's append is
        atomic): a call pays an append."""
        queue = self._queue
        if len(queue) >= self._limit or self._closed:
            with self._wake:
                self.dropped += 1
            return
        queue.append((build, arg))
        if self._idle:
            with self._wake:
                if self._thread is None and not self._closed:
                    self._start()
                self._wake.notify()

    @property
    def emitted(self) -> int:
        """Events the calls queued."""
        return self._taken + len(self._queue)

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
        delivered; whether they were."""
        deadline = time.monotonic() + timeout
        with self._wake:
            self._wake.notify_all()  # no gathering: deliver now
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return not (self._queue or self._busy)
                self._wake.wait(min(left, 0.05))
                self._wake.notify_all()
        return True

    def close(self, timeout: float) -> bool:
        """Deliver what is queued (within ``timeout``), then stop the thread;
        later events (a stream read after its client closed) are dropped.
        Whether everything was delivered."""
        drained = self.flush(timeout)
        with self._wake:
            self._closed = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(timeout, 0.1))
        return drained

    # -- the thread -------------------------------------------------------------

    def _start(self) -> None:
        self._thread = threading.Thread(
            target=self._work, name="palyra-events", daemon=True
        )
        self._thread.start()

    def _work(self) -> None:
        try:
            while True:
                notes = self._take()
                if notes is None:
                    return
                for build, arg in notes:
                    self._deliver(build, arg)
                with self._wake:
                    self._busy = 0
                    self._wake.notify_all()  # flush() waits on it
        finally:
            if self._loop is not None:
                self._loop.close()

    def _take(self) -> list[Note] | None:
        """The notes queued, once a few have gathered; None to stop."""
        with self._wake:
            if not self._queue and not self._closed:
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
                if inspect.iscoroutinefunction(callback):
                    self._event_loop().run_until_complete(callback(event))
                else:
                    callback(event)
            except Exception as exc:
                self.errors += 1
                if id(callback) not in self._said:
                    self._said.add(id(callback))
                    logger.warning(
                        "palyra: on_event callback %s raised %s (counted in"
                        " client.observability.stats(); said once)",
                        getattr(callback, "__qualname__", type(callback).__name__),
                        type(exc).__name__,
                    )
        self.delivered += 1

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            import asyncio  # only for async callbacks

            self._loop = asyncio.new_event_loop()
        return self._loop


class Observability:
    """``client.observability``: how event delivery is going.

    Args:
        dispatcher: The client's dispatcher, or None without ``on_event``.
    """

    def __init__(self, dispatcher: EventDispatcher | None) -> None:
        self._dispatcher = dispatcher

    def __repr__(self) -> str:
        return f"Observability({self._dispatcher!r})"

    def stats(self) -> ObservabilityStats:
        """Events emitted, delivered, dropped (a full queue), callback errors,
        and waiting now (all 0 without ``on_event``)."""
        if self._dispatcher is None:
            return ObservabilityStats(0, 0, 0, 0, 0)
        return self._dispatcher.stats()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds for the queued events to reach the
        callbacks; whether they all did."""
        return True if self._dispatcher is None else self._dispatcher.flush(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued, then stop (the client's ``close``)."""
        return True if self._dispatcher is None else self._dispatcher.close(timeout)
