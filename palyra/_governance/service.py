"""``client.usage``: the ledger's records and totals, and its health.

Every query has an async twin (``a`` prefix, same parameters) that runs the
query in a worker thread, so an event loop never waits on SQLite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from .._config import parse_mode
from .._exceptions import InvalidRequestError
from .._usage import Cost, NormalizedUsage, PriceEntry
from .ledger import Page
from .metering import LedgerSlot
from .prices import PriceBook
from .pricing import cost_of
from .records import LedgerError, LedgerHealth, Totals, UsageRecord
from .savings import SAVINGS_MODES, RoutingSavings, routing_savings

__all__ = ["UsageRun", "UsageService"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class UsageRun:
    """A usage record with the price in effect at its time.

    Attributes:
        record: The ledger's record.
        price: The entry that prices the record's model at its
            ``started_at``, by today's table; None when unpriced.
        cost: The record's tokens at that price. It differs from
            ``record.cost_total`` if the table changed for that time since
            the call was recorded, and for calls that wrote Anthropic's
            1-hour cache: a record keeps its cache writes without their
            lifetimes, so they are priced here at the 5-minute rate.
    """

    record: UsageRecord
    price: PriceEntry | None
    cost: Cost


class UsageService:
    """What the client's calls used: ``client.usage``."""

    def __init__(
        self,
        slot: LedgerSlot,
        prices: PriceBook,
        upstream_of: Callable[[str, str], tuple[str, str]],
    ) -> None:
        self._slot = slot
        self._prices = prices
        # (provider id, model id) -> (provider kind, upstream model name):
        # what a price is looked up by.
        self._upstream_of = upstream_of

    def records(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
        **filters: Any,
    ) -> list[UsageRecord]:
        """The records of calls started in ``[since, until)``, oldest first.

        Args:
            since, until: Aware datetimes; None leaves that end open.
            limit, offset: A page: at most ``limit`` records after skipping
                ``offset`` (the ledger pages them itself: SQL's LIMIT and
                OFFSET on its time index).
            newest_first: The newest first instead.
            **filters: ``provider``, ``model``, ``agent``, ``session``,
                ``principal``, ``auth_profile``, ``status``, ``tag=("k", "v")``
                or ``tags={"k": "v"}``.

        Raises:
            InvalidRequestError: a bad filter, time or page, named.
            LedgerError: the ledger cannot be read, or there is none.
        """
        _check_times(since, until)
        ledger = self._slot.required()
        if limit is None and not offset and not newest_first:
            # As before paging came: a ledger of the app's own needs no page=.
            return _checked(lambda: ledger.records(since, until, **filters))
        page = _checked(lambda: Page(limit, offset, newest_first))
        if not _pages_itself(ledger):  # an app's ledger from before paging
            return page.of(_checked(lambda: ledger.records(since, until, **filters)))
        return _checked(lambda: ledger.records(since, until, page=page, **filters))

    def totals(
        self,
        by: str | tuple[str, ...] = "model",
        since: datetime | None = None,
        until: datetime | None = None,
        tz: str = "UTC",
        **filters: Any,
    ) -> list[Totals]:
        """Sums of tokens and cost per group, sorted by group.

        Args:
            by: ``model``, ``provider``, ``agent``, ``session``,
                ``principal``, ``profile``, ``status``, ``currency``,
                ``tag:<key>`` or ``day`` (the date in ``tz``), or a tuple.
            tz: The IANA zone days are counted in.
            **filters: as for `records`.

        Raises:
            InvalidRequestError: a bad key, zone, filter or time, named.
            LedgerError: the ledger cannot be read, or there is none.
        """
        if by == "tag" or (isinstance(by, tuple) and "tag" in by):
            raise InvalidRequestError(
                "by: group by one tag's values with 'tag:<key>', e.g. 'tag:team'"
            )
        _check_times(since, until)
        ledger = self._slot.required()
        return _checked(lambda: ledger.totals(by, since, until, tz, **filters))

    def runs(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        **filters: Any,
    ) -> list[UsageRun]:
        """`records`, each with the price in effect at its own time."""
        return [self._run(rec) for rec in self.records(since, until, **filters)]

    def routing_savings(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        mode: str | None = None,
    ) -> RoutingSavings:
        """What smart routing saved over the calls started in ``[since,
        until)``: the cost paid against the requested models' (enforced), or
        what routing's choices would have cost (dry run); each record's
        tokens priced at the table in effect at its time.

        Args:
            mode: ``dry_run`` or ``enforced`` only; None for both.

        Raises:
            InvalidRequestError: a bad mode or time.
            LedgerError: the ledger cannot be read, or there is none.
        """
        mode = parse_mode(mode)
        if mode is not None and mode not in SAVINGS_MODES:
            raise InvalidRequestError(
                f"mode: must be dry_run, enforced or None, got {mode!r}"
            )
        return routing_savings(self.records(since, until), self._repriced, mode)

    def prune(self, before: datetime, *, mode: str = "delete") -> int:
        """Forget the records of calls started before ``before`` (an aware
        datetime; SQLite rounds it down to 15 minutes), and the scheduler's
        run records that ended before it. ``mode="aggregate"`` keeps the day
        totals of all records counting them (``totals(by="day")`` with no
        filter); ``"delete"`` forgets them wholly. The ``ledger_retention``
        job calls it. How many usage records went.

        Raises:
            InvalidRequestError: a bad ``before`` or ``mode``.
            LedgerError: the ledger cannot be written, there is none, or it
                cannot prune.
        """
        if not isinstance(before, datetime) or before.utcoffset() is None:
            raise InvalidRequestError(
                f"before: must be an aware datetime, got {before!r}"
            )
        if mode not in ("delete", "aggregate"):
            raise InvalidRequestError(
                f"mode: must be 'delete' or 'aggregate', not {mode!r}"
            )
        ledger = self._slot.required()
        prune = getattr(ledger, "prune", None)
        if prune is None:
            raise LedgerError(f"{type(ledger).__name__} cannot prune its records")
        gone: int = _checked(lambda: prune(before, keep_totals=mode == "aggregate"))
        return gone

    def health(self) -> LedgerHealth:
        """Whether records are being kept: the path, the last failure, counts."""
        return self._slot.health()

    async def arecords(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
        **filters: Any,
    ) -> list[UsageRecord]:
        """Async `records`."""
        return await _threaded(
            lambda: self.records(
                since,
                until,
                limit=limit,
                offset=offset,
                newest_first=newest_first,
                **filters,
            )
        )

    async def atotals(
        self,
        by: str | tuple[str, ...] = "model",
        since: datetime | None = None,
        until: datetime | None = None,
        tz: str = "UTC",
        **filters: Any,
    ) -> list[Totals]:
        """Async `totals`."""
        return await _threaded(lambda: self.totals(by, since, until, tz, **filters))

    async def aruns(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        **filters: Any,
    ) -> list[UsageRun]:
        """Async `runs`."""
        return await _threaded(lambda: self.runs(since, until, **filters))

    async def arouting_savings(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        mode: str | None = None,
    ) -> RoutingSavings:
        """Async `routing_savings`."""
        return await _threaded(lambda: self.routing_savings(since, until, mode))

    async def ahealth(self) -> LedgerHealth:
        """Async `health`."""
        return self.health()

    def _run(self, rec: UsageRecord) -> UsageRun:
        price = self._price(rec, rec.provider, rec.model)
        return UsageRun(record=rec, price=price, cost=cost_of(_usage_of(rec), price))

    def price(
        self, provider: str, model: str, at: datetime | None = None
    ) -> PriceEntry | None:
        """The price in effect for registry ``model`` of ``provider`` at
        ``at`` (default now): the model entry's, the price table's or the
        shipped default's; None when unpriced. May read the price table
        file on first use."""
        kind, upstream = self._upstream_of(provider, model)
        when = at if at is not None else datetime.now(UTC)
        return self._prices.entry(provider, kind, upstream, when)

    def _price(self, rec: UsageRecord, provider: str, model: str) -> PriceEntry | None:
        kind, upstream = self._upstream_of(provider, model)
        return self._prices.entry(provider, kind, upstream, rec.started_at)

    def _repriced(self, rec: UsageRecord, provider: str, model: str) -> Decimal | None:
        """The record's tokens at another model's price, at its time."""
        return cost_of(_usage_of(rec), self._price(rec, provider, model)).total


def _usage_of(rec: UsageRecord) -> NormalizedUsage:
    return NormalizedUsage(
        input_uncached=rec.input_uncached,
        cache_read=rec.cache_read,
        cache_write=rec.cache_write,
        output=rec.output,
        reasoning=min(rec.reasoning, rec.output),
        estimated=rec.estimated,
    )


def _pages_itself(ledger: Any) -> bool:
    """Whether ``ledger.records`` takes ``page=`` (palyra's ledgers do)."""
    import inspect

    try:
        parameters = inspect.signature(ledger.records).parameters
    except (TypeError, ValueError):
        return False
    return "page" in parameters


def _check_times(since: object, until: object) -> None:
    for name, value in (("since", since), ("until", until)):
        if value is not None and not isinstance(value, datetime):
            raise InvalidRequestError(
                f"{name}: must be an aware datetime or None, got {type(value).__name__}"
            )


def _checked(query: Callable[[], T]) -> T:
    try:
        return query()
    except (ValueError, TypeError) as exc:
        # The ledgers refuse bad keys, zones, filters and naive times with
        # ValueError or TypeError; the caller gets palyra's typed error.
        raise InvalidRequestError(str(exc)) from None


async def _threaded(work: Callable[[], T]) -> T:
    import asyncio  # the app's loop has loaded it already

    return await asyncio.to_thread(work)
