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

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .._config import RoutingConfig
from .._core import HealthTracker
from .._governance import BudgetEngine, Meter, Party, PriceEntry, estimated_units
from .._registry import Registry, ResolvedModel
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
    """A chat model, where routing places it, and what never changes about
    it (worked out once, read for every request)."""

    model: ResolvedModel
    tier: str | None
    rank: int  # the tier's position, weakest first (-1: no tier)
    quality: float  # its quality, else its tier's start: breaks ties upward
    index: int  # its position in the configuration, the last tie-break
    key: tuple[str, str]  # (provider id, model id): health's and shares' key
    fixed: tuple[str, ...]  # reasons that rule it out for any request
    lacks: tuple[tuple[str, str], ...]  # (capability, reason) it does not have
    window: int | None  # its context window
    max_output: int | None  # the most output it gives
    priced_as: tuple[str, str, str]  # (provider id, kind, upstream name)


class Lineup:
    """The registry's chat models, placed in their tiers."""

    def __init__(self, registry: Registry, config: RoutingConfig) -> None:
        ranks = {name: i for i, name in enumerate(config.tiers)}
        self.models = tuple(
            _placed(model, index, config, ranks)
            for index, model in enumerate(registry.models.values())
            if model.role == "chat"
        )
        self.tiers = tuple(config.tiers)


def _placed(
    model: ResolvedModel, index: int, config: RoutingConfig, ranks: dict[str, int]
) -> Placed:
    entry, provider = model.entry, model.provider
    tier = entry.tier
    if tier is None and entry.quality is not None:
        tier = config.tier_of(entry.quality)
    quality = entry.quality
    if quality is None:
        quality = config.tiers[tier] if tier is not None else 0.0
    return Placed(
        model=model,
        tier=tier,
        rank=ranks[tier] if tier is not None else -1,
        quality=quality,
        index=index,
        key=(provider.id, model.id),
        fixed=("disabled",) * (not model.usable) + ("no_tier",) * (tier is None),
        lacks=tuple(
            (need, reason)
            for need, reason in _CAPABILITIES
            if not getattr(model.capabilities, need)
        ),
        window=entry.context_window,
        max_output=entry.max_output_tokens,
        priced_as=(provider.id, provider.kind, model.upstream),
    )


@dataclass(slots=True)
class Facts:
    """What one request asks of a model."""

    needed: frozenset[str]  # the capabilities it needs (`Needs.names`)
    prompt_tokens: int
    output_asked: int  # max_tokens given by the caller (0: none)
    output_expected: int  # what the request is priced with
    party: Party  # the caller, for budgets' scopes
    now: datetime


class Assessed:
    """One model as seen for one request: what rules it out (``blocked``,
    empty when it fits) and, once ranked, how it ranked (``ranked``)."""

    __slots__ = ("blocked", "cost", "health", "latency_ms", "placed", "ranked")

    def __init__(
        self,
        placed: Placed,
        cost: int | None,
        latency_ms: float | None,
        health: str,
        blocked: tuple[str, ...],
    ) -> None:
        self.placed = placed
        self.cost = cost  # in 10**-10 USD (exact, and cheap to compare)
        self.latency_ms = latency_ms
        self.health = health
        self.blocked = blocked
        self.ranked: tuple[str, ...] = ()  # ranking's reasons, e.g. cheapest_fit

    @property
    def eligible(self) -> bool:
        """Whether nothing rules the model out."""
        return not self.blocked

    def reasons(self, requested: bool) -> tuple[str, ...]:
        """Every reason code, the first saying the most: how it ranked, what
        rules it out, then notes (degraded, unpriced, requested)."""
        found = self.ranked + self.blocked if self.blocked else self.ranked
        if self.health == "degraded":
            found += _DEGRADED
        if self.cost is None:
            found += _UNPRICED
        return found + _REQUESTED if requested else found


_DEGRADED, _UNPRICED, _REQUESTED = ("degraded",), ("unpriced",), ("requested",)
_TOO_SMALL, _OUTPUT_TOO_SMALL = ("context_too_small",), ("output_too_small",)
_BREAKER_OPEN, _UNHEALTHY = ("breaker_open",), ("unhealthy",)
_REFUSED = ("credential_refused",)
_UNKNOWN: Any = object()  # no price kept for the model yet


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
        budgets: BudgetEngine | None,
        shares: CacheShares,
    ) -> None:
        self.health = health
        self.meter = meter
        self.budgets = budgets
        self.shares = shares
        self.prices = meter.prices
        # (provider, model) -> its price, for prices that hold at every time
        self._fixed: dict[tuple[str, str], PriceEntry | None] = {}

    def assess(self, lineup: Lineup, facts: Facts) -> list[Assessed]:
        """Every model of the lineup, assessed, in configuration order."""
        # This runs for every model of every routed request, so it is one
        # loop over plain reads, with the lookups bound once.
        observed = self.health.observed
        refused = self.health.credential_problems()
        share, fixed = self.shares.share_of, self._fixed.get
        budgets = self.budgets if self.budgets and self.budgets.active else None
        needed, now = facts.needed, facts.now
        prompt, asked = facts.prompt_tokens, facts.output_asked
        expected = facts.output_expected
        wanted = prompt + (asked or expected)
        found: list[Assessed] = []
        for placed in lineup.models:
            key = placed.key
            refusing, status, latency = observed(key)
            # Tuples grown only when a reason is found: most models have none.
            blocked = placed.fixed
            for need, reason in placed.lacks:
                if need in needed:
                    blocked += (reason,)
            window, most = placed.window, placed.max_output
            if window is not None and wanted > window:
                blocked += _TOO_SMALL
            if most is not None and asked > most:
                blocked += _OUTPUT_TOO_SMALL
            if refusing:
                blocked += _BREAKER_OPEN
            elif status == "unhealthy":
                blocked += _UNHEALTHY
            if refused and key[0] in refused:
                blocked += _REFUSED
            if budgets is not None and not blocked:
                budget = self._budget_reason(budgets, placed.model, facts)
                if budget is not None:
                    blocked = (budget,)
            entry = fixed(key, _UNKNOWN)
            if entry is _UNKNOWN:
                entry = self._entry(placed, now)
            cost = None
            if entry is not None:
                cached = int(prompt * share(key, 0.0))
                output = expected if most is None or expected <= most else most
                cost = estimated_units(entry, prompt - cached, cached, output)
            found.append(Assessed(placed, cost, latency, status, blocked))
        return found

    def _entry(self, placed: Placed, now: datetime) -> PriceEntry | None:
        """The model's price now; a price that holds at every time is kept."""
        key = placed.key
        entry, always = self.prices.entry_at(*placed.priced_as, now)
        if always:
            self._fixed[key] = entry
        return entry

    def _budget_reason(
        self, budgets: BudgetEngine, model: ResolvedModel, facts: Facts
    ) -> str | None:
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
