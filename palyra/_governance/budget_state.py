"""The state of one budget for one scope value in one window, its
spent-to-date read from the usage ledger, and what is reported from it.

`ScopeState` holds what is spent and reserved, under a lock of its own ("one
lock per budget scope"), so that calls for different agents never wait on
each other. The engine (`palyra._governance.budgets`) decides; this module
keeps the numbers, loads them, and words the refusals, alerts and statuses.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from .._exceptions import BudgetExceededError
from .budget_policy import BudgetAlert, BudgetPolicy, BudgetStatus
from .ledger import UsageLedger
from .records import UsageRecord

__all__ = [
    "ScopeState",
    "alerts_of",
    "load_spent",
    "refresh",
    "refusal",
    "send_alert",
    "status_of",
]

logger = logging.getLogger("palyra")

_ZERO = Decimal(0)


class ScopeState:
    """Spent and reserved amounts of one (policy, scope value, window).

    Every attribute but ``lock``, ``start``, ``end``, ``policy`` and
    ``value`` is read and written under ``lock``. A rolling window keeps its
    spending as a time-ordered deque of ``(at, amount)`` that ages out: the
    ledger's records at their start, settled calls at their settle (a little
    later than the record's start, so they age out a little later: the
    cautious side).
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


def refresh(
    state: ScopeState,
    spent: Decimal,
    entries: deque[tuple[datetime, Decimal]] | None,
    now: datetime,
) -> list[Decimal]:
    """Bring ``state`` up to what the ledger holds (``spent``, ``entries``:
    `load_spent`'s answer, which counts other processes' calls too), never
    below what this process counted; the alert thresholds now due."""
    with state.lock:
        if spent > state.spent_at(now):
            state.spent = spent
            if state.entries is not None and entries is not None:
                state.entries = entries
        return state.due_alerts(now)


def _record_amount(policy: BudgetPolicy, rec: UsageRecord) -> Decimal:
    if policy.metric == "tokens":
        return Decimal(
            rec.input_uncached + rec.cache_read + rec.cache_write + rec.output
        )
    return rec.cost_total if rec.cost_total is not None else _ZERO


def refusal(
    state: ScopeState,
    now: datetime,
    reason: str,
    amount: Decimal | None,
    where: tuple[str, str],
    detail: str = "",
) -> BudgetExceededError:
    """The error refusing a call (``state.lock`` held), in one sentence:
    which budget, for whom, over what window, why, and when it resets (in
    the window's zone)."""
    policy = state.policy
    spent, reserved, resets = state.spent_at(now), state.reserved, state.resets_at()
    who = (
        "global" if policy.scope == "global" else f"per {policy.scope}={state.value!r}"
    )
    head = f"budget {policy.id!r} ({policy.metric} {who}, {policy.window.describe()})"
    show = _dollars if policy.metric == "usd" else str
    limit = "no hard limit" if policy.hard_limit is None else show(policy.hard_limit)
    if reason == "hard_limit":
        body = (
            f"spent {show(spent)} + reserved {show(reserved)} + this call's worst"
            f" case {show(amount or 0)} would pass the hard limit {limit}"
        )
    elif reason == "unpriced":
        body = (
            "the model has no price and this budget blocks unpriced calls"
            f" (unpriced = 'block'; spent {show(spent)} of {limit})"
        )
    else:
        body = (
            "the usage ledger is unavailable and this budget blocks calls then"
            " (on_ledger_error = 'block')" + (f": {detail}" if detail else "")
        )
    when = (
        resets.astimezone(ZoneInfo(policy.window.tz)).isoformat() if resets else "never"
    )
    return BudgetExceededError(
        f"{head}: {body}; resets at {when}",
        policy=policy.id,
        metric=policy.metric,
        scope=policy.scope,
        scope_value=state.value,
        window=policy.window.describe(),
        spent=spent,
        reserved=reserved,
        requested=amount,
        limit=policy.hard_limit,
        resets_at=resets,
        reason=reason,
        provider=where[0],
        model=where[1],
    )


def _dollars(value: Decimal | int) -> str:
    """At least two decimals, every significant one kept: 4.20, 0.0156."""
    whole, _, cents = f"{value:f}".partition(".")
    return f"{whole}.{cents.rstrip('0').ljust(2, '0')}"


def alerts_of(
    state: ScopeState, due: list[Decimal], now: datetime
) -> list[BudgetAlert]:
    """The alerts of thresholds ``due`` (``state.lock`` held)."""
    policy = state.policy
    limit = policy.alert_limit
    assert limit is not None  # due is empty without one
    return [
        BudgetAlert(
            policy=policy.id,
            metric=policy.metric,
            scope=policy.scope,
            scope_value=state.value,
            threshold=fraction,
            limit=limit,
            spent=state.spent,
            window_start=state.window_start(now),
            resets_at=state.resets_at(),
            at=now,
        )
        for fraction in due
    ]


def status_of(state: ScopeState, now: datetime) -> BudgetStatus:
    """Where ``state`` stands at ``now`` (takes ``state.lock``)."""
    policy = state.policy
    with state.lock:
        spent, reserved, in_flight = (
            state.spent_at(now),
            state.reserved,
            state.in_flight,
        )
        start, resets = state.window_start(now), state.resets_at()
    # Nothing reserved reads as 0, not as the 0E-10 that reserving and
    # releasing amounts of 10 places leaves.
    spent, reserved = spent or _ZERO, reserved or _ZERO
    hard, soft = policy.hard_limit, policy.soft_limit
    level: Literal["ok", "soft_limit", "hard_limit"] = "ok"
    if hard is not None and spent >= hard:
        level = "hard_limit"
    elif soft is not None and spent >= soft:
        level = "soft_limit"
    return BudgetStatus(
        policy=policy.id,
        metric=policy.metric,
        scope=policy.scope,
        scope_value=state.value,
        window=policy.window.describe(),
        window_start=start,
        resets_at=resets,
        spent=spent,
        reserved=reserved,
        remaining=None if hard is None else max(hard - spent - reserved, _ZERO),
        soft_limit=soft,
        hard_limit=hard,
        in_flight=in_flight,
        state=level,
    )


def send_alert(
    alert: BudgetAlert, on_alert: Callable[[BudgetAlert], None] | None
) -> None:
    """Log ``alert`` (a warning) and give it to ``on_alert``, whose failure
    is logged, never raised (a user callback must not break the call)."""
    who = (
        "global" if alert.scope == "global" else f"{alert.scope}={alert.scope_value!r}"
    )
    logger.warning(
        "budget %r (%s %s) passed %s%% of its limit %s: spent %s",
        alert.policy,
        alert.metric,
        who,
        f"{(alert.threshold * 100).normalize():f}",
        alert.limit,
        alert.spent,
    )
    if on_alert is not None:
        try:
            on_alert(alert)
        except Exception:
            logger.exception("budget alert callback failed for %r", alert.policy)
