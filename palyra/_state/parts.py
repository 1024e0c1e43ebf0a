"""The small parts of shared budgets: what the reserving logic asks for,
what a call holds, and the alerts the scripts claim (pure: no I/O)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from .._exceptions import BudgetExceededError
from .._governance import BudgetAlert, BudgetPolicy, Reservation, ScopeState, refusal
from .windows import Held, epoch_ms, from_units

logger = logging.getLogger("palyra")

__all__ = [
    "Need",
    "SharedReservation",
    "alerts_from",
    "cut",
    "refusal_for",
    "refused_at",
    "starting_at_zero",
    "text",
]


class Need(NamedTuple):
    """What the reserving logic asks its driver for: a ``script`` run on
    Redis (with ``keys`` and ``args``), or, with ``script`` None, the
    ledger's spending for the window ``held``."""

    script: str | None
    keys: list[str]
    args: list[Any]
    held: Held | None = None


class SharedReservation:
    """What one call holds on Redis (or, while Redis was down, locally)."""

    __slots__ = ("_closed", "held", "id", "local")

    def __init__(
        self, rid: str, held: list[Held], local: Reservation | None = None
    ) -> None:
        self.id, self.held, self.local = rid, held, local
        self._closed = False

    def close(self) -> bool:
        """Mark it given back; False if it already was."""
        if self._closed:
            return False
        self._closed = True
        return True

    def __repr__(self) -> str:
        where = "local" if self.local is not None else "redis"
        return f"SharedReservation({self.id}, {where}, {len(self.held)} windows)"


def alerts_from(
    held: Iterable[Held], claimed: Iterable[bytes | str], now: datetime
) -> list[BudgetAlert]:
    """The alerts of the scripts' ``"i=fraction=spent"`` claims."""
    windows = list(held)
    alerts = []
    for item in claimed:
        index, fraction, spent = text(item).split("=")
        window = windows[int(index) - 1]
        policy = window.policy
        limit = policy.alert_limit
        assert limit is not None  # nothing is claimed without one
        alerts.append(
            BudgetAlert(
                policy=policy.id,
                metric=policy.metric,
                scope=policy.scope,
                scope_value=window.value,
                threshold=Decimal(fraction),
                limit=limit,
                spent=from_units(policy, spent),
                window_start=window.start,
                resets_at=window.end,
                at=now,
            )
        )
    return alerts


def cut(policy: BudgetPolicy, fraction: Decimal) -> BudgetPolicy:
    """``policy`` for one process alone while Redis is down: its hard limit
    cut to ``fraction``, no soft limit and no alerts of its own."""
    hard = policy.hard_limit
    return dataclasses.replace(
        policy,
        hard_limit=None if hard is None else hard * fraction,
        soft_limit=None,
        alert_at=(),
    )


def text(value: Any) -> str:
    """A script's answer item as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def starting_at_zero(
    window: Held, error: Exception, now: datetime
) -> tuple[Decimal, None, int]:
    """What a window an ``allow`` budget cannot read from the ledger starts
    at: nothing spent, for every process until the window ends (said in
    the log: the budget counts only what is spent from now on)."""
    logger.warning(
        "palyra: budget %r (%s) starts its window at 0: the ledger could not be"
        " read (%s) and on_ledger_error is 'allow'",
        window.policy.id,
        window.value,
        error,
    )
    return Decimal(0), None, epoch_ms(now)


def refused_at(
    window: Held,
    now: datetime,
    spent: Decimal,
    reserved: Decimal,
    where: tuple[str, str],
) -> BudgetExceededError:
    """The error for a window whose hard limit refused the call on Redis."""
    state = ScopeState(window.policy, window.value, window.start, window.end, spent)
    state.reserved = reserved
    return refusal(state, now, "hard_limit", window.amount, where)


def refusal_for(
    policy: BudgetPolicy,
    value: str,
    now: datetime,
    reason: str,
    amount: Decimal | None,
    where: tuple[str, str],
    detail: str = "",
) -> BudgetExceededError:
    """The error for a call refused before Redis was asked (``reason``)."""
    start, end = policy.window.bounds(now)
    state = ScopeState(policy, value, start, end, Decimal(0))
    return refusal(state, now, reason, amount, where, detail)
