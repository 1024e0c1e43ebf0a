"""``client.usage.routing_savings``: what smart routing saved, or would have.

Over the ledger's records of calls routed in ``dry_run`` or ``enforced``
mode, each record's tokens are priced twice: at the model the caller
requested (the *baseline*) and at the model routing chose (*routed*). For an
enforced call the routed side is what was paid and the baseline is the same
tokens at the requested model's price; for a dry run the baseline is what was
paid (the same tokens at the requested model's price, if a failover served
the call) and the routed side the same tokens at the chosen model's price. The
tokens themselves would have differed on another model: this prices the same
work, which is what a switch decision needs. A record either side of which
has no price is counted apart, in ``unpriced``, and so is one the requested
model could not have served at all (an image for a model without vision),
in ``rescued``: there was nothing to save on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from .records import UsageRecord

__all__ = ["SAVINGS_MODES", "RoutingSavings", "routing_savings"]

SAVINGS_MODES = ("dry_run", "enforced")

Reprice = Callable[[UsageRecord, str, str], Decimal | None]
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class RoutingSavings:
    """What routing saved (enforced) or would have saved (dry run).

    Attributes:
        mode: ``dry_run``, ``enforced``, or None for both together.
        records: Routed records in the span (of that mode).
        priced: Those priced on both sides (the sums below are theirs).
        unpriced: Those left out: no price for the requested or the chosen
            model (or the record itself is unpriced).
        rescued: Those left out because the requested model could not have
            served the request (routing chose one that could).
        paid: What the priced records cost.
        baseline: What they would have cost on the requested models.
        routed: What they cost, or would have, on routing's choices.
    """

    mode: str | None
    records: int
    priced: int
    unpriced: int
    rescued: int
    paid: Decimal
    baseline: Decimal
    routed: Decimal

    @property
    def saved(self) -> Decimal:
        """``baseline - routed`` (negative: routing cost more)."""
        return self.baseline - self.routed

    @property
    def saved_share(self) -> float | None:
        """``saved / baseline`` (None when the baseline is 0)."""
        return float(self.saved / self.baseline) if self.baseline else None


def routing_savings(
    records: Iterable[UsageRecord], reprice: Reprice, mode: str | None = None
) -> RoutingSavings:
    """Sum the savings of ``records`` (others than routed ones are skipped).

    Args:
        records: Ledger records.
        reprice: The record's tokens priced for (provider id, model id),
            at the record's time; None when unpriced.
        mode: Only records of this mode; None for both.
    """
    count = priced = unpriced = rescued = 0
    paid = baseline = routed = _ZERO
    for rec in records:
        summary = _summary(rec)
        if summary is None or summary["mode"] not in SAVINGS_MODES:
            continue
        if mode is not None and summary["mode"] != mode:
            continue
        count += 1
        if summary.get("requested_fits") is False:
            rescued += 1
            continue
        sides = _sides(rec, summary, reprice)
        if sides is None:
            unpriced += 1
            continue
        priced += 1
        paid += rec.cost_total or _ZERO
        baseline += sides[0]
        routed += sides[1]
    return RoutingSavings(
        mode, count, priced, unpriced, rescued, paid, baseline, routed
    )


def _summary(rec: UsageRecord) -> dict[str, object] | None:
    if not rec.routing:
        return None
    try:
        data = json.loads(rec.routing)
    except ValueError:
        return None  # not palyra's summary: nothing to compare
    return data if isinstance(data, dict) and "mode" in data else None


def _sides(
    rec: UsageRecord, summary: dict[str, object], reprice: Reprice
) -> tuple[Decimal, Decimal] | None:
    """(baseline, routed) of one record, or None when a side is unpriced.

    A side is what was paid when the record's model is that side's model,
    else the record's tokens at that model's price: so a call that failed
    over to a third model compares the models the decision named. An
    enforced call's routed side is what was paid, whatever served it.
    """
    paid = rec.cost_total
    if paid is None or rec.unpriced:
        return None
    requested, chosen = _model(summary, "requested"), _model(summary, "chosen")
    if requested is None or chosen is None:
        return None
    baseline = _priced(rec, requested, paid, reprice)
    if summary["mode"] == "enforced":
        routed: Decimal | None = paid
    else:
        routed = _priced(rec, chosen, paid, reprice)
    if baseline is None or routed is None:
        return None
    return baseline, routed


def _priced(
    rec: UsageRecord, model: tuple[str, str], paid: Decimal, reprice: Reprice
) -> Decimal | None:
    if model == (rec.provider, rec.model):
        return paid
    return reprice(rec, *model)


def _model(summary: dict[str, object], side: str) -> tuple[str, str] | None:
    model, provider = summary.get(side), summary.get(f"{side}_provider")
    if isinstance(model, str) and isinstance(provider, str):
        return provider, model
    return None
