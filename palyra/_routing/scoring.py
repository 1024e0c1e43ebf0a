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

_NAMES = (
    "prompt_tokens",
    "messages",
    "images",
    "tools",
    "json_mode",
    "code",
    "keywords",
    "output_tokens",
)
_SATURATION = tuple(
    SATURATION[n] for n in ("prompt_tokens", "messages", "images", "tools")
) + tuple(SATURATION[n] for n in ("code", "keywords", "output_tokens"))


def values(signals: Signals) -> dict[str, float]:
    """Each signal's value in [0, 1]."""
    return dict(zip(_NAMES, _values(signals), strict=True))


def _values(s: Signals) -> tuple[float, ...]:
    sat = _SATURATION
    return (
        min(s.prompt_tokens / sat[0], 1.0),
        min(max(s.messages - 1, 0) / (sat[1] - 1), 1.0),
        min(s.images / sat[2], 1.0),
        min(s.tools / sat[3], 1.0),
        1.0 if s.json_mode else 0.0,
        min(s.code_blocks / sat[4], 1.0),
        min(len(s.keywords) / sat[5], 1.0),
        min(s.output_tokens / sat[6], 1.0),
    )


def score(
    signals: Signals, weights: RoutingWeights, shift: float = 0.0
) -> tuple[float, dict[str, float]]:
    """The score in [0, 1] and each signal's weighted part (only the parts
    that add something; a nonzero ``shift`` appears as ``hint``)."""
    parts: dict[str, float] = {}
    total = 0.0
    weighted = weights.__dict__  # the fields, read without attribute lookups
    for name, value in zip(_NAMES, _values(signals), strict=True):
        if value:
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
