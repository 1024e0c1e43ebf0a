"""The SQLite ledger's schema: its numbered migrations and how a record
becomes a row and back.

Version n is reached by running ``MIGRATIONS[n]`` on version n - 1, the
version kept in ``PRAGMA user_version``: v1 is the ``usage`` table, v2 adds
the ``routing`` column and the indexes (epoch ms, provider and model, agent,
session), v3 the ``usage_slots`` table: the sums of each 15-minute slot of
``started_ms``, kept by a trigger in the INSERT's own transaction, so that
day totals read a few thousand rows rather than every record; v4 the spool,
v5 the scheduler's ``cron_runs``, v6 ``usage_groups``: the slots' sums per
provider, model, agent, status and currency. A change to
the schema is a new number here, never an edit of an old one: databases of
every older version are opened by the tests.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from .records import LedgerError, UsageRecord
from .records import epoch_ms as _ms

__all__ = [
    "COLUMNS",
    "E12",
    "INSERT",
    "MIGRATIONS",
    "READ",
    "SCHEMA_VERSION",
    "SLOT_MS",
    "from_row",
    "migrate",
    "to_row",
]

_V1_TABLE = """
CREATE TABLE usage (
    id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL, started_ms INTEGER NOT NULL,
    finished_at TEXT NOT NULL, finished_ms INTEGER NOT NULL,
    agent TEXT, session TEXT, principal TEXT, tags TEXT NOT NULL,
    provider TEXT NOT NULL, model TEXT NOT NULL, requested_model TEXT,
    auth_profile TEXT,
    input_uncached INTEGER NOT NULL, cache_read INTEGER NOT NULL,
    cache_write INTEGER NOT NULL, output INTEGER NOT NULL,
    reasoning INTEGER NOT NULL,
    cost_total TEXT, cost_e12 INTEGER, cost_exp INTEGER,
    unpriced INTEGER NOT NULL, estimated INTEGER NOT NULL,
    currency TEXT NOT NULL, latency_ms REAL NOT NULL, status TEXT NOT NULL,
    error_class TEXT, attempts INTEGER NOT NULL
)"""
_GROUP_KEYS = (
    "provider TEXT NOT NULL, model TEXT NOT NULL, agent TEXT NOT NULL,"
    " status TEXT NOT NULL, currency TEXT NOT NULL"
)
# One more record in a sums row (the column names bare: the row's own).
_ADD_SUMS = """calls = calls + 1,
    input_uncached = input_uncached + excluded.input_uncached,
    cache_read = cache_read + excluded.cache_read,
    cache_write = cache_write + excluded.cache_write,
    output = output + excluded.output,
    reasoning = reasoning + excluded.reasoning,
    unpriced = unpriced + excluded.unpriced,
    priced = priced + excluded.priced,
    cost_e12 = CASE WHEN abs(cost_e12) < 4000000000000000000
        AND abs(excluded.cost_e12) < 4000000000000000000
        THEN cost_e12 + excluded.cost_e12 END,
    cost_exp = min(coalesce(cost_exp, excluded.cost_exp),
        coalesce(excluded.cost_exp, cost_exp))"""
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (_V1_TABLE,),
    2: (
        "ALTER TABLE usage ADD COLUMN routing TEXT",
        "CREATE INDEX usage_started ON usage (started_ms)",
        "CREATE INDEX usage_provider_model ON usage (provider, model)",
        "CREATE INDEX usage_agent ON usage (agent)",
        "CREATE INDEX usage_session ON usage (session)",
    ),
    3: (
        """CREATE TABLE usage_slots (
            slot INTEGER PRIMARY KEY, calls INTEGER NOT NULL,
            input_uncached INTEGER NOT NULL, cache_read INTEGER NOT NULL,
            cache_write INTEGER NOT NULL, output INTEGER NOT NULL,
            reasoning INTEGER NOT NULL,
            unpriced INTEGER NOT NULL, priced INTEGER NOT NULL,
            cost_e12 INTEGER, cost_exp INTEGER
        )""",
        # cost_e12 turns NULL for good once a cost in it is inexact or the
        # sum nears 2^63: totals then add that slot's costs up in Python.
        """CREATE TRIGGER usage_slots_add AFTER INSERT ON usage BEGIN
            INSERT INTO usage_slots VALUES (
                NEW.started_ms / 900000, 1,
                NEW.input_uncached, NEW.cache_read, NEW.cache_write,
                NEW.output, NEW.reasoning,
                NEW.unpriced, NEW.cost_total IS NOT NULL,
                CASE WHEN NEW.cost_total IS NULL THEN 0 ELSE NEW.cost_e12 END,
                NEW.cost_exp
            ) ON CONFLICT (slot) DO UPDATE SET
                calls = calls + 1,
                input_uncached = input_uncached + excluded.input_uncached,
                cache_read = cache_read + excluded.cache_read,
                cache_write = cache_write + excluded.cache_write,
                output = output + excluded.output,
                reasoning = reasoning + excluded.reasoning,
                unpriced = unpriced + excluded.unpriced,
                priced = priced + excluded.priced,
                cost_e12 = CASE WHEN abs(cost_e12) < 4000000000000000000
                    AND abs(excluded.cost_e12) < 4000000000000000000
                    THEN cost_e12 + excluded.cost_e12 END,
                cost_exp = min(coalesce(cost_exp, excluded.cost_exp),
                    coalesce(excluded.cost_exp, cost_exp));
        END""",
        """INSERT INTO usage_slots SELECT started_ms / 900000, COUNT(*),
            SUM(input_uncached), SUM(cache_read), SUM(cache_write), SUM(output),
            SUM(reasoning), SUM(unpriced),
            SUM(cost_total IS NOT NULL),
            CASE WHEN SUM(cost_total IS NOT NULL AND cost_e12 IS NULL) = 0
                THEN SUM(cost_e12) END, MIN(cost_exp)
            FROM usage GROUP BY 1""",
    ),
    # Calls write to the spool (no index, no trigger: a third of the cost of
    # an INSERT into usage); a background thread and every query move its
    # rows into usage in batches (`drain`).
    4: ("CREATE TABLE usage_spool AS SELECT * FROM usage WHERE 0",),
    # The scheduler's run records (`palyra._cron`): a table of their own,
    # bounded per job by `sqlite_runs`.
    5: (
        """CREATE TABLE cron_runs (
            run_id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL,
            scheduled_ms INTEGER NOT NULL,
            started_ms INTEGER NOT NULL,
            ended_ms INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            error_type TEXT,
            error_message TEXT
        )""",
        "CREATE INDEX cron_runs_job ON cron_runs (job_id, ended_ms)",
        "CREATE INDEX cron_runs_ended ON cron_runs (ended_ms)",
    ),
    # The sums of each 15-minute slot per provider, model, agent ('' for
    # none: a key column cannot be NULL), status and currency, kept like
    # usage_slots: totals by those keys over whole slots read these rows
    # instead of every record (the console's overview and usage pages).
    6: (
        f"""CREATE TABLE usage_groups (
            slot INTEGER NOT NULL, {_GROUP_KEYS},
            calls INTEGER NOT NULL,
            input_uncached INTEGER NOT NULL, cache_read INTEGER NOT NULL,
            cache_write INTEGER NOT NULL, output INTEGER NOT NULL,
            reasoning INTEGER NOT NULL,
            unpriced INTEGER NOT NULL, priced INTEGER NOT NULL,
            cost_e12 INTEGER, cost_exp INTEGER,
            PRIMARY KEY (slot, provider, model, agent, status, currency)
        ) WITHOUT ROWID""",
        f"""CREATE TRIGGER usage_groups_add AFTER INSERT ON usage BEGIN
            INSERT INTO usage_groups VALUES (
                NEW.started_ms / 900000, NEW.provider, NEW.model,
                coalesce(NEW.agent, ''), NEW.status, NEW.currency, 1,
                NEW.input_uncached, NEW.cache_read, NEW.cache_write,
                NEW.output, NEW.reasoning,
                NEW.unpriced, NEW.cost_total IS NOT NULL,
                CASE WHEN NEW.cost_total IS NULL THEN 0 ELSE NEW.cost_e12 END,
                NEW.cost_exp
            ) ON CONFLICT (slot, provider, model, agent, status, currency)
            DO UPDATE SET {_ADD_SUMS};
        END""",  # noqa: S608 (fixed text)
        """INSERT INTO usage_groups SELECT started_ms / 900000, provider, model,
            coalesce(agent, ''), status, currency, COUNT(*),
            SUM(input_uncached), SUM(cache_read), SUM(cache_write), SUM(output),
            SUM(reasoning), SUM(unpriced),
            SUM(cost_total IS NOT NULL),
            CASE WHEN SUM(cost_total IS NOT NULL AND cost_e12 IS NULL) = 0
                THEN SUM(cost_e12) END, MIN(cost_exp)
            FROM usage GROUP BY 1, 2, 3, 4, 5, 6""",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)
SLOT_MS = 900_000  # usage_slots: 15 minutes, every zone offset a multiple

COLUMNS = (  # noqa: SIM905 (a list literal would take 30 lines)
    "id started_at started_ms finished_at finished_ms agent session principal"
    " tags provider model requested_model auth_profile input_uncached"
    " cache_read cache_write output reasoning cost_total cost_e12 cost_exp"
    " unpriced estimated currency latency_ms status error_class attempts routing"
).split()
# SQL is built from the fixed column names above and from BYCOLUMNS and
# FILTERCOLUMNS (never from a caller's text); values are always bound.
INSERT = (
    f"INSERT INTO usage ({', '.join(COLUMNS)})"  # noqa: S608
    f" VALUES ({', '.join('?' for _ in COLUMNS)})"
)
SPOOL_INSERT = INSERT.replace("INTO usage ", "INTO usage_spool ", 1)
_CHUNK_END = (
    "SELECT MAX(rowid) FROM (SELECT rowid FROM usage_spool ORDER BY rowid LIMIT ?)"
)
_MOVE = (
    f"INSERT OR IGNORE INTO usage ({', '.join(COLUMNS)})"  # noqa: S608
    f" SELECT {', '.join(COLUMNS)} FROM usage_spool WHERE rowid <= ?"
)
_FORGET = "DELETE FROM usage_spool WHERE rowid <= ?"
READ = (  # noqa: SIM905
    "id started_at finished_at agent session principal tags provider model"
    " requested_model auth_profile input_uncached cache_read cache_write output"
    " reasoning cost_total unpriced estimated currency latency_ms status"
    " error_class attempts routing"
).split()
E12 = Decimal(10) ** 12
_INT64 = 2**63


def drain(conn: sqlite3.Connection, limit: int) -> int:
    """Move up to ``limit`` spooled records into ``usage``, in one
    transaction (so no record is ever in both, or in neither, whoever else
    drains at the same time); how many were moved."""
    end = conn.execute(_CHUNK_END, (limit,)).fetchone()[0]
    if end is None:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        moved = conn.execute(_MOVE, (end,)).rowcount
        conn.execute(_FORGET, (end,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return max(moved, 0)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to `SCHEMA_VERSION`, one numbered step at a time."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")  # re-read under the write lock
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"the usage ledger {path} has schema version {version}, newer"
                f" than this palyra's {SCHEMA_VERSION}: upgrade palyra"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # not when BEGIN itself was refused as busy
            conn.execute("ROLLBACK")
        raise


def to_row(rec: UsageRecord) -> tuple[Any, ...]:
    e12 = exponent = None
    if rec.cost_total is not None:
        exponent = int(rec.cost_total.as_tuple().exponent)
        scaled = rec.cost_total * E12
        if exponent >= -12 and abs(scaled) < _INT64:
            e12 = int(scaled)
    cost = rec.cost_total
    # In COLUMNS' order, spelled out: this runs once per call, on its path.
    return (
        rec.id,
        rec.started_at.isoformat(),
        _ms(rec.started_at),
        rec.finished_at.isoformat(),
        _ms(rec.finished_at),
        rec.agent,
        rec.session,
        rec.principal,
        json.dumps(rec.tags, sort_keys=True) if rec.tags else "{}",
        rec.provider,
        rec.model,
        rec.requested_model,
        rec.auth_profile,
        rec.input_uncached,
        rec.cache_read,
        rec.cache_write,
        rec.output,
        rec.reasoning,
        None if cost is None else str(cost),
        e12,
        exponent,
        int(rec.unpriced),
        int(rec.estimated),
        rec.currency,
        rec.latency_ms,
        rec.status,
        rec.error_class,
        rec.attempts,
        rec.routing,
    )


def from_row(row: tuple[Any, ...]) -> UsageRecord:
    values = dict(zip(READ, row, strict=True))
    values["started_at"] = datetime.fromisoformat(values["started_at"])
    values["finished_at"] = datetime.fromisoformat(values["finished_at"])
    values["tags"] = json.loads(values["tags"])
    cost = values["cost_total"]
    values["cost_total"] = None if cost is None else Decimal(cost)
    values["unpriced"] = bool(values["unpriced"])
    values["estimated"] = bool(values["estimated"])
    return UsageRecord(**values)
