"""How a ledger `Query` becomes SQL over ``palyra_usage`` (and, for day
totals of all records, the 15-minute sums a prune kept in
``palyra_usage_slots``), and how the rows become `Totals`.

Names in the SQL come from fixed tables (``BY_COLUMNS``, ``FILTER_COLUMNS``)
and from computed integers, never from a caller's text; values are bound.
Sums are exact: NUMERIC in SQL, and a context wide enough in Python.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Context, Decimal
from typing import Any

from .ledger import BY_COLUMNS, Page, Query, day_from_number, sorted_totals
from .postgres_schema import READ, SLOT_MS, exact_cost
from .records import TOKEN_FIELDS, Totals

__all__ = [
    "RANGE",
    "records_sql",
    "slots_answer",
    "slots_sql",
    "totals_from",
    "totals_sql",
]

_EXACT = Context(prec=1000)  # adds the groups' NUMERIC sums without rounding
_SUMS = ", ".join(f"sum({t})" for t in TOKEN_FIELDS)
# The range of started_ms the records and the kept slots span: the zone's
# offsets are needed over all of it.
RANGE = """SELECT min(low), max(high) FROM (
    SELECT min(started_ms) AS low, max(started_ms) AS high FROM palyra_usage
    UNION ALL
    SELECT min(slot) * 900000, max(slot) * 900000 + 899999
    FROM palyra_usage_slots) AS spans"""


def records_sql(query: Query, page: Page) -> tuple[str, list[Any]]:
    """The SELECT of ``records()``: oldest (or newest) first, ties by id in
    code-point order (``COLLATE "C"``, as Python sorts), whatever the
    database's collation."""
    where, params = _where(query)
    order, more = page.sql("%s", 'id COLLATE "C"', "ALL")
    sql = f"SELECT {', '.join(READ)} FROM palyra_usage{where}{order}"  # noqa: S608
    return sql, [*params, *more]


def totals_sql(query: Query, segments: list[tuple[int, int]]) -> tuple[str, list[Any]]:
    """One GROUP BY over the records: the keys, then calls, the token sums,
    unpriced and priced counts, the cost sum and its least exponent."""
    groups, group_params = _groups(query, segments, "started_ms")
    where, params = _where(query)
    sql = (
        f"SELECT {', '.join(groups)}, count(*), {_SUMS},"  # noqa: S608
        " count(*) FILTER (WHERE unpriced), count(cost_total), sum(cost_total),"
        f" min(cost_exp) FROM palyra_usage{where} GROUP BY {_ordinals(groups)}"
    )
    return sql, [*group_params, *params]


def slots_answer(query: Query, segments: list[tuple[int, int]]) -> bool:
    """Whether the kept 15-minute sums count towards ``query``: day totals of
    all records, over whole slots, in a zone whose offsets and transitions
    fall on slot boundaries (every zone's, since 1970). The same rule as the
    SQLite ledger's, so that both count a pruned record in the same totals."""
    if query.by != ("day",) or query.columns or query.tags:
        return False
    edges = [query.since_ms, query.until_ms]
    zone = [segments[0][1], *(ms for pair in segments[1:] for ms in pair)]
    return all(ms is None or ms % SLOT_MS == 0 for ms in edges) and all(
        ms % SLOT_MS == 0 for ms in zone
    )


def slots_sql(query: Query, segments: list[tuple[int, int]]) -> tuple[str, list[Any]]:
    """The GROUP BY over the kept slots, in the shape of `totals_sql`."""
    [day], _ = _groups(query, segments, f"(slot * {SLOT_MS})")
    clauses, params = [], []
    if query.since_ms is not None:
        clauses.append("slot >= %s")
        params.append(query.since_ms // SLOT_MS)
    if query.until_ms is not None:
        clauses.append("slot < %s")
        params.append(query.until_ms // SLOT_MS)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    sql = (
        f"SELECT {day}, sum(calls), {_SUMS}, sum(unpriced), sum(priced),"  # noqa: S608
        f" sum(cost_total), min(cost_exp) FROM palyra_usage_slots{where} GROUP BY 1"
    )
    return sql, params


def totals_from(query: Query, rows: Iterable[tuple[Any, ...]]) -> list[Totals]:
    """`Totals` of the rows of `totals_sql` and `slots_sql`, those of one
    key added together, sorted by key (None first)."""
    n = len(query.by)
    merged: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        key, counts = tuple(row[:n]), [int(v or 0) for v in row[n : n + 8]]
        cost, exponent = row[n + 8], row[n + 9]
        if counts[7] == 0:  # nothing priced (a slot's cost is 0 then)
            cost = exponent = None
        seen = merged.get(key)
        if seen is None:
            merged[key] = [counts, cost, exponent]
            continue
        seen[0] = [a + b for a, b in zip(seen[0], counts, strict=True)]
        if cost is not None:
            seen[1] = cost if seen[1] is None else _EXACT.add(seen[1], cost)
            seen[2] = exponent if seen[2] is None else min(seen[2], exponent)
    return sorted_totals(_totals(query, key, *v) for key, v in merged.items())


def _totals(
    query: Query,
    key: tuple[Any, ...],
    counts: list[int],
    cost: Decimal | None,
    exponent: int | None,
) -> Totals:
    labels = tuple(
        day_from_number(int(v)) if name == "day" else v
        for name, v in zip(query.by, key, strict=True)
    )
    return Totals(
        by=query.by,
        key=labels,
        calls=counts[0],
        **{t: counts[1 + i] for i, t in enumerate(TOKEN_FIELDS)},
        unpriced_calls=counts[6],
        cost_total=exact_cost(cost, exponent),
    )


def _where(query: Query) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.since_ms is not None:
        clauses.append("started_ms >= %s")
        params.append(query.since_ms)
    if query.until_ms is not None:
        clauses.append("started_ms < %s")
        params.append(query.until_ms)
    for column, value in query.columns.items():
        clauses.append(f"{column} = %s")  # column names come from FILTER_COLUMNS
        params.append(value)
    if query.tags:
        clauses.append("tags @> %s")  # a dict, dumped as JSONB
        params.append(dict(query.tags))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _groups(
    query: Query, segments: list[tuple[int, int]], time: str
) -> tuple[list[str], list[Any]]:
    exprs: list[str] = []
    params: list[Any] = []
    for name in query.by:
        if name == "day":
            exprs.append(_day(segments, time))
        elif name.startswith("tag:"):
            exprs.append("tags ->> %s::text")
            params.append(name[4:])
        else:
            exprs.append(BY_COLUMNS[name])
    return exprs, params


def _day(segments: list[tuple[int, int]], time: str) -> str:
    """The local day number of ``time`` (epoch ms): its UTC offset is a CASE
    over the zone's transitions (`offset_segments`, from Python's zoneinfo,
    so that every ledger agrees on the days, whatever tz data the server
    has); floored, so that days before 1970 are right too."""
    offset = f"{segments[-1][1]}"
    if len(segments) > 1:
        cases = " ".join(
            f"WHEN {time} < {start} THEN {prev}"
            for (start, _), (_, prev) in zip(segments[1:], segments[:-1], strict=True)
        )
        offset = f"CASE {cases} ELSE {offset} END"
    return f"floor(({time} + {offset}) / 86400000.0)::bigint"


def _ordinals(groups: list[str]) -> str:
    return ", ".join(str(i + 1) for i in range(len(groups)))
