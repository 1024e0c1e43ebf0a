"""Usage governance: what a call cost, where usage is kept, what it may spend.

What it is for: prices and their arithmetic (``Decimal`` throughout; an
unpriced model costs None, never $0), usage normalised across providers
(uncached input, cache read, cache write, output, reasoning), the durable
usage ledger (SQLite, or memory) and budgets (issue 11). Like auth, each part
is a pure core with thin edges; it joins a call through the core's hooks,
wired by ``palyra._client``.

May import: the leaves (``_exceptions``, ``_utils``), ``_config``, ``_wire``,
``_tokens`` and the standard library (``sqlite3``, ``zoneinfo``, ``decimal``).
Never the core's internals nor another subsystem.

Exports to the rest of palyra: what is listed in ``__all__`` below.
"""

from .budget_policy import BudgetAlert, BudgetPolicy, BudgetStatus, Party
from .budgets import Budgets, Reservation
from .default_prices import DEFAULT_PRICES, SNAPSHOT_DATE
from .ledger import MemoryLedger, UsageLedger
from .pricing import Cost, PriceEntry, PriceTable, cost_of, entry_from_config
from .records import LedgerError, LedgerHealth, Totals, UsageRecord, new_record_id
from .sqlite_ledger import SQLiteLedger
from .usage import NormalizedUsage, from_anthropic, from_embeddings, from_openai
from .windows import Window

__all__ = [
    "DEFAULT_PRICES",
    "SNAPSHOT_DATE",
    "BudgetAlert",
    "BudgetPolicy",
    "BudgetStatus",
    "Budgets",
    "Cost",
    "LedgerError",
    "LedgerHealth",
    "MemoryLedger",
    "NormalizedUsage",
    "Party",
    "PriceEntry",
    "PriceTable",
    "Reservation",
    "SQLiteLedger",
    "Totals",
    "UsageLedger",
    "UsageRecord",
    "Window",
    "cost_of",
    "entry_from_config",
    "from_anthropic",
    "from_embeddings",
    "from_openai",
    "new_record_id",
]
