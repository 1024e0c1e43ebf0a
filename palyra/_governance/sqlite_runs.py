"""The scheduler's run records in the ledger's SQLite file (``cron_runs``,
schema v5): rows in, rows out, bounded per job. The scheduler (`palyra._cron`)
turns its records into these rows and back; this module knows only SQL."""

from __future__ import annotations

import sqlite3
from typing import Any

__all__ = ["RUN_COLUMNS", "insert_run", "select_runs"]

RUN_COLUMNS = (
    "run_id",
    "job_id",
    "scheduled_ms",
    "started_ms",
    "ended_ms",
    "outcome",
    "attempt",
    "error_type",
    "error_message",
)
# Built from the constant column names above: nothing of a caller's.
_INSERT = (
    f"INSERT OR REPLACE INTO cron_runs ({', '.join(RUN_COLUMNS)})"  # noqa: S608
    f" VALUES ({', '.join('?' for _ in RUN_COLUMNS)})"
)
# The job's rows past the newest `keep`: forgotten in the insert's transaction.
_FORGET = """DELETE FROM cron_runs WHERE job_id = ? AND run_id NOT IN (
    SELECT run_id FROM cron_runs WHERE job_id = ?
    ORDER BY ended_ms DESC, run_id DESC LIMIT ?)"""
_SELECT = f"SELECT {', '.join(RUN_COLUMNS)} FROM cron_runs"  # noqa: S608
_ORDER = " ORDER BY ended_ms DESC, started_ms DESC, run_id LIMIT ?"


def insert_run(conn: sqlite3.Connection, row: tuple[Any, ...], keep: int) -> None:
    """Keep ``row`` and forget its job's rows past the newest ``keep``, in
    one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_INSERT, row)
        conn.execute(_FORGET, (row[1], row[1], keep))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def select_runs(job_id: str | None, limit: int) -> tuple[str, list[Any]]:
    """The query (and its parameters) of the newest ``limit`` rows."""
    if job_id is None:
        return _SELECT + _ORDER, [limit]
    return _SELECT + " WHERE job_id = ?" + _ORDER, [job_id, limit]
