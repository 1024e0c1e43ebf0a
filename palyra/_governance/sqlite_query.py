"""How a ledger `Query` becomes SQL over the ``usage`` table or its
15-minute ``usage_slots``.

Names in the SQL come from fixed tables (``BY_COLUMNS``, ``FILTER_COLUMNS``)
and from computed integers, never from a caller's text; values are bound.
"""

from __future__ import annotations

from typing import Any

from .ledger import BY_COLUMNS, Query
from .sqlite_schema import SLOT_MS

__all__ = ["day_expr", "group_exprs", "slots_answer", "where_clause"]


def slots_answer(query: Query, segments: list[tuple[int, int]]) -> bool:
    """Whether ``usage_slots`` (15-minute sums) answers ``query`` exactly:
    day totals of all records, over whole slots, in a zone whose offsets and
    transitions fall on slot boundaries (every zone's, since 1970)."""
    if query.by != ("day",) or query.columns or query.tags:
        return False
    edges = [query.since_ms, query.until_ms]
    # Every offset, and every transition but the range's start (not one).
    zone = [segments[0][1], *(ms for pair in segments[1:] for ms in pair)]
    return all(ms is None or ms % SLOT_MS == 0 for ms in edges) and all(
        ms % SLOT_MS == 0 for ms in zone
    )


def group_exprs(
    query: Query, segments: list[tuple[int, int]], time: str
) -> tuple[list[str], list[Any]]:
    """SQL expressions for the grouping keys, and their parameters."""
    exprs: list[str] = []
    params: list[Any] = []
    for name in query.by:
        if name == "day":
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
