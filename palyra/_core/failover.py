"""Failover planning: which models may serve a call, in which order.

Pure: the pipeline asks `plan` for the candidates of a call and tells the
plan about each failure, which narrows what is left. Ordering (documented in
``docs/resilience.md``):

1. the requested model;
2. its explicit ``fallbacks`` list, in order, when the model entry has one;
3. otherwise every other enabled model of the same role that can do what the
   request needs, ordered healthy before degraded before unhealthy, providers
   whose credential was refused last, then the same upstream model on another
   provider first, then cheaper cost tiers, then faster latency tiers, then
   configuration order.

Automatic candidates are bounded by ``resilience.failover`` (any model, the
same provider only, or none) and ``failover_max_price_ratio`` (never a model
priced above that multiple of the failed one's price; for unpriced models,
never a higher cost tier). Embeddings fail over automatically only to the
same upstream model with the same dimensions: vectors of different models are
not comparable, so a silent switch would corrupt an index. An explicit
``fallbacks`` list is trusted and crosses every bound.

`FailoverLog` says, at WARNING, when a call moves to another model.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator

from .._config import ResilienceConfig
from .._registry import Registry, ResolvedModel
from .._request import Needs
from .failures import CREDENTIAL_CLASSES, Failure, FailureClass
from .health import HealthTracker

__all__ = ["FailoverLog", "Plan", "plan"]

logger = logging.getLogger("palyra")

_COST = {"low": 0, "standard": 1, "premium": 2}
_LATENCY = {"low": 0, "standard": 1, "high": 2}
# Failures that rule out the provider, not only the model: its other models
# would refuse the same credential, or connect to the same refused address.
_PROVIDER_WIDE = CREDENTIAL_CLASSES | {FailureClass.BLOCKED}


class Plan:
    """The candidates of one call, consumed in order and narrowed by failures.

    Only the first candidate is known up front: the others are worked out on
    the first failure, so a call that succeeds pays nothing for failover.
    """

    __slots__ = ("_first", "_more", "_queue")

    def __init__(
        self,
        first: ResolvedModel,
        more: Callable[[], list[ResolvedModel]] = list,
    ) -> None:
        self._first: ResolvedModel | None = first
        self._more = more
        self._queue: deque[ResolvedModel] | None = None

    def __iter__(self) -> Iterator[ResolvedModel]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        while self._pending():
            yield self._pending().popleft()

    def _pending(self) -> deque[ResolvedModel]:
        if self._queue is None:
            self._queue = deque(self._more())
        return self._queue

    def narrow(self, model: ResolvedModel, failure: Failure) -> None:
        """Drop the candidates that ``failure`` of ``model`` rules out."""
        if not failure.failover:
            # The request itself is at fault: anyone would refuse it.
            self._queue = deque()
        elif failure.cls in _PROVIDER_WIDE:
            provider = model.provider.id
            self._keep(lambda m: m.provider.id != provider)
        elif failure.cls is FailureClass.CONTEXT_OVERFLOW:
            window = model.entry.context_window
            if window is None:
                self._queue = deque()  # nothing is known to be larger
            else:
                self._keep(lambda m: (m.entry.context_window or 0) > window)

    def _keep(self, wanted: Callable[[ResolvedModel], bool]) -> None:
        self._queue = deque(m for m in self._pending() if wanted(m))


def plan(
    registry: Registry,
    primary: ResolvedModel,
    needs: Needs,
    health: HealthTracker,
    resilience: ResilienceConfig,
) -> Plan:
    """The ordered candidates for a call to ``primary`` (itself first).

    Args:
        registry: Where the other models come from.
        primary: The model the caller asked for (already checked to serve).
        needs: What the request needs (vision, tools, JSON mode, ...).
        health: Recent health, for ordering.
        resilience: How far automatic failover (without an explicit
            ``fallbacks`` list) may go.
    """
    explicit = primary.entry.fallbacks
    if explicit is not None:

        def named() -> list[ResolvedModel]:
            found = (registry.find(name) for name in explicit)
            return [m for m in found if m is not None and _serves(m, primary, needs)]

        return Plan(primary, named)
    if resilience.failover == "off":
        return Plan(primary)
    return Plan(
        primary, lambda: _automatic(registry, primary, needs, health, resilience)
    )


def _automatic(
    registry: Registry,
    primary: ResolvedModel,
    needs: Needs,
    health: HealthTracker,
    resilience: ResilienceConfig,
) -> list[ResolvedModel]:
    pool = [
        m
        for m in registry.models.values()
        if m is not primary
        and _serves(m, primary, needs)
        and _within(m, primary, resilience)
    ]
    if primary.role == "embeddings":
        dims = primary.entry.dimensions
        pool = [
            m
            for m in pool
            if m.upstream == primary.upstream and m.entry.dimensions == dims
        ]
    order = {id(m): i for i, m in enumerate(registry.models.values())}

    def rank(m: ResolvedModel) -> tuple[int, ...]:
        return (
            health.order((m.provider.id, m.id)),
            health.credential_problem(m.provider.id) is not None,
            m.upstream != primary.upstream,
            _COST.get(m.entry.cost_tier or "standard", 1),
            _LATENCY.get(m.entry.latency_tier or "standard", 1),
            order[id(m)],
        )

    return sorted(pool, key=rank)


def _serves(model: ResolvedModel, primary: ResolvedModel, needs: Needs) -> bool:
    if model.role != primary.role or not model.usable:
        return False
    capabilities = model.capabilities
    return all(getattr(capabilities, name) for name in needs.names())


def _within(
    model: ResolvedModel, primary: ResolvedModel, resilience: ResilienceConfig
) -> bool:
    """Whether automatic failover may move from ``primary`` to ``model``."""
    if (
        resilience.failover == "same_provider"
        and model.provider is not primary.provider
    ):
        return False
    ratio = resilience.failover_max_price_ratio
    if ratio is None:
        return True
    price, limit = _price(model), _price(primary)
    if price is not None and limit is not None:
        return price <= limit * ratio
    tier, top = model.entry.cost_tier, primary.entry.cost_tier
    if tier is not None and top is not None:
        return _COST[tier] <= _COST[top]
    return True  # nothing to compare: give models pricing or a cost_tier


def _price(model: ResolvedModel) -> float | None:
    pricing = model.entry.pricing
    return None if pricing is None else float(pricing.input + pricing.output)


class FailoverLog:
    """Logs each move to another model at WARNING: which model failed, which
    takes over, and why, at most once a minute per (from, to, why).

    Args:
        clock: Monotonic seconds (tests pass their own).
        every: Seconds between two lines about the same move.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, every: float = 60.0
    ) -> None:
        self._clock = clock
        self._every = every
        self._last: dict[tuple[str, str, str], float] = {}

    def moved(self, failed: ResolvedModel, next_model: ResolvedModel, why: str) -> None:
        """A call moves from ``failed`` to ``next_model`` because of ``why``."""
        key = (_name(failed), _name(next_model), why)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._every:
            return
        self._last[key] = now
        logger.warning(
            "palyra: failing over from %s to %s after %s (logged once a minute"
            " per pair; see reply.palyra.attempts)",
            key[0],
            key[1],
            why,
        )


def _name(model: ResolvedModel) -> str:
    return f"{model.provider.id}/{model.id}"
