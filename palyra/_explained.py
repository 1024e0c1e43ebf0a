"""The routing decision's one human sentence, written from the decision itself.

The score and what drove it, the choice and why, what was skipped, and which
model serves in the decision's mode. It reads only the decision's fields, so
a decision read back from JSON says the same, and a call whose decision no
one reads never pays for the sentence (`RoutingDecision.explanation` is
written on first use).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._decision import RoutingCandidate, RoutingDecision, RoutingFeatures

__all__ = ["explain"]

_SHOWN_PARTS = 3  # the signals that added most
_SHOWN_SKIPS = 3
_SERVES = {
    "off": "routing is off for calls, so {requested} would serve",
    "suggest": "suggest mode: {requested} serves",
    "dry_run": "dry run: {requested} serves and the choice is only measured",
    "enforced": "enforced: {chosen} serves",
}
_FIT = {
    "only_fit": "the only fit",
    "cheapest_fit": "the cheapest fit",
    "fastest_fit": "the fastest fit",
}


def explain(decision: RoutingDecision) -> str:
    """One sentence for the decision."""
    features = decision.features
    head = (
        f"Score {decision.score:.2f} asks for tier {decision.tier}{_drivers(features)}"
    )
    chosen = decision.candidate(decision.chosen) if decision.chosen_tier else None
    if chosen is None:
        pick = "no model fits the request, so the requested one stays"
    else:
        pick = f"{chosen.model} is {_why(chosen)}"
    serves = _SERVES[decision.mode].format(
        requested=decision.requested, chosen=decision.chosen
    )
    return f"{head}; {pick}{_skipped(decision.candidates)}; {serves}."


def _drivers(features: RoutingFeatures) -> str:
    parts = features.parts
    if not parts:
        return " (no signal)"
    top = sorted(parts.items(), key=lambda item: -abs(item[1]))[:_SHOWN_PARTS]
    shown = ", ".join(f"{_describe(name, features)} {_part(v)}" for name, v in top)
    return f" ({shown})"


def _part(value: float) -> str:
    if abs(value) < 0.005:
        return "+<0.01" if value > 0 else "-<0.01"
    return f"{value:+.2f}"


def _describe(name: str, f: RoutingFeatures) -> str:
    if name == "prompt_tokens":
        return f"{f.prompt_tokens:,} prompt tokens"
    if name == "messages":
        return f"{f.messages} messages"
    if name == "images":
        return f"{f.images} image{'s' if f.images != 1 else ''}"
    if name == "tools":
        return f"{f.tools} tool{'s' if f.tools != 1 else ''}"
    if name == "json_mode":
        return "JSON mode"
    if name == "code":
        return f"{f.code_blocks} code block{'s' if f.code_blocks != 1 else ''}"
    if name == "keywords":
        return "keywords " + "/".join(f.keywords)
    if name == "output_tokens":
        return f"{f.output_tokens:,} output tokens asked"
    return "the task hint"


def _why(chosen: RoutingCandidate) -> str:
    reasons = chosen.reasons
    what = _FIT.get(reasons[0], "the choice") if reasons else "the choice"
    where = f"of tier {chosen.tier}"
    for step, direction in (("stepped_up", "stronger"), ("stepped_down", "weaker")):
        if step in reasons:
            where = f"of the {direction} tier {chosen.tier} (none of the wanted fits)"
    cost = chosen.estimated_cost
    price = "" if cost is None else f" at ~{_usd(cost)}"
    return f"{what} {where}{price}"


def _skipped(candidates: tuple[RoutingCandidate, ...]) -> str:
    out = [c for c in candidates if not c.eligible]
    if not out:
        return ""
    shown = ", ".join(
        f"{c.model} {c.reasons[0] if c.reasons else 'unfit'}"
        for c in out[:_SHOWN_SKIPS]
    )
    more = f" and {len(out) - _SHOWN_SKIPS} more" if len(out) > _SHOWN_SKIPS else ""
    return f" ({len(out)} skipped: {shown}{more})"


def _usd(amount: Decimal) -> str:
    if amount == 0:
        return "$0"
    text = f"{amount:.6f}".rstrip("0").rstrip(".")
    return f"${text}" if text != "0" else "<$0.000001"
