"""Ledger records of async calls, written without stalling the event loop.

A ledger commit is disk I/O, and may wait on another process's lock for up
to the ledger's timeout: on the event loop that wait would stall every other
call the loop serves (a gateway's every request). So while an async call
runs its records are held (`hold`), and before it returns they are handed to
the loop's `AsyncRecordWriter`. When nothing is queued ahead of them and the
ledger can commit them without waiting for any lock (``try_record_many``:
an uncontended SQLite spool INSERT, tens of microseconds), they are
committed there and then, on the loop: a thread handoff would cost an
uncontended call ten times as much. Otherwise they are written in one worker
thread, with whatever else is waiting, one transaction at a time, and each
call is told when its records are committed. The call returns only once they
are: what the sync path promises (durable when the call returns) holds for
the async one too.

An async stream's last record is written as the stream ends, after its call
returned: `HeldEnding`, the core's ``StreamEnding`` seam, holds it the same
way (a reader cancelled, or a dropped stream's finalizer, submits it without
waiting: committed on the spot when that takes no waiting, else by the
worker thread shortly after). The worker thread
takes whatever is queued until nothing is, and is the loop's executor's: a
loop shutting down (``asyncio.run`` returning, which cancels every task) waits
for it, so nothing queued is lost.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from .records import UsageRecord

if TYPE_CHECKING:
    from .metering import LedgerSlot

__all__ = [
    "HELD",
    "AsyncRecordWriter",
    "HeldEnding",
    "Holder",
    "hold",
    "release",
    "writer_for",
]

logger = logging.getLogger("palyra")

Held = list[tuple["LedgerSlot", UsageRecord]]


class Holder:
    """The records held for one async call; closed once it has released
    them (a context copied meanwhile, by a callback, still sees it)."""

    __slots__ = ("closed", "records")

    def __init__(self) -> None:
        self.records: Held = []
        self.closed = False


# The records held for the async call running in this task (`LedgerSlot.write`).
HELD: ContextVar[Holder | None] = ContextVar("palyra_held_records", default=None)


def hold() -> Token[Holder | None]:
    """From now on in this task, `LedgerSlot.write` holds records."""
    return HELD.set(Holder())


def release(token: Token[Holder | None]) -> Held:
    """Stop holding; the records held since `hold`."""
    holder = HELD.get()
    HELD.reset(token)
    if holder is None:
        return []
    holder.closed = True  # a later write (a copied context's) is not held
    return holder.records


def _by_slot(batches: list[Held]) -> list[tuple[LedgerSlot, list[UsageRecord]]]:
    by_slot: dict[int, tuple[LedgerSlot, list[UsageRecord]]] = {}
    for held in batches:
        for slot, record in held:
            by_slot.setdefault(id(slot), (slot, []))[1].append(record)
    return list(by_slot.values())


def _write(batches: list[Held]) -> None:
    """Write held records, each slot's in one transaction (a worker thread)."""
    for slot, records in _by_slot(batches):
        slot.write_many(records)  # logs and counts a failure; never raises


def _write_now(held: Held) -> Held:
    """Commit what can be without waiting (on the loop); the rest."""
    rest: Held = []
    for slot, records in _by_slot([held]):
        if not slot.try_write_many(records):
            rest.extend((slot, record) for record in records)
    return rest


class AsyncRecordWriter:
    """Writes the held records of one event loop's calls.

    Args:
        loop: The event loop whose calls these are.
    """

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._waiting: list[tuple[Held, Any]] = []  # (records, future or None)
        self._draining = False  # a worker thread is writing what waits

    def submit(self, held: Held) -> Any:
        """Commit ``held`` now if that takes no waiting, else queue it for
        the worker thread: None when committed, else a future of the loop
        done once it is (on the loop's thread)."""
        with self._lock:
            if not self._draining:  # nothing queued ahead: order kept
                held = _write_now(held)
                if not held:
                    return None
            done = self._loop.create_future()
            self._waiting.append((held, done))
            if self._draining:
                return done
            self._draining = True
        self._loop.run_in_executor(None, self._drain)
        return done

    async def write(self, held: Held) -> None:
        """Return once ``held`` is committed (or its failure logged). A caller
        cancelled meanwhile leaves its records to be written all the same."""
        done = self.submit(held)
        if done is not None:
            import asyncio  # the caller's loop has loaded it already

            await asyncio.shield(done)

    def _drain(self) -> None:
        """The worker thread: write what waits, batch after batch, until
        nothing does; tell each caller on the loop."""
        while True:
            with self._lock:
                batch, self._waiting = self._waiting, []
                if not batch:
                    self._draining = False
                    return
            try:
                _write([held for held, _ in batch])
            except Exception:  # _write logs its own failures; this is a bug
                logger.exception("palyra: held usage records were not written")
            for _, done in batch:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    self._loop.call_soon_threadsafe(_settle, done)


def _settle(done: Any) -> None:
    if not done.done():
        done.set_result(None)


class HeldEnding:
    """Runs an async stream's last report with its records held, then has
    the loop's writer keep them (the core's ``StreamEnding``)."""

    async def run(self, report: Callable[[], object]) -> None:
        """Run ``report``; return once its records are committed."""
        import asyncio  # the caller's loop has loaded it already

        token = hold()
        try:
            report()
        finally:
            held = release(token)
        if held:
            await writer_for(asyncio.get_running_loop()).write(held)

    def soon(self, report: Callable[[], object]) -> None:
        """Run ``report``; its records are committed now or soon after."""
        import asyncio

        token = hold()
        try:
            report()
        finally:
            held = release(token)
        if held:
            writer_for(asyncio.get_running_loop()).submit(held)


# One writer per event loop, for every client on it (each record carries its
# slot); dropped with the loop.
_WRITERS: weakref.WeakKeyDictionary[Any, AsyncRecordWriter] = (
    weakref.WeakKeyDictionary()
)


def writer_for(loop: Any) -> AsyncRecordWriter:
    """The record writer of ``loop`` (made on first use)."""
    found = _WRITERS.get(loop)
    if found is None:
        found = _WRITERS[loop] = AsyncRecordWriter(loop)
    return found
