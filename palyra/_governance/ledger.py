"""The usage ledger: where records are kept, behind one small protocol.

`UsageLedger` is what the client writes a record of each call to and what
``client.usage`` queries; `MemoryLedger` keeps them in this process (tests,
notebooks), `palyra._governance.sqlite_ledger.SQLiteLedger` in a file. Both
follow one contract, and one test suite holds them to it:

- ``record`` returns only when the record is kept (for SQLite: committed).
- Ranges are half-open, ``since <= started_at < until``, compared in epoch
  milliseconds (`epoch_ms`), so both ledgers agree on the edges.
- ``totals`` groups by ``model``, ``provider``, ``agent``, ``session``,
  ``principal``, ``profile`` (the auth profile), ``status``, ``currency``,
  ``tag:<key>`` or ``day`` (the local date in ``tz``, an IANA zone), or a tuple
  of them; groups come sorted by key, None first. A group's cost is the exact
  sum of its priced records, None when none is priced.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .records import TOKEN_FIELDS, LedgerHealth, Totals, UsageRecord, epoch_ms

__all__ = [
    "BY_COLUMNS",
    "FILTER_COLUMNS",
    "MemoryLedger",
    "Page",
    "Query",
    "UsageLedger",
    "day_from_number",
    "day_of",
    "offset_segments",
    "sorted_totals",
]

# Filter names and the record attribute (and SQLite column) they match.
FILTER_COLUMNS = {
    "provider": "provider",
    "model": "model",
    "agent": "agent",
    "session": "session",
    "principal": "principal",
    "auth_profile": "auth_profile",
    "status": "status",
}
# Grouping keys other than ``day`` and ``tag:<key>``.
BY_COLUMNS = {
    "model": "model",
    "provider": "provider",
    "agent": "agent",
    "session": "session",
    "principal": "principal",
    "profile": "auth_profile",
    "status": "status",
    "currency": "currency",
}
_DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@runtime_checkable
class UsageLedger(Protocol):
    """Where usage records are kept. Implementations are safe to call from
    several threads, do no I/O until first used, and raise
    `LedgerError` (never a backend's own error) when they cannot keep or
    read records."""

    def record(self, rec: UsageRecord) -> None:
        """Keep ``rec``; durable when this returns."""
        ...

    def records(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        page: Page | None = None,
        **filters: Any,
    ) -> list[UsageRecord]:
        """The records started in ``[since, until)`` that match ``filters``
        (``provider``, ``model``, ``agent``, ``session``, ``principal``,
        ``auth_profile``, ``status``, ``tag=("k", "v")``, ``tags={"k": "v"}``),
        oldest first; with ``page``, the part of them it says (given only
        when the caller asks for a page)."""
        ...

    def totals(
        self,
        by: str | tuple[str, ...],
        since: datetime | None = None,
        until: datetime | None = None,
        tz: str = "UTC",
        **filters: Any,
    ) -> list[Totals]:
        """Sums of the matching records, one `Totals` per group of ``by``."""
        ...

    def health(self) -> LedgerHealth:
        """Whether records are being kept, and the last failure."""
        ...

    def close(self) -> None:
        """Release what the ledger holds; it reopens if used again."""
        ...


@dataclass(frozen=True, slots=True)
class Page:
    """A part of a ``records()`` answer: ``limit`` records (None: all) after
    skipping ``offset``, oldest first, or newest first."""

    limit: int | None = None
    offset: int = 0
    newest_first: bool = False

    def __post_init__(self) -> None:
        for name in ("limit", "offset"):
            value = getattr(self, name)
            if value is None and name == "limit":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}= is a whole number, 0 or more, not {value!r}")
        if not isinstance(self.newest_first, bool):
            got = self.newest_first
            raise ValueError(f"newest_first= is True or False, not {got!r}")

    def of(self, records: list[UsageRecord]) -> list[UsageRecord]:
        """This page of ``records`` (oldest first, all of them)."""
        ordered = records[::-1] if self.newest_first else records
        end = None if self.limit is None else self.offset + self.limit
        return ordered[self.offset : end]

    def sql(self, mark: str, id_order: str, every: str) -> tuple[str, list[int]]:
        """Its ORDER BY, LIMIT and OFFSET in a dialect: its parameter
        ``mark``, the id's ordering, and ``every`` for no limit."""
        way = " DESC" if self.newest_first else ""
        limit = every if self.limit is None else mark
        params = ([] if self.limit is None else [self.limit]) + [self.offset]
        order = f" ORDER BY started_ms{way}, {id_order}{way}"
        return f"{order} LIMIT {limit} OFFSET {mark}", params


class Query:
    """A validated ``records``/``totals`` query, shared by the ledgers so
    that they accept and refuse the same things."""

    def __init__(
        self,
        since: datetime | None,
        until: datetime | None,
        filters: Mapping[str, Any],
        by: str | tuple[str, ...] | None = None,
        tz: str = "UTC",
    ) -> None:
        self.since_ms = None if since is None else epoch_ms(since)
        self.until_ms = None if until is None else epoch_ms(until)
        self.columns: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        for name, value in filters.items():
            if name == "tag":
                pair = tuple(value) if isinstance(value, tuple | list) else ()
                if len(pair) != 2 or not all(isinstance(x, str) for x in pair):
                    raise ValueError(f'tag= is a ("key", "value") pair, not {value!r}')
                self.tags[pair[0]] = pair[1]
            elif name == "tags":
                if not isinstance(value, Mapping):
                    raise ValueError(f"tags= is a mapping of str to str, not {value!r}")
                self.tags.update({str(k): str(v) for k, v in value.items()})
            elif name in FILTER_COLUMNS:
                if not isinstance(value, str):
                    raise ValueError(f"{name}= is a string, not {value!r}")
                self.columns[FILTER_COLUMNS[name]] = value
            else:
                known = sorted([*FILTER_COLUMNS, "tag", "tags"])
                raise TypeError(f"unknown usage filter {name!r}; known: {known}")
        if any('"' in key for key in self.tags):
            raise ValueError('a tag key has no " in it')
        self.by: tuple[str, ...] = ()
        if by is not None:
            self.by = (by,) if isinstance(by, str) else tuple(by)
            if not self.by:
                raise ValueError("by= names at least one grouping key")
            for key in self.by:
                if not isinstance(key, str) or not (
                    key in BY_COLUMNS
                    or key == "day"
                    or (key.startswith("tag:") and len(key) > 4 and '"' not in key)
                ):
                    known = sorted([*BY_COLUMNS, "day", "tag:<key>"])
                    raise ValueError(f"unknown grouping {key!r}; by= is one of {known}")
        try:
            self.zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f"tz= is an IANA time zone name, not {tz!r}") from None

    def matches(self, rec: UsageRecord) -> bool:
        """Whether ``rec`` is in this query's range and filters."""
        started = epoch_ms(rec.started_at)
        if self.since_ms is not None and started < self.since_ms:
            return False
        if self.until_ms is not None and started >= self.until_ms:
            return False
        if any(getattr(rec, col) != value for col, value in self.columns.items()):
            return False
        return all(rec.tags.get(k) == v for k, v in self.tags.items())

    def group_of(self, rec: UsageRecord) -> tuple[str | None, ...]:
        """``rec``'s value for each grouping key."""
        key: list[str | None] = []
        for name in self.by:
            if name == "day":
                key.append(day_of(epoch_ms(rec.started_at), self.zone))
            elif name.startswith("tag:"):
                key.append(rec.tags.get(name[4:]))
            else:
                key.append(getattr(rec, BY_COLUMNS[name]))
        return tuple(key)


def day_of(ms: int, zone: ZoneInfo) -> str:
    """The ISO local date in ``zone`` of an epoch-millisecond instant."""
    return (_EPOCH + timedelta(milliseconds=ms)).astimezone(zone).date().isoformat()


def day_from_number(number: int) -> str:
    """The ISO date of a day number (days since 1970-01-01)."""
    return date.fromordinal(_EPOCH_ORDINAL + number).isoformat()


def _offset_ms(ms: int, zone: ZoneInfo) -> int:
    offset = (_EPOCH + timedelta(milliseconds=ms)).astimezone(zone).utcoffset()
    assert offset is not None
    return offset // timedelta(milliseconds=1)


def offset_segments(low: int, high: int, zone: ZoneInfo) -> list[tuple[int, int]]:
    """The UTC offsets of ``zone`` over ``[low, high]`` (epoch ms), as
    ``(from_ms, offset_ms)`` pairs, the first from ``low``.

    With them a local day is ``(ms + offset) // 86_400_000``, which SQL can
    group by: zoneinfo does not list its transitions, so the offset is
    sampled daily and each change found by bisection, to the millisecond.
    (A zone that changes offset twice within one day would be missed; none
    does.)
    """
    segments = [(low, _offset_ms(low, zone))]
    here = low
    while here < high:
        step = min(here + _DAY_MS, high)
        offset = _offset_ms(step, zone)
        if offset != segments[-1][1]:
            before, after = here, step  # offset(before) is old, (after) new
            while after - before > 1:
                middle = (before + after) // 2
                if _offset_ms(middle, zone) == offset:
                    after = middle
                else:
                    before = middle
            segments.append((after, offset))
        here = step
    return segments


def sorted_totals(rows: Iterable[Totals]) -> list[Totals]:
    """Groups in key order, None before any value."""
    return sorted(rows, key=lambda t: [(v is not None, v or "") for v in t.key])


class MemoryLedger:
    """Records in this process's memory only, for tests and notebooks;
    the same contract as `SQLiteLedger`, nothing written anywhere."""

    def __init__(self) -> None:
        self._records: list[UsageRecord] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryLedger({len(self._records)} records)"

    def record(self, rec: UsageRecord) -> None:
        """Keep ``rec`` (kept when this returns)."""
        if not isinstance(rec, UsageRecord):
            raise TypeError(f"a ledger keeps UsageRecord, not {type(rec).__name__}")
        with self._lock:
            self._records.append(rec)

    def record_many(self, recs: list[UsageRecord]) -> None:
        """Keep several records at once."""
        for rec in recs:
            self.record(rec)

    def prune(self, before: datetime, *, keep_totals: bool = False) -> int:
        """Forget the records of calls started before ``before`` (memory keeps
        no separate totals: ``keep_totals`` changes nothing). How many went."""
        cutoff = before.astimezone(UTC)
        with self._lock:
            kept = [r for r in self._records if r.started_at >= cutoff]
            gone = len(self._records) - len(kept)
            self._records = kept
        return gone

    def records(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        page: Page | None = None,
        **filters: Any,
    ) -> list[UsageRecord]:
        """The matching records, oldest first (see `UsageLedger.records`)."""
        query = Query(since, until, filters)
        with self._lock:
            kept = list(self._records)
        found = [rec for rec in kept if query.matches(rec)]
        found.sort(key=lambda r: (epoch_ms(r.started_at), r.id))
        return found if page is None else page.of(found)

    def totals(
        self,
        by: str | tuple[str, ...],
        since: datetime | None = None,
        until: datetime | None = None,
        tz: str = "UTC",
        **filters: Any,
    ) -> list[Totals]:
        """Sums per group (see `UsageLedger.totals`)."""
        query = Query(since, until, filters, by, tz)
        with self._lock:
            kept = list(self._records)
        groups: dict[tuple[str | None, ...], list[UsageRecord]] = {}
        for rec in kept:
            if query.matches(rec):
                groups.setdefault(query.group_of(rec), []).append(rec)
        return sorted_totals(_sum(query.by, key, recs) for key, recs in groups.items())

    def health(self) -> LedgerHealth:
        """Always healthy: memory does not fail a write."""
        with self._lock:
            written = len(self._records)
        return LedgerHealth(
            ok=True, path=None, last_error=None, failed_writes=0, written=written
        )

    def close(self) -> None:
        """Nothing to release; the records stay."""


def _sum(
    by: tuple[str, ...], key: tuple[str | None, ...], recs: list[UsageRecord]
) -> Totals:
    costs = [r.cost_total for r in recs if r.cost_total is not None]
    tokens = {name: sum(getattr(r, name) for r in recs) for name in TOKEN_FIELDS}
    return Totals(
        by=by,
        key=key,
        calls=len(recs),
        cost_total=sum(costs[1:], costs[0]) if costs else None,
        unpriced_calls=sum(1 for r in recs if r.unpriced),
        **tokens,
    )
