"""Concurrent reserves of one process, sent to Redis together.

A reserve is one script and one round trip. Under load most of what it
costs is that round trip's system calls and redis-py's framing, per call,
on both sides of the socket. So calls that arrive while another reserve is
on the wire queue up, and the next round trip takes all of them at once in
one pipeline (a group commit). Each script stays atomic on its own: a
pipeline is not a transaction, and Redis runs the scripts one after the
other in the order they were queued, exactly as if they had come one by
one, so every budget decision is the one a lone call would get. A call
alone on the wire waits for nobody.

`Batcher` serves threads (the first queued caller takes the next batch to
Redis: no extra thread), `AsyncBatcher` one event loop (a task drains the
queue, so that a cancelled caller never strands the others). A caller
waits at most two round trips' bounds (the batch on the wire, then its
own); one that gives up while its script is on the wire gets `StateDown`,
and a reservation the script made for it anyway is let go by its expiry.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from .link import Call, RedisLink, StateDown

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncBatcher", "Batcher"]


class _Slot:
    __slots__ = ("answer", "call", "done", "gone", "lead")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.answer: Any = _NONE
        self.done: threading.Event | None = None  # made only for a wait
        self.lead: list[_Slot] | None = None  # the batch it takes to Redis
        self.gone = False  # its caller gave up: never sent, never made to lead


_NONE = object()


def _wake(slot: _Slot) -> None:
    if slot.done is not None:
        slot.done.set()


def _answer(value: Any) -> Any:
    if isinstance(value, BaseException):
        raise value
    return value


class Batcher:
    """Scripts of many threads, one round trip per batch."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._lock = threading.Lock()
        self._queue: deque[_Slot] = deque()
        self._busy = False
        self.round_trips = 0  # batches sent (a figure for tests and benchmarks)

    def run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run one script, in the next batch.

        Raises:
            StateDown: Redis could not be reached, failed the script, or
                did not answer within the wait's bound.
        """
        slot = _Slot((script, keys, args))
        with self._lock:
            if self._busy:
                slot.done = threading.Event()
                self._queue.append(slot)
            else:
                self._busy = True
                slot.lead = [slot]
        if slot.lead is None:
            self._wait(slot)
        if slot.lead is not None:
            self._take(slot.lead)
        return _answer(slot.answer)

    def _wait(self, slot: _Slot) -> None:
        bound = 2 * self._link.round_trip_bound
        assert slot.done is not None
        try:
            if slot.done.wait(bound):
                return
        except BaseException:  # interrupted (a signal's exception, ^C)
            self._abandon(slot)
            raise
        with self._lock:
            if slot.lead is not None or slot.answer is not _NONE:
                return
            slot.gone = True
            if slot in self._queue:
                self._queue.remove(slot)  # never sent: nothing to let go
        raise StateDown(
            f"Redis at {self._link.target} did not answer within {bound:g} s"
        )

    def _abandon(self, slot: _Slot) -> None:
        """A waiter was interrupted: it must hold up nobody, even if it was
        just made to take the next batch."""
        with self._lock:
            slot.gone = True
            batch, slot.lead = slot.lead, None
            if batch is None:
                if slot in self._queue:
                    self._queue.remove(slot)
                return
            rest = [s for s in batch if not s.gone]
            if rest:
                rest[0].lead = rest
                following: _Slot | None = rest[0]
            else:
                following = self._next_leader()
        if following is not None:
            _wake(following)

    def _next_leader(self) -> _Slot | None:
        """(Under the lock.) Hand the queue to its first caller still
        waiting, who takes it to Redis; None when nobody waits."""
        waiting = [s for s in self._queue if not s.gone]
        self._queue.clear()
        if not waiting:
            self._busy = False
            return None
        waiting[0].lead = waiting
        return waiting[0]

    def _take(self, batch: list[_Slot]) -> None:
        """Send ``batch``, answer it, and hand the queue to its next caller.
        This thread's own failure (a bug, an interruption) is raised here
        alone; the others of the batch hear that Redis was not reached."""
        with self._lock:
            batch = [s for s in batch if not s.gone]
        raised: BaseException | None = None
        try:
            answers = self._send([s.call for s in batch]) if batch else []
        except StateDown as exc:
            answers = [StateDown(str(exc)) for _ in batch]  # one each
        except BaseException as exc:
            raised = exc
            failed = StateDown(
                f"Redis at {self._link.target}: the round trip taking this call"
                f" failed ({type(exc).__name__})"
            )
            answers = [StateDown(str(failed)) for _ in batch]
        finally:
            with self._lock:
                following = self._next_leader()
            if following is not None:
                _wake(following)
        for slot, answer in zip(batch, answers, strict=True):
            slot.answer = answer
            _wake(slot)
        if raised is not None:
            raise raised

    def _send(self, calls: list[Call]) -> list[Any]:
        self.round_trips += 1
        if len(calls) == 1:
            script, keys, args = calls[0]
            return [self._link.run(script, keys, args)]
        return self._link.run_many(calls)


def _each(exc: Exception, n: int) -> list[Any]:
    """One exception per caller (one instance raised in many tasks would
    share its traceback); what is not Redis being down is said as such."""
    text = str(exc) if isinstance(exc, StateDown) else f"{type(exc).__name__}: {exc}"
    return [StateDown(text) for _ in range(n)]


class AsyncBatcher:
    """Scripts of many tasks of one event loop, one round trip per batch."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._queue: deque[tuple[Call, asyncio.Future[Any]]] = deque()
        self._busy = False
        self._drainer: asyncio.Task[None] | None = None
        self.round_trips = 0

    async def run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """`Batcher.run` on this loop."""
        import asyncio  # here: a client with no async call never loads it

        if not self._busy:
            self._busy = True  # alone: this task takes its own script
            try:
                self.round_trips += 1
                return await self._link.arun(script, keys, args)
            finally:
                self._hand_on()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(((script, keys, args), future))
        bound = 2 * self._link.round_trip_bound
        try:
            # No shield: a caller that gives up cancels its future, and the
            # drainer skips it (nothing is left for nobody to retrieve).
            return await asyncio.wait_for(future, bound)
        except TimeoutError:
            raise StateDown(
                f"Redis at {self._link.target} did not answer within {bound:g} s"
            ) from None

    def _hand_on(self) -> None:
        import asyncio

        if self._queue:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        else:
            self._busy = False

    async def _drain(self) -> None:
        batch: list[tuple[Call, asyncio.Future[Any]]] = []
        try:
            while self._queue:
                batch = list(self._queue)
                self._queue.clear()
                answers = await self._send([call for call, _ in batch])
                for (_, future), answer in zip(batch, answers, strict=True):
                    if future.done():
                        continue  # its caller gave up
                    if isinstance(answer, BaseException):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
                batch = []
        finally:
            self._busy = False
            self._drainer = None
            for _, future in [*batch, *self._queue]:  # the loop is shutting down
                if not future.done():
                    future.set_exception(StateDown("the event loop closed"))
            self._queue.clear()

    async def _send(self, calls: list[Call]) -> list[Any]:
        self.round_trips += 1
        try:
            return await self._link.arun_many(calls)
        except Exception as exc:
            return _each(exc, len(calls))
