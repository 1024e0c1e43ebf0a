"""What a budget window is on Redis: its key, its integer units, its expiry,
and the scripts' arguments for it (pure: no I/O)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from .._governance import BudgetPolicy

__all__ = [
    "NANO",
    "Held",
    "epoch_ms",
    "from_units",
    "held_for",
    "to_units",
    "values_key",
]

NANO = Decimal(1_000_000_000)
"""A ``usd`` budget counts nano-dollars on Redis: integers, exact to 2**53
(about 9 million dollars per window)."""
_GRACE_MS = 3_600_000  # a calendar window's key outlives its end by an hour


def to_units(policy: BudgetPolicy, amount: Decimal) -> int:
    """``amount`` in the window's integer units, rounded up (a budget never
    counts less than was spent)."""
    scaled = amount * NANO if policy.metric == "usd" else amount
    return int(scaled.to_integral_value(rounding=ROUND_CEILING))


def from_units(policy: BudgetPolicy, units: int | str | bytes) -> Decimal:
    """Units back to the budget's own ``Decimal``."""
    raw = units.decode() if isinstance(units, bytes) else units
    value = Decimal(int(raw))
    return value / NANO if policy.metric == "usd" else value


def epoch_ms(at: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(at.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Held:
    """One window a call is counted against, and its amount there."""

    policy: BudgetPolicy
    value: str
    key: str
    start: datetime | None
    end: datetime | None
    amount: Decimal
    roll_ms: int  # a rolling window's length; 0 otherwise
    ttl_ms: int  # how long the key lives after a write; 0: for ever

    def limit_units(self) -> str:
        """The hard limit in units, '' for none."""
        return _known(self.policy).limit

    def alerts(self) -> str:
        """The alert thresholds, ``"fraction=units,..."``."""
        return _known(self.policy).alerts


class _Known:
    """What a policy's windows repeat on every call, worked out once: its
    limit and alerts as the scripts take them, the calendar window last
    seen. (A policy is immutable; a changed budget is a new policy.)"""

    __slots__ = ("alerts", "bounds", "limit")

    def __init__(self, policy: BudgetPolicy) -> None:
        hard, alert = policy.hard_limit, policy.alert_limit
        self.limit = "" if hard is None else str(to_units(policy, hard))
        self.alerts = (
            ""
            if alert is None
            else ",".join(
                f"{fraction}={to_units(policy, fraction * alert)}"
                for fraction in policy.alert_at
            )
        )
        # One tuple, replaced whole: threads never see a start and an end
        # of different windows.
        self.bounds: tuple[datetime, datetime] | None = None


_KNOWN: weakref.WeakKeyDictionary[BudgetPolicy, _Known] = weakref.WeakKeyDictionary()


def _known(policy: BudgetPolicy) -> _Known:
    found = _KNOWN.get(policy)
    if found is None:
        found = _KNOWN[policy] = _Known(policy)
    return found


def _calendar_bounds(policy: BudgetPolicy, now: datetime) -> tuple[datetime, datetime]:
    known = _known(policy)
    bounds = known.bounds
    if bounds is None or not bounds[0] <= now < bounds[1]:
        start, end = policy.window.bounds(now)
        assert start is not None
        assert end is not None
        bounds = known.bounds = (start, end)
    return bounds


def held_for(
    prefix: str, policy: BudgetPolicy, value: str, amount: Decimal, now: datetime
) -> Held:
    """The window of ``policy`` for ``value`` holding ``now``."""
    window = policy.window
    start = end = None
    if window.calendar:
        start, end = _calendar_bounds(policy, now)
    duration = window.duration
    if duration is not None:
        suffix, roll_ms = "roll", int(duration.total_seconds() * 1000)
        ttl_ms = roll_ms + _GRACE_MS
    elif end is not None and start is not None:
        suffix, roll_ms = str(epoch_ms(start)), 0
        ttl_ms = max(epoch_ms(end) - epoch_ms(now), 0) + _GRACE_MS
    else:
        suffix, roll_ms, ttl_ms = "all", 0, 0
    # The value's length first: values may hold ':' and still never collide.
    key = f"{prefix}b:{policy.id}:{len(value)}:{value}:{suffix}"
    return Held(policy, value, key, start, end, amount, roll_ms, ttl_ms)


def values_key(prefix: str, window: Held) -> str:
    """The set of scope values a per-value budget has used in ``window``'s
    period (it lives as long as the period's windows: the values of past
    periods are not listed, loaded or kept)."""
    period = window.key.rsplit(":", 1)[1]
    return f"{prefix}v:{window.policy.id}:{period}"
