"""The usage ledger in a SQLite file (stdlib `sqlite3`), shared by processes.

Durability. The database is in WAL mode with ``synchronous=NORMAL`` and each
record is committed before `SQLiteLedger.record` returns (records that several
threads write at once share one transaction: group commit). A commit
appends the transaction to the WAL file with ``write()``: once that returns,
the bytes are in the operating system's page cache, which outlives the
process, so a record acknowledged to the caller survives SIGKILL, a crash or
``os._exit``. NORMAL skips the fsync per commit (it syncs at checkpoints), so
after a power loss or an OS crash the last commits may be rolled back (never
corrupted): FULL would close that gap at an fsync per call, which the
governance path's budget (150 us per call) cannot pay.

Concurrency. One connection writes, under a lock, and another reads, under
its own lock. SQLite admits one writer at a time anyway, so serialising this
process's writers in Python costs nothing, whereas a connection per thread
would make them contend for SQLite's file lock, where the busy handler waits
by sleeping (milliseconds each), and throughput collapses. The separate
reader lets a long query run while records are written: WAL readers and the
writer do not block each other. Between processes, ``busy_timeout`` waits for
the other's write; "database is locked" never reaches a caller: it is retried
until ``timeout`` seconds have passed, then raised as a `LedgerError`.
Checkpoints (copying the WAL into the database, with an fsync) run in a
daemon thread every 1000 records, stopped by `close`, so that no call pays
for one.

The spool. A call's record is committed to ``usage_spool``, a table with no
index and no trigger, which costs a third of an INSERT into ``usage`` with
its indexes and day slots (about 25 us against 85 on the reference
machine). The same daemon thread moves spooled records into ``usage`` a few
milliseconds later, a chunk per transaction, and every query first moves
whatever is spooled (by any process), so that what a query reads includes
every acknowledged record. A record is never in both tables, nor in
neither: each move is one transaction.

Schema. Numbered migrations (`sqlite_schema`), the version in ``PRAGMA
user_version``: v1 the ``usage`` table, v2 the ``routing`` column and the
indexes, v3 the 15-minute ``usage_slots`` that day totals of all records read
(a trigger keeps them, in each INSERT's transaction), v4 the spool. All of
them run in one ``BEGIN IMMEDIATE`` transaction that re-reads the version,
so two processes opening an old file at once migrate it once.

Costs are kept exactly: ``cost_total`` as the Decimal's text, and for sums in
SQL ``cost_e12`` (the cost in 10^-12 units, when that is exact) and
``cost_exp`` (its exponent, so that a sum has the exponent Python's would).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from .ledger import (
    Page,
    Query,
    offset_segments,
)
from .records import LedgerError, LedgerHealth, Totals, UsageRecord, epoch_ms
from .sqlite_query import groups_answer, slots_answer, totals_of, where_clause
from .sqlite_runs import insert_run, select_runs
from .sqlite_schema import (
    READ,
    drain,
    from_row,
    migrate,
    to_row,
)
from .sqlite_writes import (
    Pending,
    as_ledger_error,
    insert_all,
    insert_nowait,
    prune_rows,
    retry,
)

__all__ = ["SQLiteLedger"]

T = TypeVar("T")
CHECKPOINT_EVERY = 1000  # records (about SQLite's own 1000 WAL pages)
DRAIN_CHUNK = 16  # spooled records moved per turn of the lock (~0.4 ms)
DRAIN_DELAY = 0.05  # seconds the mover waits after a write, to batch


_RANGE = """SELECT MIN(low), MAX(high) FROM (
    SELECT MIN(started_ms) AS low, MAX(started_ms) AS high FROM usage
    UNION ALL
    SELECT MIN(slot) * 900000, MAX(slot) * 900000 + 899999 FROM usage_slots)"""


class SQLiteLedger:
    """Usage records in the SQLite file ``path``, opened on first use.

    Constructing one does no I/O; the file and its directory are made when
    the first record is written or query asked.

    Args:
        path: The database file.
        timeout: Seconds a write or query waits for another process's lock
            before a `LedgerError`.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._write_lock = threading.Lock()
        # Group commit: records waiting for the writer are committed in one
        # transaction by whichever thread gets it; each record() still returns
        # only once its own record is committed.
        self._queue: list[Pending] = []
        self._queue_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._stats_lock = threading.Lock()
        self._written = 0
        self._failed = 0
        self._ok = True
        self._last_error: str | None = None
        self._since_checkpoint = 0
        self._checkpointer: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = False

    def __repr__(self) -> str:
        return f"SQLiteLedger({str(self.path)!r})"

    # The protocol

    def record(self, rec: UsageRecord) -> None:
        """Write ``rec``: committed (durable against the death of the process)
        when this returns. Records written at once by several threads share
        one transaction (group commit).

        Raises:
            LedgerError: It could not be written (the path is not writable,
                the disk is full, another process held the lock past
                ``timeout``); `health` shows the failure too.
        """
        self.record_many([rec])

    def record_many(self, recs: list[UsageRecord]) -> None:
        """`record` for several records, sharing one transaction (with those
        other threads are writing at the same time).

        Raises:
            LedgerError: They could not be written (none was).
        """
        mine = [Pending(row) for row in _rows(recs)]
        with self._queue_lock:
            self._queue.extend(mine)
        with self._write_lock:
            if not all(pending.done for pending in mine):
                self._write_waiting()
        self._count(len(mine), next((p.error for p in mine if p.error), None))

    def try_record_many(self, recs: list[UsageRecord]) -> bool:
        """`record_many` if it can be done without waiting for a lock; False,
        with nothing written, where it would have to wait (another thread
        writing, another process holding SQLite's lock, the file not opened
        yet): the caller then calls `record_many`, in a thread.

        Raises:
            LedgerError: They could not be written (none was).
        """
        rows = _rows(recs)
        if not self._write_lock.acquire(blocking=False):
            return False
        error: LedgerError | None = None
        try:
            conn = self._writer
            if conn is None or self._queue:
                return False
            if not insert_nowait(conn, rows, self.timeout):
                return False
            self._since_checkpoint += len(rows)
            self._background_soon()
        except (sqlite3.Error, OSError) as exc:
            error = as_ledger_error(self.path, "write a usage record", exc)
        finally:
            self._write_lock.release()
        self._count(len(rows), error)
        return True

    def _count(self, n: int, error: LedgerError | None) -> None:
        """Count ``n`` records written, or failed with ``error`` (raised)."""
        with self._stats_lock:
            if error is None:
                self._written += n
                self._ok = True
                return
            self._failed += n
            self._ok = False
            self._last_error = str(error)
        raise error

    def _write_waiting(self) -> None:
        """Commit every waiting record in one transaction (the write lock is
        held); each learns whether it made it."""
        with self._queue_lock:
            batch, self._queue = self._queue, []
        rows = [pending.row for pending in batch]
        error: LedgerError | None = None
        try:
            conn = self._writer_connection()
            self._retry(lambda: insert_all(conn, rows))
            self._since_checkpoint += len(rows)
            self._background_soon()
        except (LedgerError, sqlite3.Error, OSError) as exc:
            error = as_ledger_error(self.path, "write a usage record", exc)
        for pending in batch:
            pending.error = error
            pending.done = True

    def record_run_row(self, row: tuple[Any, ...], keep: int) -> None:
        """Keep a scheduler run record (`palyra._cron`; the columns of
        `sqlite_runs.RUN_COLUMNS`), and the newest ``keep`` of its job."""
        try:
            with self._write_lock:
                conn = self._writer_connection()
                self._retry(lambda: insert_run(conn, row, keep))
        except (LedgerError, sqlite3.Error, OSError) as exc:
            raise as_ledger_error(self.path, "write a run record", exc) from None

    def run_rows(self, job_id: str | None, limit: int) -> list[Any]:
        """The newest ``limit`` run records (of ``job_id``), newest first."""
        return self._read(*select_runs(job_id, limit))

    def prune(self, before: datetime, *, keep_totals: bool = False) -> int:
        """Delete the records of calls started before ``before`` (rounded
        down to a 15-minute slot), and the run records that ended before it.
        With ``keep_totals`` the day totals of all records (``totals(by="day")``
        unfiltered) keep counting them. How many usage records went.

        Raises:
            LedgerError: the file could not be written.
        """
        cutoff = epoch_ms(before)
        self._drain_all()  # a spooled record is pruned as well
        try:
            with self._write_lock:
                conn = self._writer_connection()
                return self._retry(lambda: prune_rows(conn, cutoff, keep_totals))
        except (LedgerError, sqlite3.Error, OSError) as exc:
            raise as_ledger_error(self.path, "prune usage records", exc) from None

    def records(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        page: Page | None = None,
        **filters: Any,
    ) -> list[UsageRecord]:
        """The matching records, oldest first (see `UsageLedger.records`)."""
        query = Query(since, until, filters)
        self._drain_all()
        where, params = where_clause(query)
        order, more = (page or Page()).sql("?", "id", "-1")
        sql = f"SELECT {', '.join(READ)} FROM usage{where}{order}"  # noqa: S608
        return [from_row(row) for row in self._read(sql, params + more)]

    def totals(
        self,
        by: str | tuple[str, ...],
        since: datetime | None = None,
        until: datetime | None = None,
        tz: str = "UTC",
        **filters: Any,
    ) -> list[Totals]:
        """Sums per group, by SQL GROUP BY (see `UsageLedger.totals`)."""
        query = Query(since, until, filters, by, tz)
        self._drain_all()
        segments = self._segments(query) if "day" in query.by else []
        slots = slots_answer(query, segments)
        grouped = not slots and groups_answer(query, segments)
        try:
            return totals_of(
                self._read,
                query,
                segments,
                slots=slots,
                exact_in_sql=True,
                grouped=grouped,
            )
        except LedgerError as exc:
            if "integer overflow" not in str(exc):
                raise
            # Sums past 9.2 million (in 10^-12 units): add them up in Python.
            return totals_of(
                self._read, query, segments, slots=False, exact_in_sql=False
            )

    def health(self) -> LedgerHealth:
        """Whether the last write worked, the last failure, and the counts."""
        with self._stats_lock:
            return LedgerHealth(
                ok=self._ok,
                path=str(self.path),
                last_error=self._last_error,
                failed_writes=self._failed,
                written=self._written,
            )

    def close(self) -> None:
        """Move what is spooled into the table, close the connections and
        stop the background thread; the next use opens them again."""
        thread = self._checkpointer
        if thread is not None:
            self._stopping = True
            self._wake.set()
            thread.join(self.timeout + 1)
            self._checkpointer, self._stopping = None, False
        if self._writer is not None:
            # What stays spooled is moved by the next reader.
            with contextlib.suppress(LedgerError):
                self._drain_all()
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # Queries

    def _segments(self, query: Query) -> list[tuple[int, int]]:
        """The zone's UTC offsets over the records' range (a few a year)."""
        # The slots too: after a prune that kept the totals, they reach back
        # past the oldest record, and need their own days' offsets.
        rows = self._read(_RANGE, [])
        low, high = rows[0] if rows and rows[0][0] is not None else (0, 0)
        if query.since_ms is not None:
            low = max(low, query.since_ms)
        if query.until_ms is not None:
            high = max(low, min(high, query.until_ms))
        return offset_segments(int(low), int(high), query.zone)

    def _read(self, sql: str, params: list[Any]) -> list[Any]:
        try:
            with self._read_lock:
                if self._reader is None:
                    with self._write_lock:
                        self._writer_connection()  # made and migrated
                    self._reader = self._connect()
                conn = self._reader
                return self._retry(lambda: conn.execute(sql, params).fetchall())
        except (LedgerError, sqlite3.Error, OSError) as exc:
            raise as_ledger_error(self.path, "read usage records", exc) from None

    # Connections

    def _writer_connection(self) -> sqlite3.Connection:
        """The writing connection, opened and migrated on first use (the
        caller holds the write lock)."""
        if self._writer is None:
            conn = self._connect()
            try:
                self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
                self._retry(lambda: migrate(conn, self.path))
            except BaseException:
                conn.close()
                raise
            self._writer = conn
        return self._writer

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            # Who called what, when, for how much: for the owner's eyes only
            # (SQLite gives its -wal and -shm files the database's mode).
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        # isolation_level=None: autocommit, so one INSERT is one transaction
        # committed by execute(), and migrations say BEGIN themselves.
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None,
            check_same_thread=False,
        )  # fmt: skip
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        conn.execute("PRAGMA synchronous = NORMAL")
        # Checkpoints fsync, which would stall the call whose commit crossed
        # SQLite's threshold: they run in `_background` instead.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        return conn

    def _drain_all(self) -> None:
        """Move every spooled record (this process's or another's) into the
        table, so that a query sees each acknowledged record."""
        try:
            while True:
                with self._write_lock:
                    writer = self._writer_connection()
                    if not self._retry(partial(drain, writer, DRAIN_CHUNK)):
                        return
        except (LedgerError, sqlite3.Error, OSError) as exc:
            raise as_ledger_error(self.path, "read usage records", exc) from None

    def _background_soon(self) -> None:
        """Wake the mover, starting it if need be (write lock held)."""
        if self._checkpointer is None or not self._checkpointer.is_alive():
            self._checkpointer = threading.Thread(
                target=self._background, name="palyra-ledger", daemon=True
            )
            self._checkpointer.start()
        self._wake.set()

    def _background(self) -> None:
        """Off the call path: move spooled records into the table shortly
        after they are written (a chunk per turn of the write lock, so calls
        never wait long), and checkpoint the WAL every `CHECKPOINT_EVERY`.

        PASSIVE checkpoints never block a writer or reader. A failure here
        only delays the move (every query moves what is spooled first) or
        lets the WAL grow until a later checkpoint: the writes themselves
        report theirs.
        """
        conn: sqlite3.Connection | None = None
        # The flag is read before each wait: a stop whose wake-up was cleared
        # below is seen here.
        while not self._stopping:
            self._wake.wait()
            if self._stopping:
                break
            time.sleep(DRAIN_DELAY)
            self._wake.clear()
            try:
                while not self._stopping:
                    with self._write_lock:
                        writer = self._writer_connection()
                        if not drain(writer, DRAIN_CHUNK):
                            break
                if self._since_checkpoint >= CHECKPOINT_EVERY:
                    self._since_checkpoint = 0
                    conn = conn or self._connect()
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except (LedgerError, sqlite3.Error, OSError):
                pass
        if conn is not None:
            conn.close()

    def _retry(self, action: Callable[[], T]) -> T:
        return retry(action, self.path, self.timeout)


def _rows(recs: list[UsageRecord]) -> list[Any]:
    for rec in recs:
        if not isinstance(rec, UsageRecord):
            raise TypeError(f"a ledger keeps UsageRecord, not {type(rec).__name__}")
    return [to_row(rec) for rec in recs]
