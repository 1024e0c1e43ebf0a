"""Ranking the models that fit: within the wanted tier, else the nearest.

Within a tier, healthy models come before degraded ones and priced before
unpriced; then, by ``prefer``, the cheaper estimate for this request before
the faster observed median latency (``cost``) or the other way round
(``latency``); then the higher quality (ties break upward); then the
configuration order. When no model of the wanted tier fits, the nearest tier
with one serves: the stronger of two equally near, as a weaker model is the
riskier guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .candidates import Assessed

__all__ = ["Ranked", "rank"]

_OTHER_TIER = ("other_tier",)


@dataclass(frozen=True, slots=True)
class Ranked:
    """The outcome of ranking: the choice (None: nothing fits) and every
    model in the order the decision lists them: the chosen
    tier in rank order, the other fitting models, then the ones that cannot
    serve, each of the last two in configuration order."""

    chosen: Assessed | None
    ordered: list[Assessed]


def rank(assessed: list[Assessed], wanted: int, tiers: int, prefer: str) -> Ranked:
    """Pick among ``assessed`` for the tier at rank ``wanted`` (of ``tiers``)
    and give every model its ranking reason."""
    by_tier: dict[int, list[Assessed]] = {}
    blocked: list[Assessed] = []
    for seen in assessed:
        if seen.blocked:
            blocked.append(seen)
        else:
            by_tier.setdefault(seen.placed.rank, []).append(seen)
    served = _nearest(by_tier, wanted, tiers)
    if served is None:
        return Ranked(None, blocked)
    group = by_tier[served]
    if len(group) > 1:
        group.sort(key=_cost_first if prefer == "cost" else _fast)
    chosen = group[0]
    step = (served > wanted) - (served < wanted)
    _chosen_reasons(chosen, len(group), step, prefer)
    lower = ("pricier",) if prefer == "cost" else ("slower",)
    for other in group[1:]:
        other.ranked = lower
    # The other fitting models, in configuration order.
    rest = [a for a in assessed if not a.blocked and a.placed.rank != served]
    for other in rest:
        other.ranked = _OTHER_TIER
    return Ranked(chosen, [*group, *rest, *blocked])


def _nearest(by_tier: dict[int, list[Assessed]], wanted: int, tiers: int) -> int | None:
    for distance in range(tiers):
        for rank in (wanted + distance, wanted - distance):
            if rank in by_tier:
                return rank
    return None


def _chosen_reasons(chosen: Assessed, fits: int, step: int, prefer: str) -> None:
    if fits == 1:
        first = "only_fit"
    else:
        first = "cheapest_fit" if prefer == "cost" else "fastest_fit"
    if step:
        chosen.ranked = (first, "stepped_up" if step > 0 else "stepped_down")
    else:
        chosen.ranked = (first,)


def _latency(seen: Assessed) -> float:
    return math.inf if seen.latency_ms is None else seen.latency_ms


def _cost_first(seen: Assessed) -> tuple[object, ...]:
    return (
        seen.health != "healthy",
        seen.cost is None,
        seen.cost or 0,
        _latency(seen),
        -seen.placed.quality,
        seen.placed.index,
    )


def _fast(seen: Assessed) -> tuple[object, ...]:
    return (
        seen.health != "healthy",
        _latency(seen),
        seen.cost is None,
        seen.cost or 0,
        -seen.placed.quality,
        seen.placed.index,
    )
