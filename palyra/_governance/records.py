"""One usage record per call, and what the ledgers share about it.

A `UsageRecord` is what the usage ledger keeps of one call: who made it
(agent, session, principal, tags), what served it (provider, model, auth
profile), the normalised tokens, the cost, and how it went. Records are
immutable and validated when made, so a ledger never stores a half-formed one.

Costs are `Decimal` (never float) and an unpriced call has ``cost_total``
None, never zero. Times are aware datetimes, kept in UTC.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from .._exceptions import LedgerError

__all__ = [
    "STATUSES",
    "TOKEN_FIELDS",
    "LedgerError",
    "LedgerHealth",
    "Status",
    "Totals",
    "UsageRecord",
    "epoch_ms",
    "new_record_id",
]

Status = Literal["ok", "error", "cancelled"]
STATUSES: frozenset[str] = frozenset({"ok", "error", "cancelled"})
TOKEN_FIELDS = ("input_uncached", "cache_read", "cache_write", "output", "reasoning")


def new_record_id() -> str:
    """A 32-hex-digit id that sorts by creation time: 12 digits of epoch
    milliseconds, then 80 random bits (so ids of one millisecond still
    differ, across processes too)."""
    return f"{time.time_ns() // 1_000_000:012x}{_bits(80):020x}"


# Ids need to be unique, not secret: a generator seeded from the OS (a
# getrandom call per id cost more than the rest of the id), seeded afresh in
# a forked child so that parent and child never share a sequence.
_random = random.Random(os.urandom(32))
_bits = _random.getrandbits


def _reseed() -> None:
    _random.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime, rounded down.

    Both ledgers compare and bucket by this one number, so that they agree
    to the millisecond on which records a range or a day holds.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a ledger time must be timezone-aware, not {moment!r}")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class UsageRecord:
    """What one call used and cost.

    Attributes:
        id: Unique and time-sortable (`new_record_id`).
        started_at: When the call began (aware; stored in UTC).
        finished_at: When it ended (aware; stored in UTC).
        agent, session, principal: Who made the call, when known.
        tags: Free-form labels, string to string.
        provider, model: What served the call (for a failed call, the last
            candidate tried); ``requested_model`` is what the caller asked for.
        auth_profile: The auth profile id whose credential was used.
        input_uncached, cache_read, cache_write, output, reasoning: The
            normalised token counts, billed ones included for failed calls.
        cost_total: The cost in ``currency``; None when unpriced, never 0 for
            "unknown".
        unpriced: No price was known for the model.
        estimated: The tokens (hence the cost) were estimated, not reported.
        latency_ms: Wall time of the call.
        status: ``ok``, ``error`` or ``cancelled``.
        error_class: The exception class name of a failed call.
        attempts: How many requests were sent (retries and failovers count).
        routing: The routing decision's summary (`RoutingDecision.summary`:
            compact JSON of mode, score, tiers, requested and chosen models),
            when routing ran for the call.
    """

    id: str = field(default_factory=new_record_id)
    started_at: datetime
    finished_at: datetime
    agent: str | None = None
    session: str | None = None
    principal: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    provider: str
    model: str
    requested_model: str | None = None
    auth_profile: str | None = None
    input_uncached: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0
    cost_total: Decimal | None = None
    unpriced: bool = False
    estimated: bool = False
    currency: str = "USD"
    latency_ms: float = 0.0
    status: Status = "ok"
    error_class: str | None = None
    attempts: int = 1
    routing: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("a usage record's id is a non-empty string")
        for name in ("started_at", "finished_at"):
            value = getattr(self, name)
            if not isinstance(value, datetime):
                raise TypeError(f"{name} is a datetime, not {type(value).__name__}")
            epoch_ms(value)  # raises for a naive datetime
            object.__setattr__(self, name, value.astimezone(UTC))
        for name in ("provider", "model", "currency"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} is a non-empty string")
        for name in (*TOKEN_FIELDS, "attempts"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} is a non-negative int, not {value!r}")
        cost = self.cost_total
        if cost is not None and (not isinstance(cost, Decimal) or not cost.is_finite()):
            # A float would have lost exactness already; NaN cannot be summed.
            raise TypeError(
                f"cost_total is a finite Decimal or None: {self.cost_total!r}"
            )
        if self.status not in STATUSES:
            raise ValueError(
                f"status is one of {sorted(STATUSES)}, not {self.status!r}"
            )
        latency = float(self.latency_ms)
        if not math.isfinite(latency) or latency < 0:
            raise ValueError(
                f"latency_ms is a non-negative number: {self.latency_ms!r}"
            )
        object.__setattr__(self, "latency_ms", latency)
        if not isinstance(self.tags, dict) or not all(
            isinstance(k, str) and k and '"' not in k and isinstance(v, str)
            for k, v in self.tags.items()
        ):
            # '"' is refused in keys: tag keys become quoted JSON paths.
            raise ValueError('tags map non-empty string keys (without ") to strings')
        object.__setattr__(self, "tags", dict(self.tags))  # not the caller's

    @classmethod
    def of_call(cls, **fields: Any) -> UsageRecord:
        """A record built by palyra's own hooks, from values that are valid by
        construction (aware UTC times, counts from `NormalizedUsage`, a
        checked caller): made without checking them again, because this runs
        on every call's path. Anything else builds records the usual way."""
        record = object.__new__(cls)
        values = dict(_DEFAULTS)
        values["id"] = new_record_id()
        values.update(fields)
        record.__dict__.update(values)
        return record


_DEFAULTS: dict[str, Any] = {
    f.name: f.default
    for f in dataclasses.fields(UsageRecord)
    if f.default is not dataclasses.MISSING
}
_DEFAULTS["tags"] = {}


@dataclass(frozen=True, kw_only=True)
class Totals:
    """The sums of one group of records, from `UsageLedger.totals`.

    Attributes:
        by: The grouping keys asked for, e.g. ``("model",)`` or
            ``("agent", "day")``.
        key: The group's value for each of ``by``, in order (a day is its
            ISO date in the asked zone, ``"2026-03-29"``); None where the
            records have none.
        calls: How many records the group holds.
        cost_total: The sum of the priced records' costs, exact; None when
            every record of the group is unpriced.
        unpriced_calls: How many of them were unpriced.
    """

    by: tuple[str, ...]
    key: tuple[str | None, ...]
    calls: int
    input_uncached: int
    cache_read: int
    cache_write: int
    output: int
    reasoning: int
    cost_total: Decimal | None
    unpriced_calls: int

    def __getitem__(self, name: str) -> str | None:
        """The group's value for one of ``by``: ``totals["model"]``."""
        return self.key[self.by.index(name)]


@dataclass(frozen=True, kw_only=True)
class LedgerHealth:
    """Whether the ledger is keeping records.

    Attributes:
        ok: The last write (or open) succeeded, or none was tried.
        path: Where the ledger lives; None for memory.
        last_error: The last failure's text, naming the path; kept after
            a later success so that it can still be read.
        failed_writes: Records that could not be written, since start.
        written: Records written, since start.
    """

    ok: bool
    path: str | None
    last_error: str | None
    failed_writes: int
    written: int
