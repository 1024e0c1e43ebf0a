"""What smart routing decided for one call: `RoutingDecision` and its parts.

Wire-level types (no behaviour beyond describing themselves): the router in
``palyra._routing`` builds them, ``reply.palyra.routing`` carries one, and the
ledger keeps its `RoutingDecision.summary`.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator
from pydantic.json_schema import SkipJsonSchema

from ._explained import explain
from ._usage import built

__all__ = [
    "REASON_CODES",
    "ROW_FIELDS",
    "UNSERVABLE",
    "RoutingCandidate",
    "RoutingDecision",
    "RoutingFeatures",
    "row_of",
    "summary_of",
]

Health = Literal["healthy", "degraded", "unhealthy"]

REASON_CODES = {
    # Why a model could not serve this request (it is not eligible):
    "disabled": "the model or its provider has enabled = false",
    "no_tier": "the model has neither a tier nor a quality",
    "no_vision": "the request has images and the model takes none",
    "no_tools": "the request has tools and the model calls none",
    "no_json_mode": "the request asks for JSON and the model cannot enforce it",
    "no_streaming": "the request streams and the model does not",
    "context_too_small": "prompt plus output exceed the context window",
    "output_too_small": "the output asked for exceeds the model's maximum",
    "breaker_open": "its circuit breaker is open",
    "unhealthy": "its recent calls failed",
    "credential_refused": "its provider refused the credential",
    "over_budget": "its worst case would pass a hard budget of this call's scope",
    "unpriced_budget": "a USD budget of this call's scope blocks unpriced models",
    "budget_unavailable": "a budget that blocks on ledger errors cannot be read",
    # How an eligible model ranked:
    "cheapest_fit": "chosen: the cheapest model of the tier that fits",
    "fastest_fit": "chosen: the fastest model of the tier that fits",
    "only_fit": "chosen: the only model of the tier that fits",
    "stepped_up": "chosen from a stronger tier: none of the wanted tier fits",
    "stepped_down": "chosen from a weaker tier: none of the wanted tier fits",
    "pricier": "fits the tier, but another model is cheaper",
    "slower": "fits the tier, but another model is faster",
    "other_tier": "fits, but serves another tier",
    "degraded": "some of its recent calls failed (ranked after healthy ones)",
    "unpriced": "no price is known (ranked after priced models)",
    "requested": "the model the caller (or the default) named",
}
"""Every reason code a `RoutingCandidate` may carry, with what it means."""

UNSERVABLE = frozenset(
    {
        "disabled",
        "no_vision",
        "no_tools",
        "no_json_mode",
        "no_streaming",
        "context_too_small",
        "output_too_small",
    }
)
"""The reasons that say a model could not have served the request at all
(where a breaker, health or a budget only say it could not serve it now)."""


class _Decided(BaseModel):
    # Schemas are built on first use, keeping `import palyra` light.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class RoutingFeatures(_Decided):
    """The signals a request's score was computed from.

    Attributes:
        prompt_tokens: The prompt's tokens, counted with tiktoken.
        messages: How many messages the request has.
        images: Image parts in the messages.
        tools: Tool definitions offered.
        json_mode: Whether the request asks for a JSON answer.
        code_blocks: Fenced code blocks (```) in the messages.
        keywords: The reasoning and analysis keywords found.
        output_tokens: The output the request asks for (0: unspecified).
        hint: The task hint given, if any.
        parts: Each signal's weighted part of the score (``hint``: its
            shift), only those that added something.
    """

    prompt_tokens: int
    messages: int
    images: int
    tools: int
    json_mode: bool
    code_blocks: int
    keywords: tuple[str, ...]
    output_tokens: int
    hint: str | None
    parts: dict[str, float]


class RoutingCandidate(_Decided):
    """One registry model as routing saw it for a request.

    Attributes:
        model: Its id.
        provider: Its provider's id.
        tier: The tier it serves (None: it has none).
        quality: Its ``quality``, if set.
        estimated_cost: USD for this request at the expected usage (the
            prompt, at the share the model has lately read from its prompt
            cache, plus the expected output); None when unpriced.
        latency_ms: Median latency of its recent successful calls (None:
            none observed).
        health: Its recent health.
        eligible: Whether it can serve the request.
        reasons: Reason codes (`REASON_CODES`), the first says the most.
    """

    model: str
    provider: str
    tier: str | None
    quality: float | None
    estimated_cost: Decimal | None
    latency_ms: float | None
    health: Health
    eligible: bool
    reasons: tuple[str, ...]


class RoutingDecision(_Decided):
    """What smart routing decided for one request, and why.

    Attributes:
        mode: ``off``, ``suggest``, ``dry_run`` or ``enforced``: the mode in
            effect (``client.route`` decides even when it is ``off``).
        score: The complexity score, in [0, 1].
        tier: The tier the score (or the hint) asks for.
        requested: The model the caller, or the default, named.
        chosen: The model routing picks (the requested one when nothing fits).
        chosen_tier: The tier of ``chosen`` (None when it has none).
        serves: The model the call goes to first: ``chosen`` when enforced,
            else ``requested`` (after a failure, failover may move on).
        features: The signals the score came from.
        candidates: Every chat model of the registry, in ranking order:
            eligible ones first.
        explanation: One sentence saying why.

    ``candidates`` and ``explanation`` are made from the decision the first
    time they are read (most calls never read them). Given to the
    constructor, or read back from JSON, candidates are kept (their costs at
    the ten places costs are rounded to) and an ``explanation`` is ignored:
    the sentence is always written from the fields. The JSON schema is the
    serialization one, which a dump validates against.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        defer_build=True,
        json_schema_mode_override="serialization",
    )

    mode: Literal["off", "suggest", "dry_run", "enforced"]
    score: float
    tier: str
    requested: str
    chosen: str
    chosen_tier: str | None
    serves: str
    features: RoutingFeatures
    # The candidates as plain rows (`ROW_FIELDS`): routing decides for every
    # call, and most calls never read them, so `candidates` are made from
    # these on first use.
    rows: SkipJsonSchema[tuple[tuple[Any, ...], ...]] = Field(
        default=(), exclude=True, repr=False
    )

    def __setattr__(self, name: str, value: Any) -> None:
        # Frozen, the made-on-first-use parts included (pydantic would let a
        # cached property be set, and the rows would then say otherwise).
        if name in ("candidates", "explanation"):
            raise AttributeError(f"RoutingDecision is frozen: cannot set {name!r}")
        super().__setattr__(name, value)

    @model_validator(mode="before")
    @classmethod
    def _from_written(cls, data: Any) -> Any:
        # What a dump holds (candidates, the explanation) becomes the rows it
        # was made from; the sentence is written again from the fields.
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if k != "explanation"}
        if "candidates" in data:
            given = data.pop("candidates")
            data["rows"] = tuple(
                row_of(RoutingCandidate.model_validate(c)) for c in given
            )
        return data

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def candidates(self) -> tuple[RoutingCandidate, ...]:
        """Every chat model of the registry, in ranking order: eligible
        ones first (made on first use)."""
        return tuple(_candidate(row) for row in self.rows)

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def explanation(self) -> str:
        """One sentence saying why: the score and what drove it, the choice
        and why, what was skipped, and which model serves (written on first
        use, from the decision's fields)."""
        return explain(self)

    def candidate(self, model: str) -> RoutingCandidate | None:
        """The candidate of this model id, if it is one."""
        return next((c for c in self.candidates if c.model == model), None)

    def summary(self) -> str:
        """The decision as the ledger keeps it: compact JSON of the mode,
        score, tiers, the requested and chosen models (with their
        providers), whether the requested model could have served, and the
        chosen one's reasons."""
        return summary_of(self)


ROW_FIELDS = tuple(RoutingCandidate.model_fields)
"""The fields of a `RoutingCandidate`, in the order of a decision's rows."""
_MODEL, _PROVIDER, _REASONS = 0, 1, ROW_FIELDS.index("reasons")


_COST = ROW_FIELDS.index("estimated_cost")


def row_of(candidate: RoutingCandidate) -> tuple[Any, ...]:
    """A candidate as a decision's row: its fields in `ROW_FIELDS` order,
    the estimated cost as an integer of 10**-10 USD (what the router makes:
    exact at the ten places costs are rounded to, and cheap to compare)."""
    row = [getattr(candidate, name) for name in ROW_FIELDS]
    cost = row[_COST]
    if cost is not None:
        row[_COST] = int(cost.scaleb(10).to_integral_value(ROUND_HALF_EVEN))
    return tuple(row)


def _candidate(row: tuple[Any, ...]) -> RoutingCandidate:
    values = dict(zip(ROW_FIELDS, row, strict=True))
    units = values["estimated_cost"]
    if units is not None:
        values["estimated_cost"] = Decimal(units).scaleb(-10)
    return built(RoutingCandidate, values)


def summary_of(decision: RoutingDecision) -> str:
    """`RoutingDecision.summary`, read off the rows (no candidate is made)."""
    by_id = {row[_MODEL]: row for row in decision.rows}
    requested, chosen = by_id.get(decision.requested), by_id.get(decision.chosen)
    data: dict[str, Any] = {
        "v": 1,
        "mode": decision.mode,
        "score": round(decision.score, 4),
        "tier": decision.tier,
        "requested": decision.requested,
        "requested_provider": requested[_PROVIDER] if requested else None,
        "requested_fits": requested is not None
        and not UNSERVABLE.intersection(requested[_REASONS]),
        "chosen": decision.chosen,
        "chosen_provider": chosen[_PROVIDER] if chosen else None,
        "chosen_tier": decision.chosen_tier,
        "reasons": list(chosen[_REASONS]) if chosen else [],
    }
    return json.dumps(data, separators=(",", ":"))
