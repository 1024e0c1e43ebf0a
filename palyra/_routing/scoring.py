"""The complexity score: each signal scaled to [0, 1], weighted, summed.

``score = clamp(sum(weight[s] * value[s]) + hint.shift, 0, 1)``, where each
value rises linearly from 0 to 1 at the signal's `SATURATION` point:

==============  =======================================  =================
signal          value                                    default weight
==============  =======================================  =================
prompt_tokens   tokens / 2,000                           0.35
messages        (messages - 1) / 19 (one message: 0)     0.10
images          images / 2                               0.15
tools           1 when any tool is offered               0.10
json_mode       1 when a JSON answer is asked for        0.05
code            code blocks / 2                          0.25
keywords        distinct keywords / 3                    0.30
output_tokens   max_tokens asked for / 4,000             0.10
==============  =======================================  =================

Every value is capped at 1. As weights only multiply non-negative values,
raising one never lowers a score; a hint's shift moves every score of its
requests by the same amount (before the clamp).
"""

from __future__ import annotations

from collections.abc import Mapping

from .._config import RoutingWeights
from .signals import Signals

__all__ = ["SATURATION", "score", "tier_for", "values"]

SATURATION: Mapping[str, int] = {
    "prompt_tokens": 2000,
    "messages": 20,
    "images": 2,
    "tools": 1,
    "code": 2,
    "keywords": 3,
    "output_tokens": 4000,
}
"""Where each signal's value reaches 1 (json_mode is 0 or 1)."""


def values(signals: Signals) -> dict[str, float]:
    """Each signal's value in [0, 1]."""
    sat = SATURATION
    return {
        "prompt_tokens": min(signals.prompt_tokens / sat["prompt_tokens"], 1.0),
        "messages": min(max(signals.messages - 1, 0) / (sat["messages"] - 1), 1.0),
        "images": min(signals.images / sat["images"], 1.0),
        "tools": min(signals.tools / sat["tools"], 1.0),
        "json_mode": 1.0 if signals.json_mode else 0.0,
        "code": min(signals.code_blocks / sat["code"], 1.0),
        "keywords": min(len(signals.keywords) / sat["keywords"], 1.0),
        "output_tokens": min(signals.output_tokens / sat["output_tokens"], 1.0),
    }


def score(
    signals: Signals, weights: RoutingWeights, shift: float = 0.0
) -> tuple[float, dict[str, float]]:
    """The score in [0, 1] and each signal's weighted part (only the parts
    that add something; a nonzero ``shift`` appears as ``hint``)."""
    parts: dict[str, float] = {}
    total = 0.0
    weighted = weights.__dict__  # the fields, read without attribute lookups
    for name, value in values(signals).items():
        part = weighted[name] * value
        if part > 0:
            parts[name] = round(part, 4)
            total += part
    if shift:
        parts["hint"] = shift
        total += shift
    return min(max(total, 0.0), 1.0), parts


def tier_for(value: float, tiers: Mapping[str, float]) -> str:
    """The tier asked for by a score: the one with the highest start at or
    below it (``tiers`` is sorted by start, the first starting at 0)."""
    found = ""
    for name, start in tiers.items():
        if value >= start:
            found = name
    return found
