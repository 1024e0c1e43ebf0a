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


@dataclass(frozen=True, slots=True)
class Ranked:
    """The outcome of ranking: the choice (None: nothing fits), the tier it
    came from relative to the wanted one (+1 stronger, -1 weaker, 0 the
    same) and every model in the order the decision lists them."""

    chosen: Assessed | None
    step: int
    ordered: list[Assessed]


def rank(assessed: list[Assessed], wanted: int, tiers: int, prefer: str) -> Ranked:
    """Pick among ``assessed`` for the tier at rank ``wanted`` (of ``tiers``)
    and give every model its ranking reason."""
    fitting = [a for a in assessed if a.eligible]
    by_tier: dict[int, list[Assessed]] = {}
    for seen in fitting:
        by_tier.setdefault(seen.placed.rank, []).append(seen)
    served = _nearest(by_tier, wanted, tiers)
    if served is None:
        return Ranked(None, 0, _listed([], fitting, assessed))
    group = sorted(by_tier[served], key=_cost_first if prefer == "cost" else _fast)
    chosen = group[0]
    step = (served > wanted) - (served < wanted)
    _chosen_reasons(chosen, len(group), step, prefer)
    for other in group[1:]:
        other.reasons.insert(0, "pricier" if prefer == "cost" else "slower")
    rest = [a for a in fitting if a.placed.rank != served]
    for other in rest:
        other.reasons.insert(0, "other_tier")
    return Ranked(chosen, step, _listed(group, rest, assessed))


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
    reasons = [first]
    if step:
        reasons.append("stepped_up" if step > 0 else "stepped_down")
    chosen.reasons[:0] = reasons


def _listed(
    group: list[Assessed], rest: list[Assessed], assessed: list[Assessed]
) -> list[Assessed]:
    """The chosen tier in rank order, the other fitting models, then the
    ones that cannot serve, each part in configuration order."""
    shown = {id(a) for a in group} | {id(a) for a in rest}
    return [*group, *rest, *(a for a in assessed if id(a) not in shown)]


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
