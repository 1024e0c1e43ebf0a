"""The usage page's figures, read from the ledger (its totals, grouped by
the ledger itself), and the page and its CSV made from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from .._exceptions import LedgerError
from ._usage_page import totals_csv, usage_page

__all__ = ["csv", "page", "since"]


def since(days: int) -> datetime:
    """The start of the last ``days`` days, today's included: a UTC
    midnight, so that the ledger answers from its 15-minute sums."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days - 1)


async def _totals(client: Any, by: str, days: int) -> list[Any]:
    try:
        rows: list[Any] = await client.usage.atotals(by, since(days))
    except LedgerError:  # no ledger: nothing to show
        return []
    if by == "day":
        return sorted(rows, key=lambda t: t.key[0] or "")
    return sorted(rows, key=lambda t: (t.cost_total or 0, t.calls), reverse=True)


async def page(client: Any, root: str, days: int) -> bytes:
    """The usage page over the last ``days`` days."""
    return usage_page(
        root,
        days=days,
        by_day=await _totals(client, "day", days),
        by_model=await _totals(client, "model", days),
        by_agent=await _totals(client, "agent", days),
    )


async def csv(client: Any, by: str, days: int) -> bytes:
    """One of its tables as CSV."""
    return totals_csv(await _totals(client, by, days), by)
