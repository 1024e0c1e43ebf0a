"""How a ledger `Query` becomes SQL over the ``usage`` table or its
15-minute ``usage_slots``.

Names in the SQL come from fixed tables (``BY_COLUMNS``, ``FILTER_COLUMNS``)
and from computed integers, never from a caller's text; values are bound.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .ledger import BY_COLUMNS, Query, day_from_number, sorted_totals
from .records import TOKEN_FIELDS, Totals
from .sqlite_schema import E12, SLOT_MS

__all__ = [
    "day_expr",
    "group_exprs",
    "groups_answer",
    "slots_answer",
    "totals_of",
    "where_clause",
]


def slots_answer(query: Query, segments: list[tuple[int, int]]) -> bool:
    """Whether ``usage_slots`` (15-minute sums) answers ``query`` exactly:
    day totals of all records, over whole slots, in a zone whose offsets and
    transitions fall on slot boundaries (every zone's, since 1970)."""
    if query.by != ("day",) or query.columns or query.tags:
        return False
    return _on_slots(query, segments)


# What usage_groups holds sums by: grouping keys and filters on these (over
# whole slots) are answered from it.
_GROUPED = frozenset({"provider", "model", "agent", "status", "currency"})


def groups_answer(query: Query, segments: list[tuple[int, int]]) -> bool:
    """Whether ``usage_groups`` answers ``query`` exactly: totals by day and
    the columns it keeps, filtered by those only, over whole slots, in a
    zone on slot boundaries (as for `slots_answer`)."""
    if query.tags or not set(query.by) <= _GROUPED | {"day"}:
        return False
    if not set(query.columns) <= _GROUPED:
        return False
    return _on_slots(query, segments)


def _on_slots(query: Query, segments: list[tuple[int, int]]) -> bool:
    edges = [query.since_ms, query.until_ms]
    # Every offset, and every transition but the range's start (not one);
    # none to check without days.
    zone = (
        [segments[0][1], *(ms for pair in segments[1:] for ms in pair)]
        if segments
        else []
    )
    return all(ms is None or ms % SLOT_MS == 0 for ms in edges) and all(
        ms % SLOT_MS == 0 for ms in zone
    )


def group_exprs(
    query: Query, segments: list[tuple[int, int]], time: str, grouped: bool = False
) -> tuple[list[str], list[Any]]:
    """SQL expressions for the grouping keys, and their parameters (on
    ``usage_groups`` when ``grouped``, where no agent is '')."""
    exprs: list[str] = []
    params: list[Any] = []
    for name in query.by:
        if grouped and name == "agent":
            exprs.append("NULLIF(agent, '')")
        elif name == "day":
            exprs.append(day_expr(segments, time))
        elif name.startswith("tag:"):
            exprs.append("json_extract(tags, ?)")
            params.append(f'$."{name[4:]}"')
        else:
            exprs.append(BY_COLUMNS[name])
    return exprs, params


def day_expr(segments: list[tuple[int, int]], time: str) -> str:
    """The local day number of ``time`` (epoch ms): its UTC offset is a CASE
    over the zone's transitions, so that the grouping stays in SQL."""
    offset = f"{segments[-1][1]}"
    if len(segments) > 1:
        cases = " ".join(
            f"WHEN {time} < {start} THEN {prev}"
            for (start, _), (_, prev) in zip(segments[1:], segments[:-1], strict=True)
        )
        offset = f"CASE {cases} ELSE {offset} END"
    return f"(({time} + {offset}) / 86400000)"


def where_clause(query: Query, slots: bool = False) -> tuple[str, list[Any]]:
    """The WHERE clause of ``query``; on ``usage_slots``, by slot number (so
    that the primary key serves the range; the bounds are whole slots)."""
    clauses: list[str] = []
    params: list[Any] = []
    time, scale = ("slot", SLOT_MS) if slots else ("started_ms", 1)
    if query.since_ms is not None:
        clauses.append(f"{time} >= ?")
        params.append(query.since_ms // scale)
    if query.until_ms is not None:
        clauses.append(f"{time} < ?")
        params.append(query.until_ms // scale)
    for column, value in query.columns.items():
        clauses.append(f"{column} = ?")  # column names come from FILTER_COLUMNS
        params.append(value)
    for key, value in query.tags.items():
        clauses.append("json_extract(tags, ?) = ?")
        params.extend([f'$."{key}"', value])
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def totals_of(
    read: Callable[[str, list[Any]], list[Any]],
    query: Query,
    segments: list[tuple[int, int]],
    *,
    slots: bool,
    exact_in_sql: bool,
    grouped: bool = False,
) -> list[Totals]:
    """One GROUP BY, over ``usage``, (day totals of all records) over
    ``usage_slots`` or (``grouped``) over ``usage_groups``; then, for the
    groups whose costs SQL could not add exactly, those records' costs
    summed in Python (from the records alone, for ``grouped``)."""
    slots = slots or grouped
    time = f"(slot * {SLOT_MS})" if slots else "started_ms"
    groups, group_params = group_exprs(query, segments, time, grouped)
    where, params = where_clause(query, slots)
    n = len(groups)
    if slots:
        table = "usage_groups" if grouped else "usage_slots"
        calls = "SUM(calls)"
        cost = "CASE WHEN SUM(priced) > 0 THEN SUM(cost_e12) END, MIN(cost_exp)"
        inexact = "SUM(priced > 0 AND cost_e12 IS NULL)"
        leftover = (
            "started_ms / 900000 IN (SELECT slot FROM usage_slots"
            " WHERE priced > 0 AND cost_e12 IS NULL)"
        )
    else:
        table, calls = "usage", "COUNT(*)"
        cost = "SUM(cost_e12), MIN(cost_exp)" if exact_in_sql else "NULL, NULL"
        leftover = "cost_e12 IS NULL" if exact_in_sql else "1"
        inexact = f"SUM(cost_total IS NOT NULL AND {leftover})"
    sql = (
        f"SELECT {', '.join(groups)}, {calls},"  # noqa: S608
        f" {', '.join(f'SUM({t})' for t in TOKEN_FIELDS)}, SUM(unpriced),"
        f" {cost}, {inexact} FROM {table}{where}"
        f" GROUP BY {', '.join(str(i + 1) for i in range(n))}"
    )
    rows = read(sql, [*group_params, *params])
    if grouped and any(row[-1] for row in rows):
        # Costs SQL cannot add exactly (rare): the records answer it all.
        return totals_of(read, query, segments, slots=False, exact_in_sql=False)
    extra: dict[tuple[Any, ...], list[Decimal]] = {}
    if any(row[-1] for row in rows):  # costs SQL cannot add exactly
        groups, group_params = group_exprs(query, segments, "started_ms")
        where, params = where_clause(query)
        more = " AND " if where else " WHERE "
        sql = (
            f"SELECT {', '.join(groups)}, cost_total FROM usage{where}"  # noqa: S608
            f"{more}cost_total IS NOT NULL AND {leftover}"
        )
        for row in read(sql, [*group_params, *params]):
            extra.setdefault(tuple(row[:n]), []).append(Decimal(row[n]))
    found = []
    for row in rows:
        key = tuple(row[:n])
        summed, exponent = row[n + 7], row[n + 8]
        parts: list[Decimal] = []
        if summed is not None:
            exact = Decimal(summed) / E12
            parts.append(exact.quantize(Decimal(1).scaleb(exponent)))
        parts.extend(extra.get(key, []))
        labels = tuple(
            day_from_number(v) if name == "day" else v
            for name, v in zip(query.by, key, strict=True)
        )
        found.append(
            Totals(
                by=query.by,
                key=labels,
                calls=row[n],
                **{t: row[n + 1 + i] for i, t in enumerate(TOKEN_FIELDS)},
                unpriced_calls=row[n + 6],
                cost_total=sum(parts[1:], parts[0]) if parts else None,
            )
        )
    return sorted_totals(found)
