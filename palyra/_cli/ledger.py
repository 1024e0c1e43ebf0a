"""``palyra usage`` (totals from the ledger: tables, ``--json``, ``--csv``,
``--chart`` of daily spend) and ``palyra budgets`` (each budget's standing)."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from .dispatch import client_from
from .output import CommandError, bars, emit_csv, emit_json, emit_rows, table

__all__ = ["run", "since_of"]

_AGO = re.compile(r"^([0-9]{1,6})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def run(args: argparse.Namespace) -> int:
    """``usage`` or ``budgets``."""
    with client_from(args) as client:
        if args.command == "usage":
            return _usage(client, args)
        return _budgets(client, args)


def since_of(text: str | None, now: datetime) -> datetime | None:
    """``7d``, ``24h``, ``90m``, ``2w`` before ``now``, or an ISO date/time (UTC
    unless it says).

    Raises:
        CommandError: neither (a usage error).
    """
    if text is None:
        return None
    found = _AGO.match(text)
    if found:
        try:
            return now - timedelta(**{_UNITS[found[2]]: int(found[1])})
        except OverflowError:
            raise CommandError(f"--since: {text!r} reaches before year 1", 2) from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"--since: give 7d, 24h, 90m, 2w or an ISO date, not {text!r}", 2
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _usage(client: Any, args: argparse.Namespace) -> int:
    since = since_of(args.since, datetime.now(UTC))
    filters = {"agent": args.agent} if args.agent else {}
    by = tuple(part.strip() for part in ("day" if args.chart else args.by).split(","))
    totals = client.usage.totals(by=by, since=since, tz=args.tz, **filters)
    headers = [*by, "calls", "input", "cached", "output", "cost_usd", "unpriced"]
    rows = [
        [*t.key, t.calls,
         t.input_uncached + t.cache_write, t.cache_read, t.output, t.cost_total,
         t.unpriced_calls]
        for t in totals
    ]  # fmt: skip
    if args.json:
        emit_json([dict(zip(headers, row, strict=True)) for row in rows])
    elif args.csv:
        emit_csv(headers, rows)
    elif args.chart:
        spend = [(_day(t), t.cost_total or 0) for t in totals]
        print("daily spend (USD)" + (f" since {since:%Y-%m-%d}" if since else ""))
        print(bars(spend))
    else:
        print(table(headers, rows) if rows else "(no calls recorded)")
    return 0


def _budgets(client: Any, args: argparse.Namespace) -> int:
    found = client.budgets.status()
    rows = [
        [s.policy, s.metric, _scope(s), s.window, s.spent, s.reserved, s.remaining,
         s.state,
         s.resets_at.isoformat(timespec="minutes") if s.resets_at else None]
        for s in found
    ]  # fmt: skip
    headers = ["budget", "metric", "scope", "window", "spent", "reserved", "remaining",
               "state", "resets at"]  # fmt: skip
    emit_rows(headers, rows, args.json, "(no budgets configured)")
    return 0


def _scope(status: Any) -> str:
    if status.scope == "global":
        return "global"
    return f"{status.scope}={status.scope_value}"


def _day(row: Any) -> str:
    """A chart's label: the day, and its calls without a price, if any."""
    label = str(row.key[0])
    if row.unpriced_calls:
        label += f" (+{row.unpriced_calls} unpriced)"
    return label
