"""Shared pieces of the budgets tests: a caller, a clock, usages and costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from palyra._governance import Budgets, Cost, NormalizedUsage, Reservation, UsageRecord

START = datetime(2026, 12, 2, 12, tzinfo=UTC)


@dataclass
class Caller:
    """What the client passes as the party of a call."""

    agent: str | None = "bot"
    session: str | None = None
    principal: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def usd(amount: str | int | None) -> Cost:
    """A cost of ``amount`` dollars; None: unpriced."""
    if amount is None:
        return Cost(total=None, unpriced=True)
    return Cost(total=Decimal(amount), unpriced=False)


def tokens(prompt: int = 100, output: int = 50) -> NormalizedUsage:
    return NormalizedUsage(input_uncached=prompt, output=output)


USAGE = tokens()


def reserve(
    budgets: Budgets,
    amount: str | int | None,
    party: Caller | None = None,
    usage: NormalizedUsage = USAGE,
) -> Reservation | None:
    return budgets.reserve(
        party or Caller(), usage, usd(amount), provider="prov", model="mod"
    )


def spend(budgets: Budgets, amount: str | int, party: Caller | None = None) -> None:
    """Reserve and settle one call of ``amount`` dollars."""
    held = reserve(budgets, amount, party)
    assert held is not None
    budgets.settle(held, USAGE, usd(amount))


def record(at: datetime, cost: str | None = "1", **fields: Any) -> UsageRecord:
    return UsageRecord(
        started_at=at,
        finished_at=at + timedelta(seconds=1),
        provider="prov",
        model="mod",
        cost_total=None if cost is None else Decimal(cost),
        unpriced=cost is None,
        **{"input_uncached": 100, "output": 50, **fields},
    )
