"""The decision's one human sentence: the score and what drove it, the
choice and why, what was skipped, and which model serves in this mode."""

from __future__ import annotations

from decimal import Decimal

from .candidates import Assessed
from .ranking import Ranked
from .signals import Signals

__all__ = ["explain"]

_SHOWN_PARTS = 3  # the signals that added most
_SHOWN_SKIPS = 3
_SERVES = {
    "off": "routing is off for calls, so {requested} would serve",
    "suggest": "suggest mode: {requested} serves",
    "dry_run": "dry run: {requested} serves and the choice is only measured",
    "enforced": "enforced: {chosen} serves",
}


def explain(
    *,
    score: float,
    tier: str,
    parts: dict[str, float],
    signals: Signals,
    ranked: Ranked,
    requested: str,
    mode: str,
) -> str:
    """One sentence for the decision."""
    chosen = ranked.chosen
    head = f"Score {score:.2f} asks for tier {tier}{_drivers(parts, signals)}"
    if chosen is None:
        pick = "no model fits the request, so the requested one stays"
        chosen_id = requested
    else:
        chosen_id = chosen.placed.model.id
        pick = f"{chosen_id} is {_why(chosen, ranked.step)}"
    serves = _SERVES[mode].format(requested=requested, chosen=chosen_id)
    return f"{head}; {pick}{_skipped(ranked)}; {serves}."


def _drivers(parts: dict[str, float], signals: Signals) -> str:
    if not parts:
        return " (no signal)"
    top = sorted(parts.items(), key=lambda item: -abs(item[1]))[:_SHOWN_PARTS]
    shown = ", ".join(
        f"{_describe(name, signals)} {_part(value)}" for name, value in top
    )
    return f" ({shown})"


def _part(value: float) -> str:
    if abs(value) < 0.005:
        return "+<0.01" if value > 0 else "-<0.01"
    return f"{value:+.2f}"


def _describe(name: str, signals: Signals) -> str:
    if name == "prompt_tokens":
        return f"{signals.prompt_tokens:,} prompt tokens"
    if name == "messages":
        return f"{signals.messages} messages"
    if name == "images":
        return f"{signals.images} image{'s' if signals.images != 1 else ''}"
    if name == "tools":
        return f"{signals.tools} tool{'s' if signals.tools != 1 else ''}"
    if name == "json_mode":
        return "JSON mode"
    if name == "code":
        blocks = signals.code_blocks
        return f"{blocks} code block{'s' if blocks != 1 else ''}"
    if name == "keywords":
        return "keywords " + "/".join(signals.keywords)
    if name == "output_tokens":
        return f"{signals.output_tokens:,} output tokens asked"
    return "the task hint"


def _why(chosen: Assessed, step: int) -> str:
    first = chosen.reasons[0]
    what = {
        "only_fit": "the only fit",
        "cheapest_fit": "the cheapest fit",
        "fastest_fit": "the fastest fit",
    }[first]
    where = f"of tier {chosen.placed.tier}"
    if step:
        direction = "stronger" if step > 0 else "weaker"
        tier = chosen.placed.tier
        where = f"of the {direction} tier {tier} (none of the wanted fits)"
    price = "" if chosen.cost is None else f" at ~{_usd(chosen.cost)}"
    return f"{what} {where}{price}"


def _skipped(ranked: Ranked) -> str:
    out = [a for a in ranked.ordered if not a.eligible]
    if not out:
        return ""
    shown = ", ".join(f"{a.placed.model.id} {a.reasons[0]}" for a in out[:_SHOWN_SKIPS])
    more = f" and {len(out) - _SHOWN_SKIPS} more" if len(out) > _SHOWN_SKIPS else ""
    return f" ({len(out)} skipped: {shown}{more})"


def _usd(amount: Decimal) -> str:
    if amount == 0:
        return "$0"
    text = f"{amount:.6f}".rstrip("0").rstrip(".")
    return f"${text}" if text != "0" else "<$0.000001"
