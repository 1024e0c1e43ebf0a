"""`Router`: one request in, one `RoutingDecision` out, no provider called.

Pure apart from what it reads: the tokenizer (counts are memoised, so the
call that follows pays nothing more for them), the health windows, the price
table and, for budget headroom, a budget window's spent-to-date (read from
the ledger once per window, as budgets do at dispatch).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .._config import RoutingConfig, RoutingMode
from .._decision import RoutingDecision, RoutingFeatures
from .._exceptions import InvalidRequestError
from .._registry import Registry, ResolvedModel
from .._request import ChatRequest, Needs
from .._tokens import TokenCounter, TokenEstimate
from .._usage import built
from .candidates import Assessed, Assessor, Facts, Lineup
from .ranking import rank
from .scoring import score, tier_for
from .signals import Scanner

__all__ = ["Decided", "Router"]

Decided = tuple[RoutingDecision, ResolvedModel, TokenEstimate]


class Router:
    """Smart routing's decisions for one client.

    Args:
        registry: The models to choose from.
        config: The ``[routing]`` table.
        counter: Returns the token counter.
        assessor: Health, prices and budgets, per model.
    """

    def __init__(
        self,
        registry: Registry,
        config: RoutingConfig,
        counter: Callable[[], TokenCounter],
        assessor: Assessor,
    ) -> None:
        self.config = config
        self._registry = registry
        self._lineup: Lineup | None = None  # placed on first use: Palyra() stays cheap
        self._counter = counter
        self._assessor = assessor
        self._ranks = {name: i for i, name in enumerate(config.tiers)}
        self._scanner = Scanner(config.keywords)

    @property
    def lineup(self) -> Lineup:
        """The registry's chat models, placed in their tiers (worked out on
        the first decision; two threads racing there place them twice)."""
        lineup = self._lineup
        if lineup is None:
            lineup = self._lineup = Lineup(self._registry, self.config)
        return lineup

    def decide(
        self,
        request: ChatRequest,
        requested: ResolvedModel,
        party: Any,
        mode: RoutingMode,
        hint: str | None = None,
    ) -> Decided:
        """Decide which model should serve ``request``.

        Returns:
            The decision, the model routing chose (``requested`` when nothing
            fits) and the prompt's token estimate.

        Raises:
            InvalidRequestError: an unknown task hint.
        """
        config = self.config
        shift, prefer, pinned = self.hint_of(hint)
        tools = request.body.get("tools")
        estimate = self._counter().estimate_chat(
            requested.upstream, request.messages, tools
        )
        asked = request.requested_output_tokens
        signals = self._scanner.measure(
            request.messages,
            tools,
            json_mode=request.needs.json_mode,
            prompt_tokens=estimate.prompt_tokens,
            output_tokens=asked,
        )
        value, parts = score(signals, config.weights, shift)
        value = round(value, 6)  # the last float bits say nothing
        tier = pinned or tier_for(value, config.tiers)
        facts = Facts(
            needed=_needed(request.needs),
            prompt_tokens=estimate.prompt_tokens,
            output_asked=asked,
            output_expected=asked or config.expected_output_tokens,
            party=party,
            now=datetime.now(UTC),
        )
        assessed = self._assessor.assess(self.lineup, facts)
        ranked = rank(assessed, self._ranks[tier], len(self._ranks), prefer)
        chosen = requested if ranked.chosen is None else ranked.chosen.placed.model
        features = built(
            RoutingFeatures,
            {
                "prompt_tokens": signals.prompt_tokens,
                "messages": signals.messages,
                "images": signals.images,
                "tools": signals.tools,
                "json_mode": signals.json_mode,
                "code_blocks": signals.code_blocks,
                "keywords": signals.keywords,
                "output_tokens": signals.output_tokens,
                "hint": hint,
                "parts": parts,
            },
        )
        fit = ranked.chosen
        decision = built(
            RoutingDecision,
            {
                "mode": mode,
                "score": value,
                "tier": tier,
                "requested": requested.id,
                "chosen": chosen.id,
                "chosen_tier": None if fit is None else fit.placed.tier,
                "serves": chosen.id if mode == "enforced" else requested.id,
                "features": features,
                "rows": tuple([_row(seen, requested) for seen in ranked.ordered]),
            },
        )
        return decision, chosen, estimate

    def hint_of(self, hint: str | None) -> tuple[float, str, str | None]:
        """The hint's shift, the ranking preference and a pinned tier.

        Raises:
            InvalidRequestError: an unknown hint, naming the known ones.
        """
        config = self.config
        if hint is None:
            return 0.0, config.prefer, None
        found = config.hints.get(hint)
        if found is None:
            known = ", ".join(sorted(config.hints))
            raise InvalidRequestError(
                f"hint: unknown task hint {hint!r}; known hints: {known}"
                " (add more under [routing.hints])"
            )
        return found.shift, found.prefer or config.prefer, found.tier


def _row(seen: Assessed, requested: ResolvedModel) -> tuple[Any, ...]:
    """A model as the decision's row (`palyra._decision.ROW_FIELDS`)."""
    placed = seen.placed
    provider, model = placed.key
    return (
        model,
        provider,
        placed.tier,
        placed.model.entry.quality,
        seen.cost,
        seen.latency_ms,
        seen.health,
        not seen.blocked,
        seen.reasons(placed.model is requested),
    )


_NEEDED: dict[tuple[bool, ...], frozenset[str]] = {}


def _needed(needs: Needs) -> frozenset[str]:
    """The capability names a request needs (a handful of sets, made once)."""
    key = (needs.vision, needs.tools, needs.json_mode, needs.streaming)
    found = _NEEDED.get(key)
    if found is None:
        found = _NEEDED[key] = frozenset(needs.names())
    return found
