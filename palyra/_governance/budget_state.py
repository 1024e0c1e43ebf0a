"""The state of one budget for one scope value in one window, and its
spent-to-date read from the usage ledger.

`ScopeState` holds what is spent and reserved, under a lock of its own ("one
lock per budget scope"), so that calls for different agents never wait on
each other. The engine (`palyra._governance.budgets`) decides; this module
only keeps the numbers and loads them.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime
from decimal import Decimal

from .budget_policy import BudgetPolicy
from .ledger import UsageLedger
from .records import UsageRecord

__all__ = ["ScopeState", "load_spent"]

_ZERO = Decimal(0)


class ScopeState:
    """Spent and reserved amounts of one (policy, scope value, window).

    Every attribute but ``lock``, ``start``, ``end``, ``policy`` and
    ``value`` is read and written under ``lock``. A rolling window keeps its
    spending as a time-ordered deque of ``(at, amount)`` that ages out.
    """

    __slots__ = (
        "duration",
        "end",
        "entries",
        "fired",
        "in_flight",
        "lock",
        "policy",
        "reserved",
        "spent",
        "start",
        "value",
    )

    def __init__(
        self,
        policy: BudgetPolicy,
        value: str,
        start: datetime | None,
        end: datetime | None,
        spent: Decimal,
        entries: deque[tuple[datetime, Decimal]] | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.policy = policy
        self.value = value
        self.start = start  # calendar bounds; None for lifetime and rolling
        self.end = end
        self.spent = spent
        self.entries = entries
        self.duration = policy.window.duration  # a rolling window's length
        self.reserved = _ZERO
        self.in_flight = 0
        self.fired: set[Decimal] = set()  # alert thresholds already sent

    def __repr__(self) -> str:
        return (
            f"ScopeState({self.policy.id!r}, {self.value!r}, start={self.start},"
            f" spent={self.spent}, reserved={self.reserved})"
        )

    def covers(self, now: datetime) -> bool:
        """Whether ``now`` falls in this state's window."""
        end = self.end
        if end is None:
            return True
        start = self.start
        return now < end and (start is None or start <= now)

    def spent_at(self, now: datetime) -> Decimal:
        """Spent in the window as of ``now`` (ages a rolling window out)."""
        entries, duration = self.entries, self.duration
        if entries is not None and duration is not None:
            cutoff = now - duration
            while entries and entries[0][0] < cutoff:
                self.spent -= entries.popleft()[1]
            if not entries:
                self.spent = _ZERO  # no drift from adding and taking away
        return self.spent

    def add(self, amount: Decimal, now: datetime) -> None:
        """Count a settled ``amount``, at ``now`` for a rolling window."""
        self.spent += amount
        if self.entries is not None and amount:
            self.entries.append((now, amount))

    def window_start(self, now: datetime) -> datetime | None:
        """Start of the window as of ``now``."""
        duration = self.duration
        return self.start if duration is None else now - duration

    def resets_at(self) -> datetime | None:
        """When the window ends; for a rolling one, when its oldest spending
        ages out (None when it holds none)."""
        if self.entries is not None and self.duration is not None:
            return self.entries[0][0] + self.duration if self.entries else None
        return self.end

    def idle(self) -> bool:
        """Nothing reserved and nothing in flight: safe to forget."""
        return self.in_flight == 0 and not self.reserved

    def due_alerts(self, now: datetime) -> list[Decimal]:
        """The thresholds passed and not yet sent, marked sent.

        A rolling window re-arms a threshold once its spending ages back
        under it; a calendar or lifetime window sends each one once.
        """
        limit = self.policy.alert_limit
        if limit is None:
            return []
        spent = self.spent_at(now)
        due = []
        for fraction in self.policy.alert_at:
            passed = spent >= fraction * limit
            if passed and fraction not in self.fired:
                self.fired.add(fraction)
                due.append(fraction)
            elif not passed and self.entries is not None:
                self.fired.discard(fraction)
        return due


def load_spent(
    ledger: UsageLedger | None,
    policy: BudgetPolicy,
    value: str,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
) -> tuple[Decimal, deque[tuple[datetime, Decimal]] | None]:
    """What the ledger holds against ``policy`` for ``value`` in the window:
    the sum, and for a rolling window the records' ``(started_at, amount)``.

    Unpriced records count 0 against a usd budget (even with ``estimate``:
    their price is not known here).

    Raises:
        LedgerError: The ledger could not be read.
    """
    duration = policy.window.duration
    filters = policy.filters(value)
    if duration is not None:
        entries: deque[tuple[datetime, Decimal]] = deque()
        if ledger is not None:
            for rec in ledger.records(since=now - duration, **filters):
                amount = _record_amount(policy, rec)
                if amount:
                    entries.append((rec.started_at, amount))
        return sum((amount for _, amount in entries), _ZERO), entries
    if ledger is None:
        return _ZERO, None
    spent = _ZERO
    for row in ledger.totals(by="currency", since=start, until=end, **filters):
        if policy.metric == "tokens":
            tokens = row.input_uncached + row.cache_read + row.cache_write + row.output
            spent += tokens
        elif row.cost_total is not None:
            spent += row.cost_total
    return spent, None


def _record_amount(policy: BudgetPolicy, rec: UsageRecord) -> Decimal:
    if policy.metric == "tokens":
        return Decimal(
            rec.input_uncached + rec.cache_read + rec.cache_write + rec.output
        )
    return rec.cost_total if rec.cost_total is not None else _ZERO
