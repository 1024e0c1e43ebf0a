"""Which of the registry's chat models can serve a request, and at what price.

`Lineup` is the registry's chat models with their routing tier, fixed when
the client is built. `Assessor.assess` looks at each for one request, in
this order, and notes every reason it cannot serve: disabled, no tier, a
capability the request needs (vision, tools, JSON mode, streaming), a
context window too small for prompt plus output, an open breaker or bad
health, a refused credential, and last (only for models still fit, since it
may read the ledger) a hard budget of the call's scope that its worst case
would pass. Nothing is reserved: budgets decide again at dispatch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from .._config import RoutingConfig
from .._core import HealthTracker
from .._governance import Budgets, Meter, Party
from .._registry import Registry, ResolvedModel
from .._request import Needs
from .._usage import NormalizedUsage, trusted
from .shares import CacheShares

__all__ = ["Assessed", "Assessor", "Facts", "Lineup", "Placed"]

_CAPABILITIES = (
    ("vision", "no_vision"),
    ("tools", "no_tools"),
    ("json_mode", "no_json_mode"),
    ("streaming", "no_streaming"),
)
_BUDGET_REASONS = {
    "hard_limit": "over_budget",
    "unpriced": "unpriced_budget",
    "ledger_unavailable": "budget_unavailable",
}


@dataclass(frozen=True, slots=True)
class Placed:
    """A chat model and where routing places it."""

    model: ResolvedModel
    tier: str | None
    rank: int  # the tier's position, weakest first (-1: no tier)
    quality: float  # its quality, else its tier's start: breaks ties upward
    index: int  # its position in the configuration, the last tie-break


class Lineup:
    """The registry's chat models, placed in their tiers."""

    def __init__(self, registry: Registry, config: RoutingConfig) -> None:
        ranks = {name: i for i, name in enumerate(config.tiers)}
        placed: list[Placed] = []
        for index, model in enumerate(registry.models.values()):
            if model.role != "chat":
                continue
            entry = model.entry
            tier = entry.tier
            if tier is None and entry.quality is not None:
                tier = config.tier_of(entry.quality)
            quality = entry.quality
            if quality is None:
                quality = config.tiers[tier] if tier is not None else 0.0
            rank = ranks[tier] if tier is not None else -1
            placed.append(Placed(model, tier, rank, quality, index))
        self.models = tuple(placed)
        self.tiers = tuple(config.tiers)


@dataclass(frozen=True, slots=True)
class Facts:
    """What one request asks of a model."""

    needs: Needs
    prompt_tokens: int
    output_asked: int  # max_tokens given by the caller (0: none)
    output_expected: int  # what the request is priced with
    party: Party  # the caller, for budgets' scopes
    now: datetime


@dataclass(slots=True)
class Assessed:
    """One model as seen for one request."""

    placed: Placed
    cost: Decimal | None
    latency_ms: float | None
    health: str
    reasons: list[str] = field(default_factory=list)  # what rules it out first
    eligible: bool = True  # nothing rules it out


class Assessor:
    """Looks at each model for a request (health, prices, budgets).

    Args:
        health: Breakers and health windows (read, never changed).
        meter: Prices usage.
        budgets: The budget engine (asked, never reserved from), or None.
        shares: Each model's recent prompt-cache share.
    """

    def __init__(
        self,
        health: HealthTracker,
        meter: Meter,
        budgets: Budgets | None,
        shares: CacheShares,
    ) -> None:
        self.health = health
        self.meter = meter
        self.budgets = budgets
        self.shares = shares

    def assess(self, lineup: Lineup, facts: Facts) -> list[Assessed]:
        """Every model of the lineup, assessed, in configuration order."""
        return [self._one(placed, facts) for placed in lineup.models]

    def _one(self, placed: Placed, facts: Facts) -> Assessed:
        model = placed.model
        key = (model.provider.id, model.id)
        refusing, status, latency = self.health.observed(key)
        seen = Assessed(placed, self._cost(model, facts), latency, status)
        reasons = seen.reasons
        if not model.usable:
            reasons.append("disabled")
        if placed.tier is None:
            reasons.append("no_tier")
        caps = model.capabilities
        for need, reason in _CAPABILITIES:
            if getattr(facts.needs, need) and not getattr(caps, need):
                reasons.append(reason)
        reasons.extend(_size_reasons(model, facts))
        if refusing:
            reasons.append("breaker_open")
        elif status == "unhealthy":
            reasons.append("unhealthy")
        if self.health.credential_problem(model.provider.id) is not None:
            reasons.append("credential_refused")
        if not reasons:
            budget = self._budget_reason(model, facts)
            if budget is not None:
                reasons.append(budget)
        seen.eligible = not reasons
        if status == "degraded":
            reasons.append("degraded")
        if seen.cost is None:
            reasons.append("unpriced")
        return seen

    def _cost(self, model: ResolvedModel, facts: Facts) -> Decimal | None:
        """The request's price at the expected usage (None: unpriced)."""
        prompt = facts.prompt_tokens
        share = self.shares.share((model.provider.id, model.id))
        cached = int(prompt * share)
        output = facts.output_expected
        most = model.entry.max_output_tokens
        if most is not None:
            output = min(output, most)
        usage = trusted(
            NormalizedUsage,
            input_uncached=prompt - cached,
            cache_read=cached,
            cache_write=0,
            cache_write_5m=None,
            cache_write_1h=None,
            output=output,
            reasoning=0,
            estimated=True,
        )
        provider = model.provider
        cost = self.meter.cost(
            provider.id, provider.kind, model.upstream, usage, facts.now
        )
        return cost.total

    def _budget_reason(self, model: ResolvedModel, facts: Facts) -> str | None:
        budgets = self.budgets
        if budgets is None or not budgets.active:
            return None
        entry = model.entry
        worst = self.meter.worst_case(
            facts.prompt_tokens,
            facts.output_asked,
            entry.max_output_tokens,
            entry.context_window,
        )
        provider = model.provider
        cost = self.meter.cost(
            provider.id, provider.kind, model.upstream, worst, facts.now
        )
        refused = budgets.refuses(
            facts.party, worst, cost, provider=provider.id, model=model.id
        )
        return None if refused is None else _BUDGET_REASONS.get(refused, "over_budget")


def _size_reasons(model: ResolvedModel, facts: Facts) -> list[str]:
    """Whether prompt plus output fit the context window, and the output
    asked for the model's maximum."""
    reasons = []
    entry = model.entry
    window = entry.context_window
    output = facts.output_asked or facts.output_expected
    if window is not None and facts.prompt_tokens + output > window:
        reasons.append("context_too_small")
    most = entry.max_output_tokens
    if most is not None and facts.output_asked > most:
        reasons.append("output_too_small")
    return reasons
