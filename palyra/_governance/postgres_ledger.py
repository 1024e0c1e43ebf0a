"""The usage ledger in a PostgreSQL database (psycopg 3), shared by every
process and host that names it: ``palyra[postgres]``.

The same contract as `SQLiteLedger` (one test suite holds all the ledgers to
it): a record is committed when `PostgresLedger.record` returns, ranges are
half-open in epoch milliseconds, ``totals`` groups in SQL (days in a zone by
the zone's offsets from Python's zoneinfo, as the other ledgers count them)
and sums costs exactly (NUMERIC).

Concurrency. Each thread takes a connection of a small pool
(`postgres_pool`), so writers and readers run side by side and PostgreSQL
orders them; a record is one INSERT in its own transaction, several records
of one ``record_many`` one transaction. There is no ``try_record_many``: a
network round trip is a wait, so the async path writes in a worker thread.

Deadlines. Connecting waits at most ``timeout`` seconds (libpq's
``connect_timeout``: whole seconds, 2 at least), a statement as long
(``statement_timeout``), and a thread waits as long for a free connection.

Schema. Numbered migrations (`postgres_schema`), run once per database
under an advisory lock, so that processes opening it at once migrate it
once; a newer schema than this palyra knows is refused with a `LedgerError`.

The DSN's password is in no repr, message, log or `health`: the ledger is
shown by its URL with the password as ``***`` (libpq's ``PGPASSWORD``,
``~/.pgpass`` or a service file keep it out of the DSN altogether).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .ledger import Page, Query, offset_segments
from .postgres_pool import Pool, Target
from .postgres_query import (
    RANGE,
    records_sql,
    slots_answer,
    slots_sql,
    totals_from,
    totals_sql,
)
from .postgres_schema import from_row, migrate, to_row
from .postgres_writes import insert_records, insert_run, prune_rows, select_runs
from .records import LedgerError, LedgerHealth, Totals, UsageRecord, epoch_ms

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["PostgresLedger"]

T = TypeVar("T")


class PostgresLedger:
    """Usage records in a PostgreSQL database, connected on first use.

    Constructing one does no I/O (it loads psycopg and parses the DSN); the
    first record written or query asked connects, and creates or migrates
    the ``palyra_*`` tables.

    Args:
        dsn: A ``postgresql://`` (or ``postgres://``) URL, or libpq's
            ``key=value`` string. Prefer leaving the password out of it
            (``PGPASSWORD``, ``~/.pgpass``, a service file); one in it is
            never shown.
        timeout: Seconds a connect, a statement, or a wait for a free
            connection may take before a `LedgerError`.
        pool_size: Connections kept at most; more threads at once wait.

    Raises:
        LedgerError: psycopg is not installed (``pip install
            'palyra[postgres]'``), or the DSN cannot be parsed.
    """

    def __init__(self, dsn: str, *, timeout: float = 5.0, pool_size: int = 4) -> None:
        if not isinstance(dsn, str) or not dsn.strip():
            raise TypeError("dsn is a postgresql:// URL or a libpq key=value string")
        if not timeout > 0 or not (isinstance(pool_size, int) and pool_size >= 1):
            raise ValueError("timeout is more than 0 and pool_size at least 1")
        self.timeout = float(timeout)
        self._target = Target(dsn)
        self._pool = Pool(self._target, pool_size, self.timeout)
        self._errors = (self._pool._psycopg.Error, OSError)
        self._schema_lock = threading.Lock()
        self._migrated = False
        self._stats_lock = threading.Lock()
        self._written = 0
        self._failed = 0
        self._ok = True
        self._last_error: str | None = None

    def __repr__(self) -> str:
        return f"PostgresLedger({self.url!r})"

    @property
    def url(self) -> str:
        """The database, as shown: the DSN with its password as ``***``."""
        return self._target.shown

    # The protocol

    def record(self, rec: UsageRecord) -> None:
        """Write ``rec``: committed when this returns.

        Raises:
            LedgerError: It could not be written (the server is down or
                refused, a timeout passed); `health` shows the failure too.
        """
        self.record_many([rec])

    def record_many(self, recs: list[UsageRecord]) -> None:
        """`record` for several records, in one transaction.

        Raises:
            LedgerError: They could not be written (none was).
        """
        for rec in recs:
            if not isinstance(rec, UsageRecord):
                raise TypeError(f"a ledger keeps UsageRecord, not {type(rec).__name__}")
        rows = [to_row(rec) for rec in recs]
        try:
            self._run("write a usage record", lambda conn: insert_records(conn, rows))
        except LedgerError as exc:
            self._count(len(rows), str(exc))
            raise
        self._count(len(rows), None)

    def records(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        page: Page | None = None,
        **filters: Any,
    ) -> list[UsageRecord]:
        """The matching records, oldest first (see `UsageLedger.records`)."""
        sql, params = records_sql(Query(since, until, filters), page or Page())
        return [from_row(row) for row in self._read(sql, params)]

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
        segments = self._segments(query) if "day" in query.by else [(0, 0)]
        rows = self._read(*totals_sql(query, segments))
        if slots_answer(query, segments):  # the totals a prune kept
            rows += self._read(*slots_sql(query, segments))
        return totals_from(query, rows)

    def health(self) -> LedgerHealth:
        """Whether the last write worked, the last failure, and the counts;
        ``path`` is the database's URL without its password."""
        with self._stats_lock:
            return LedgerHealth(
                ok=self._ok,
                path=self.url,
                last_error=self._last_error,
                failed_writes=self._failed,
                written=self._written,
            )

    def close(self) -> None:
        """Close the connections; the next use connects again."""
        self._pool.close()
        with self._schema_lock:
            self._migrated = False

    # Beyond the protocol: pruning and the scheduler's run records

    def prune(self, before: datetime, *, keep_totals: bool = False) -> int:
        """Delete the records of calls started before ``before`` (rounded
        down to a 15-minute slot, as SQLite's), and the run records that
        ended before it. With ``keep_totals`` the day totals of all records
        (``totals(by="day")`` unfiltered) keep counting them. How many usage
        records went.

        Raises:
            LedgerError: the database could not be written.
        """
        cutoff = epoch_ms(before)
        return self._run(
            "prune usage records", lambda conn: prune_rows(conn, cutoff, keep_totals)
        )

    def record_run_row(self, row: tuple[Any, ...], keep: int) -> None:
        """Keep a scheduler run record (`palyra._cron`; the columns of
        `postgres_writes.RUN_COLUMNS`), and the newest ``keep`` of its job."""
        self._run("write a run record", lambda conn: insert_run(conn, row, keep))

    def run_rows(self, job_id: str | None, limit: int) -> list[Any]:
        """The newest ``limit`` run records (of ``job_id``), newest first."""
        return self._read(*select_runs(job_id, limit))

    # Connections

    def _segments(self, query: Query) -> list[tuple[int, int]]:
        """The zone's UTC offsets over the records' range (a few a year)."""
        rows = self._read(RANGE, [])
        low, high = rows[0] if rows and rows[0][0] is not None else (0, 0)
        if query.since_ms is not None:
            low = max(low, query.since_ms)
        if query.until_ms is not None:
            high = max(low, min(high, query.until_ms))
        return offset_segments(int(low), int(high), query.zone)

    def _read(self, sql: str, params: list[Any]) -> list[Any]:
        return self._run(
            "read usage records",
            lambda conn: conn.execute(sql, params).fetchall(),
        )

    def _run(self, action: str, work: Callable[[Connection[Any]], T]) -> T:
        """``work`` on a pooled connection of a migrated database; any
        failure as a `LedgerError` naming the database."""

        def ready(conn: Connection[Any]) -> T:
            if not self._migrated:
                with self._schema_lock:
                    if not self._migrated:
                        migrate(conn, self.url)
                        self._migrated = True
            return work(conn)

        try:
            return self._pool.run(ready)
        except (LedgerError, *self._errors) as exc:
            error = self._target.error(action, exc)
        # Raised outside the except block: psycopg's error (whose connection
        # object could still tell the DSN) does not ride along as __context__.
        raise error

    def _count(self, n: int, error: str | None) -> None:
        with self._stats_lock:
            if error is None:
                self._written += n
                self._ok = True
                return
            self._failed += n
            self._ok = False
            self._last_error = error
