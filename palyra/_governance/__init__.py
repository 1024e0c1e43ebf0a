"""Usage governance: what a call cost, where usage is kept, what it may spend.

What it is for: prices and their arithmetic (``Decimal`` throughout; an
unpriced model costs None, never $0), usage normalised across providers
(uncached input, cache read, cache write, output, reasoning), the durable
usage ledger (SQLite, PostgreSQL, or memory) and budgets (issue 11). Like
auth, each part is a pure core with thin edges; it joins a call through the
core's hooks, wired by ``palyra._client``.

May import: the leaves (``_exceptions``, ``_utils``), ``_config``, ``_wire``,
``_tokens`` and the standard library (``sqlite3``, ``zoneinfo``, ``decimal``);
psycopg 3 (the ``postgres`` extra) only lazily, inside the ``postgres_*``
modules' functions, when a `PostgresLedger` is made. Never the core's
internals nor another subsystem.

Exports to the rest of palyra: what is listed in ``__all__`` below.
"""

from typing import TYPE_CHECKING

from .budget_policy import BudgetAlert, BudgetPolicy, BudgetStatus, Party
from .budget_service import AlertLog, BudgetEngine, BudgetService
from .budget_state import ScopeState, load_spent, refusal, send_alert, status_of
from .budgets import Budgets, Reservation
from .default_prices import DEFAULT_PRICES, SNAPSHOT_DATE
from .held import AsyncRecordWriter, HeldEnding, hold, release, writer_for
from .ledger import MemoryLedger, Page, UsageLedger
from .metering import LedgerSlot, Meter
from .prices import PriceBook, load_price_file
from .pricing import (
    Cost,
    PriceEntry,
    PriceTable,
    cost_of,
    entry_from_config,
    estimated_total,
    estimated_units,
)
from .records import LedgerError, LedgerHealth, Totals, UsageRecord, new_record_id
from .savings import RoutingSavings
from .service import UsageRun, UsageService
from .usage import NormalizedUsage, from_anthropic, from_embeddings, from_openai
from .windows import Window

if TYPE_CHECKING:
    from .postgres_ledger import PostgresLedger
    from .sqlite_ledger import SQLiteLedger

__all__ = [
    "DEFAULT_PRICES",
    "SNAPSHOT_DATE",
    "AlertLog",
    "AsyncRecordWriter",
    "BudgetAlert",
    "BudgetEngine",
    "BudgetPolicy",
    "BudgetService",
    "BudgetStatus",
    "Budgets",
    "Cost",
    "HeldEnding",
    "LedgerError",
    "LedgerHealth",
    "LedgerSlot",
    "MemoryLedger",
    "Meter",
    "NormalizedUsage",
    "Page",
    "Party",
    "PostgresLedger",
    "PriceBook",
    "PriceEntry",
    "PriceTable",
    "Reservation",
    "RoutingSavings",
    "SQLiteLedger",
    "ScopeState",
    "Totals",
    "UsageLedger",
    "UsageRecord",
    "UsageRun",
    "UsageService",
    "Window",
    "cost_of",
    "entry_from_config",
    "estimated_total",
    "estimated_units",
    "from_anthropic",
    "from_embeddings",
    "from_openai",
    "hold",
    "load_price_file",
    "load_spent",
    "new_record_id",
    "refusal",
    "release",
    "send_alert",
    "status_of",
    "writer_for",
]


def __getattr__(name: str) -> object:
    # SQLiteLedger loads sqlite3: only when asked for (a client makes its
    # default ledger on its first record), so `Palyra(...)` loads neither.
    if name == "SQLiteLedger":
        from .sqlite_ledger import SQLiteLedger

        return SQLiteLedger
    if name == "PostgresLedger":  # psycopg itself loads when one is made
        from .postgres_ledger import PostgresLedger

        return PostgresLedger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
