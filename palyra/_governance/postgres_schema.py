"""The PostgreSQL ledger's schema: its numbered migrations and how a record
becomes a row and back.

Version n is reached by running ``MIGRATIONS[n]`` on version n - 1; the
version is the one row of ``palyra_schema``, absent in a database palyra has
never opened (version 0). v1 is ``palyra_usage`` with its indexes and
``palyra_usage_slots`` (the 15-minute sums of records pruned with their
totals kept), v2 the scheduler's ``palyra_cron_runs``. A change to the schema
is a new number here, never an edit of an old one: the tests open databases
of every older version.

The tables share the database with whatever else lives there, hence the
``palyra_`` prefix; they go to the first schema of the ``search_path``.
Costs are ``NUMERIC`` (exact, and summed exactly by SQL) with the Decimal's
exponent beside it, so that a cost reads back as the very Decimal written.
"""

from __future__ import annotations

from decimal import Context, Decimal
from typing import TYPE_CHECKING, Any

from .records import LedgerError, UsageRecord, epoch_ms

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = [
    "INSERT",
    "MIGRATIONS",
    "READ",
    "SCHEMA_VERSION",
    "SLOT_MS",
    "exact_cost",
    "from_row",
    "migrate",
    "to_row",
]

SLOT_MS = 900_000  # 15 minutes: every zone's offsets are multiples of it
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE palyra_usage (
            id TEXT PRIMARY KEY,
            started_at TIMESTAMPTZ NOT NULL, started_ms BIGINT NOT NULL,
            finished_at TIMESTAMPTZ NOT NULL, finished_ms BIGINT NOT NULL,
            agent TEXT, session TEXT, principal TEXT, tags JSONB NOT NULL,
            provider TEXT NOT NULL, model TEXT NOT NULL, requested_model TEXT,
            auth_profile TEXT,
            input_uncached BIGINT NOT NULL, cache_read BIGINT NOT NULL,
            cache_write BIGINT NOT NULL, output BIGINT NOT NULL,
            reasoning BIGINT NOT NULL,
            cost_total NUMERIC, cost_exp INTEGER,
            unpriced BOOLEAN NOT NULL, estimated BOOLEAN NOT NULL,
            currency TEXT NOT NULL, latency_ms DOUBLE PRECISION NOT NULL,
            status TEXT NOT NULL, error_class TEXT, attempts INTEGER NOT NULL,
            routing TEXT
        )""",
        "CREATE INDEX palyra_usage_started ON palyra_usage (started_ms)",
        "CREATE INDEX palyra_usage_provider_model ON palyra_usage (provider, model)",
        "CREATE INDEX palyra_usage_agent ON palyra_usage (agent)",
        "CREATE INDEX palyra_usage_session ON palyra_usage (session)",
        # Filled only by a prune that keeps the totals (never on the write
        # path, where one hot row per slot would serialise every writer).
        """CREATE TABLE palyra_usage_slots (
            slot BIGINT PRIMARY KEY, calls BIGINT NOT NULL,
            input_uncached BIGINT NOT NULL, cache_read BIGINT NOT NULL,
            cache_write BIGINT NOT NULL, output BIGINT NOT NULL,
            reasoning BIGINT NOT NULL, unpriced BIGINT NOT NULL,
            priced BIGINT NOT NULL, cost_total NUMERIC NOT NULL,
            cost_exp INTEGER
        )""",
    ),
    2: (
        """CREATE TABLE palyra_cron_runs (
            run_id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL,
            scheduled_ms BIGINT NOT NULL,
            started_ms BIGINT NOT NULL,
            ended_ms BIGINT NOT NULL,
            outcome TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            error_type TEXT,
            error_message TEXT
        )""",
        "CREATE INDEX palyra_cron_runs_job ON palyra_cron_runs (job_id, ended_ms)",
        "CREATE INDEX palyra_cron_runs_ended ON palyra_cron_runs (ended_ms)",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)
# Migrations of one database run one at a time, whichever process opens it:
# a transaction-scoped advisory lock on this (arbitrary, fixed) key.
_MIGRATION_LOCK = 0x70616C797261  # "palyra"

COLUMNS = (  # noqa: SIM905 (a list literal would take 30 lines)
    "id started_at started_ms finished_at finished_ms agent session principal"
    " tags provider model requested_model auth_profile input_uncached"
    " cache_read cache_write output reasoning cost_total cost_exp"
    " unpriced estimated currency latency_ms status error_class attempts routing"
).split()
# Built from the fixed names above, never from a caller's text. A record is
# inserted once: a write retried after its connection broke (the commit may
# have reached the server) keeps the first.
INSERT = (
    f"INSERT INTO palyra_usage ({', '.join(COLUMNS)})"  # noqa: S608
    f" VALUES ({', '.join('%s' for _ in COLUMNS)}) ON CONFLICT (id) DO NOTHING"
)
READ = (  # noqa: SIM905
    "id started_at finished_at agent session principal tags provider model"
    " requested_model auth_profile input_uncached cache_read cache_write output"
    " reasoning cost_total cost_exp unpriced estimated currency latency_ms status"
    " error_class attempts routing"
).split()


def migrate(conn: Connection[Any], where: str) -> None:
    """Bring the schema to `SCHEMA_VERSION`, one numbered step at a time, in
    one transaction (DDL is transactional in PostgreSQL: all or nothing)."""
    if _version(conn, where) == SCHEMA_VERSION:
        return  # no lock and no DDL: a role that may only read and write
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
        conn.execute("CREATE TABLE IF NOT EXISTS palyra_schema (version INTEGER)")
        row = conn.execute("SELECT version FROM palyra_schema").fetchone()
        version = 0 if row is None else int(row[0])
        _refuse_newer(version, where)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO palyra_schema VALUES (%s)", [SCHEMA_VERSION])
        else:
            conn.execute("UPDATE palyra_schema SET version = %s", [SCHEMA_VERSION])


def _version(conn: Connection[Any], where: str) -> int:
    """The database's schema version, read without a lock (0: none yet)."""
    found = conn.execute("SELECT to_regclass('palyra_schema') IS NOT NULL")
    row = found.fetchone()
    if row is None or not row[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM palyra_schema").fetchone()
    version = 0 if row is None or row[0] is None else int(row[0])
    _refuse_newer(version, where)
    return version


def _refuse_newer(version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"the usage ledger {where} has schema version {version}, newer"
            f" than this palyra's {SCHEMA_VERSION}: upgrade palyra"
        )


def to_row(rec: UsageRecord) -> tuple[Any, ...]:
    """``rec`` as the values of `INSERT`, in its column order."""
    cost = rec.cost_total
    exponent = None if cost is None else int(cost.as_tuple().exponent)
    return (
        rec.id,
        rec.started_at,
        epoch_ms(rec.started_at),
        rec.finished_at,
        epoch_ms(rec.finished_at),
        rec.agent,
        rec.session,
        rec.principal,
        rec.tags,  # JSONB: the pool's connections dump a dict as JSONB
        rec.provider,
        rec.model,
        rec.requested_model,
        rec.auth_profile,
        rec.input_uncached,
        rec.cache_read,
        rec.cache_write,
        rec.output,
        rec.reasoning,
        cost,
        exponent,
        rec.unpriced,
        rec.estimated,
        rec.currency,
        rec.latency_ms,
        rec.status,
        rec.error_class,
        rec.attempts,
        rec.routing,
    )


def from_row(row: tuple[Any, ...]) -> UsageRecord:
    """A row of `READ`'s columns as the record it was."""
    values = dict(zip(READ, row, strict=True))
    values["cost_total"] = exact_cost(values["cost_total"], values.pop("cost_exp"))
    return UsageRecord(**values)


def exact_cost(value: Decimal | None, exponent: int | None) -> Decimal | None:
    """A NUMERIC as the Decimal it was written as (or the sum Python's
    addition would give): NUMERIC keeps a negative exponent as its scale, but
    writes ``1E+2`` as ``100``; the exponent puts it back."""
    if value is None or exponent is None or exponent <= 0:
        return value
    digits = len(value.as_tuple().digits)
    return value.quantize(Decimal(1).scaleb(exponent), context=Context(prec=digits))
