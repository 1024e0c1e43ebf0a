"""What `PostgresLedger` writes, each in one transaction: records, a prune
(with the pruned records' 15-minute sums when their totals are kept), and
the scheduler's run records (``palyra_cron_runs``, bounded per job).

The SQL is built from the fixed column names here, nothing of a caller's;
values are bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .postgres_schema import INSERT, SLOT_MS

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["RUN_COLUMNS", "insert_records", "insert_run", "prune_rows", "select_runs"]

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
_RUN_INSERT = (
    f"INSERT INTO palyra_cron_runs ({', '.join(RUN_COLUMNS)})"  # noqa: S608
    f" VALUES ({', '.join('%s' for _ in RUN_COLUMNS)}) ON CONFLICT (run_id)"
    f" DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in RUN_COLUMNS[1:])}"
)
# The job's rows past the newest `keep`: forgotten in the insert's transaction.
_RUN_FORGET = """DELETE FROM palyra_cron_runs WHERE job_id = %s AND run_id NOT IN (
    SELECT run_id FROM palyra_cron_runs WHERE job_id = %s
    ORDER BY ended_ms DESC, run_id COLLATE "C" DESC LIMIT %s)"""
_RUN_SELECT = f"SELECT {', '.join(RUN_COLUMNS)} FROM palyra_cron_runs"  # noqa: S608
_RUN_ORDER = ' ORDER BY ended_ms DESC, started_ms DESC, run_id COLLATE "C" LIMIT %s'

_SLOT_SUMS = ", ".join(
    f"{c} = palyra_usage_slots.{c} + excluded.{c}"
    for c in (  # noqa: SIM905 (a list literal would take 9 lines)
        "calls input_uncached cache_read cache_write output reasoning"
        " unpriced priced cost_total"
    ).split()
)
# The deleted rows are the ones summed (DELETE ... RETURNING): a record
# written meanwhile is either deleted and counted, or neither.
_PRUNE_KEEPING = f"""WITH gone AS (
    DELETE FROM palyra_usage WHERE started_ms < %s
    RETURNING started_ms, input_uncached, cache_read, cache_write, output,
        reasoning, unpriced, cost_total, cost_exp
), kept AS (
    INSERT INTO palyra_usage_slots
    SELECT floor(started_ms / {SLOT_MS}.0)::bigint, count(*), sum(input_uncached),
        sum(cache_read), sum(cache_write), sum(output), sum(reasoning),
        count(*) FILTER (WHERE unpriced), count(cost_total),
        coalesce(sum(cost_total), 0), min(cost_exp)
    FROM gone GROUP BY 1
    ON CONFLICT (slot) DO UPDATE SET {_SLOT_SUMS},
        cost_exp = least(palyra_usage_slots.cost_exp, excluded.cost_exp)
    RETURNING 1
) SELECT count(*) FROM gone"""  # noqa: S608


def insert_records(conn: Connection[Any], rows: list[tuple[Any, ...]]) -> None:
    """One transaction for ``rows``: all of them are committed, or none."""
    if len(rows) == 1:
        conn.execute(INSERT, rows[0])  # autocommit: its own transaction
        return
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(INSERT, rows)


def prune_rows(conn: Connection[Any], before_ms: int, keep_totals: bool) -> int:
    """Delete the records of whole 15-minute slots before ``before_ms`` (with
    ``keep_totals``, adding their sums to the kept slots; else forgetting
    the kept slots there too) and the run records that ended before it, in
    one transaction; how many usage records went."""
    cutoff = before_ms // SLOT_MS * SLOT_MS
    with conn.transaction():
        if keep_totals:
            row = conn.execute(_PRUNE_KEEPING, [cutoff]).fetchone()
            gone = 0 if row is None else int(row[0])
        else:
            deleted = conn.execute(
                "DELETE FROM palyra_usage WHERE started_ms < %s", [cutoff]
            )
            gone = max(deleted.rowcount, 0)
            conn.execute(
                "DELETE FROM palyra_usage_slots WHERE slot < %s", [cutoff // SLOT_MS]
            )
        conn.execute("DELETE FROM palyra_cron_runs WHERE ended_ms < %s", [before_ms])
    return gone


def insert_run(conn: Connection[Any], row: tuple[Any, ...], keep: int) -> None:
    """Keep ``row`` and forget its job's rows past the newest ``keep``, in
    one transaction."""
    with conn.transaction():
        conn.execute(_RUN_INSERT, row)
        conn.execute(_RUN_FORGET, (row[1], row[1], keep))


def select_runs(job_id: str | None, limit: int) -> tuple[str, list[Any]]:
    """The query (and its parameters) of the newest ``limit`` rows."""
    if job_id is None:
        return _RUN_SELECT + _RUN_ORDER, [limit]
    return _RUN_SELECT + " WHERE job_id = %s" + _RUN_ORDER, [job_id, limit]
