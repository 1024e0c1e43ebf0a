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
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from contextvars import Token
from typing import Any

from .metering import HELD, LedgerSlot
from .records import UsageRecord

__all__ = ["AsyncRecordWriter", "hold", "release", "writer_for"]

logger = logging.getLogger("palyra")

Held = list[tuple[LedgerSlot, UsageRecord]]


def hold() -> Token[Held | None]:
    """From now on in this task, `LedgerSlot.write` holds records."""
    return HELD.set([])


def release(token: Token[Held | None]) -> Held:
    """Stop holding; the records held since `hold`."""
    held = HELD.get() or []
    HELD.reset(token)
    return held


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
    """Writes the held records of one event loop's calls, one batch at a time.

    Args:
        to_thread: Runs a function in a worker thread (``asyncio.to_thread``).
    """

    def __init__(self, to_thread: Callable[..., Any]) -> None:
        self._to_thread = to_thread
        self._waiting: list[tuple[Held, Any]] = []  # (records, future)
        self._draining: Any = None  # the task writing, if any

    async def write(self, held: Held) -> None:
        """Return once ``held`` is committed (or its failure logged). A caller
        cancelled meanwhile leaves its records to be written all the same."""
        import asyncio  # the caller's loop has loaded it already

        if self._draining is None:  # nothing queued ahead: order kept
            held = _write_now(held)
            if not held:
                return
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((held, done))
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._drain())
        await asyncio.shield(done)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await self._to_thread(_write, [held for held, _ in batch])
                except Exception:  # _write logs its own failures; this is a bug
                    logger.exception("palyra: held usage records were not written")
                finally:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._draining = None


# One writer per event loop, for every client on it (each record carries its
# slot); dropped with the loop.
_WRITERS: weakref.WeakKeyDictionary[Any, AsyncRecordWriter] = (
    weakref.WeakKeyDictionary()
)


def writer_for(loop: Any) -> AsyncRecordWriter:
    """The record writer of ``loop`` (made on first use)."""
    found = _WRITERS.get(loop)
    if found is None:
        import asyncio  # the loop's own module: loaded already

        found = _WRITERS[loop] = AsyncRecordWriter(asyncio.to_thread)
    return found
