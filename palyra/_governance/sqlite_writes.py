"""How `SQLiteLedger` commits rows: one transaction per batch, SQLite's
"busy" answers retried until the ledger's timeout, or (`insert_nowait`) not
waited for at all.

`insert_nowait` serves the async path: a call on the event loop commits its
records there when no other connection holds SQLite's lock (a spool INSERT
appended to the WAL: tens of microseconds), and hands them to a worker
thread only when it would have to wait, so that a lock held by another
process never stalls the loop and an uncontended call pays no thread
handoff.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .records import LedgerError
from .sqlite_schema import SLOT_MS, SPOOL_INSERT

__all__ = [
    "Pending",
    "as_ledger_error",
    "insert_all",
    "insert_nowait",
    "prune_rows",
    "retry",
]

T = TypeVar("T")


class Pending:
    """A record waiting for the writer, and what became of it."""

    __slots__ = ("done", "error", "row")

    def __init__(self, row: Any) -> None:
        self.row = row
        self.done = False
        self.error: LedgerError | None = None


def insert_all(conn: sqlite3.Connection, rows: list[Any]) -> None:
    """One transaction for ``rows``: all of them are committed, or none."""
    if len(rows) == 1:
        conn.execute(SPOOL_INSERT, rows[0])  # autocommit: its own transaction
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(SPOOL_INSERT, rows)
        conn.execute("COMMIT")
    except BaseException:
        # Nothing half-written, and a retry can begin afresh.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def insert_nowait(conn: sqlite3.Connection, rows: list[Any], timeout: float) -> bool:
    """`insert_all` if SQLite's write lock is free now; False, with nothing
    written, where another connection holds it. ``timeout`` (seconds) is the
    connection's busy timeout, restored afterwards."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        insert_all(conn, rows)
    except sqlite3.OperationalError as exc:
        if _is_busy(exc):
            return False
        raise
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return True


def retry(action: Callable[[], T], path: Path, timeout: float) -> T:
    """Run ``action``, again while SQLite says busy or locked, until
    ``timeout``: some busy answers (a WAL being recovered, a stale read
    snapshot) come at once, without the busy handler's wait."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            if time.monotonic() >= deadline:
                raise LedgerError(
                    f"the usage ledger {path} was locked by another"
                    f" writer for more than {timeout} s"
                ) from None
            time.sleep(random.uniform(0.001, 0.005))


def as_ledger_error(path: Path, action: str, exc: BaseException) -> LedgerError:
    """``exc`` as the `LedgerError` a caller sees (naming the file)."""
    if isinstance(exc, LedgerError):
        return exc
    return LedgerError(
        f"the usage ledger {path} could not {action}: {type(exc).__name__}: {exc}"
    )


def prune_rows(conn: sqlite3.Connection, before_ms: int, keep_totals: bool) -> int:
    """Delete the records of whole 15-minute slots before ``before_ms`` (and
    their slot sums, unless ``keep_totals``; their sums by model and the
    rest always) and the scheduler's run records
    that ended before it, in one transaction; how many usage records went."""
    slot = before_ms // SLOT_MS
    conn.execute("BEGIN IMMEDIATE")
    try:
        gone = conn.execute(
            "DELETE FROM usage WHERE started_ms < ?", (slot * SLOT_MS,)
        ).rowcount
        if not keep_totals:
            conn.execute("DELETE FROM usage_slots WHERE slot < ?", (slot,))
        # Always: totals by model, agent... count the records still kept,
        # whichever table answers them.
        conn.execute("DELETE FROM usage_groups WHERE slot < ?", (slot,))
        conn.execute("DELETE FROM cron_runs WHERE ended_ms < ?", (before_ms,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return max(gone, 0)
