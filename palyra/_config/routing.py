"""The ``[routing]`` table: `RoutingConfig`, its signal weights and task hints.

Smart routing scores each chat request's complexity in [0, 1] from weighted
signals, maps the score to a tier by the tier thresholds, and picks the
cheapest model of that tier that can serve the request. Everything it weighs
is here, with the defaults ``docs/routing.md`` documents; each bad value names
its field (``routing.weights.keywords: ...``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from .base import ConfigModel

__all__ = [
    "DEFAULT_HINTS",
    "DEFAULT_KEYWORDS",
    "DEFAULT_TIERS",
    "ROUTING_MODES",
    "RoutingConfig",
    "RoutingHint",
    "RoutingMode",
    "RoutingWeights",
    "parse_mode",
]

RoutingMode = Literal["off", "suggest", "dry_run", "enforced"]
ROUTING_MODES: tuple[RoutingMode, ...] = ("off", "suggest", "dry_run", "enforced")
Preference = Literal["cost", "latency"]

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_Weight = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
_Shift = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]

DEFAULT_TIERS: Mapping[str, float] = {"small": 0.0, "medium": 0.25, "large": 0.5}
# Words that mark a request for reasoning or analysis; each matches at the
# start of a word ("analy" matches analyse, analysis, analyzing).
DEFAULT_KEYWORDS = (
    "analy",
    "reason",
    "prove",
    "proof",
    "derive",
    "step by step",
    "compare",
    "evaluate",
    "architect",
    "design",
    "debug",
    "optimi",
    "refactor",
    "investigat",
    "trade-off",
    "tradeoff",
    "algorithm",
    "theorem",
    "rigor",
)


def parse_mode(value: Any) -> Any:
    """A routing mode as written: trimmed, lower-cased, ``dry-run`` accepted."""
    if isinstance(value, str):
        return value.strip().lower().replace("-", "_")
    return value


class RoutingWeights(ConfigModel):
    """How much each signal adds to the score, each in [0, 1].

    A signal's value is in [0, 1] (``docs/routing.md`` says how each is
    measured and where it saturates); the score is the sum of the weighted
    values plus the task hint's shift, clamped to [0, 1]. Raising a weight
    never lowers a score.
    """

    prompt_tokens: _Weight = 0.35
    messages: _Weight = 0.10
    images: _Weight = 0.15
    tools: _Weight = 0.10
    json_mode: _Weight = 0.05
    code: _Weight = 0.25
    keywords: _Weight = 0.30
    output_tokens: _Weight = 0.10


class RoutingHint(ConfigModel):
    """What a task hint (``hint="classification"``) does to routing.

    Args:
        shift: Added to the score, in [-1, 1] (negative: simpler).
        prefer: Rank a tier's models by ``cost`` first or ``latency`` first;
            None keeps ``routing.prefer``.
        tier: Ask for this tier whatever the score says.
    """

    shift: _Shift = 0.0
    prefer: Preference | None = None
    tier: str | None = None


# The built-in hints, as tables (made `RoutingHint`s when a config is built,
# not when palyra is imported: a model built at import costs its schema).
DEFAULT_HINTS: Mapping[str, Mapping[str, Any]] = {
    "background": {"shift": -0.25},
    "classification": {"shift": -0.25, "prefer": "latency"},
    "extraction": {"shift": -0.15},
    "summary": {"shift": -0.10},
    "chat": {},
    "reasoning": {"shift": 0.35},
    "code": {"shift": 0.30},
}


def _default_hints() -> dict[str, RoutingHint]:
    return {name: RoutingHint(**table) for name, table in DEFAULT_HINTS.items()}


class RoutingConfig(ConfigModel):
    """Smart routing: which model serves a chat call, and how it is chosen.

    Args:
        mode: ``off`` (no routing), ``suggest`` (the requested model serves;
            ``reply.palyra.routing`` says what routing would have chosen),
            ``dry_run`` (as suggest, flagged as a measurement in the decision
            and the ledger) or ``enforced`` (routing's choice serves, and
            failover applies after it). A call's ``route=`` overrides it.
        tiers: Tier name -> the lowest score that asks for it. The lowest
            tier starts at 0; a higher threshold is a stronger tier. Models
            join a tier with ``tier = "..."`` or a numeric ``quality`` (the
            tier whose range holds it).
        weights: Each signal's weight (`RoutingWeights`).
        hints: Task hint name -> `RoutingHint` (or just its shift, a number);
            merged over the built-in hints (background, classification,
            extraction, summary, chat, reasoning, code).
        keywords: The reasoning and analysis keywords (case-insensitive, each
            matching at the start of a word); replaces the built-in list.
        prefer: Rank a tier's models by ``cost`` (the estimated price of this
            request, then observed latency) or by ``latency`` first.
        expected_output_tokens: The output a request is priced with when it
            sets no ``max_tokens`` (for ranking; budgets check the worst case).
    """

    mode: RoutingMode = "off"
    tiers: Mapping[str, Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]] = (
        Field(default_factory=lambda: dict(DEFAULT_TIERS))
    )
    weights: RoutingWeights = Field(default_factory=RoutingWeights)
    hints: Mapping[str, RoutingHint] = Field(default_factory=_default_hints)
    keywords: tuple[Annotated[str, Field(min_length=2, max_length=64)], ...] = (
        DEFAULT_KEYWORDS
    )
    prefer: Preference = "cost"
    expected_output_tokens: Annotated[int, Field(gt=0, le=1_000_000)] = 256

    _mode_spelling = field_validator("mode", mode="before")(staticmethod(parse_mode))

    @field_validator("tiers")
    @staticmethod
    def _check_tiers(value: Mapping[str, float]) -> Mapping[str, float]:
        if not value:
            raise ValueError("at least one tier is required")
        for name in value:
            if not _NAME.match(name):
                raise ValueError(
                    f"tier names are 1-32 characters of a-z, 0-9, _ and -, starting"
                    f" with a letter; got {name!r}"
                )
        starts = sorted(value.values())
        if starts[0] != 0:
            raise ValueError("the lowest tier must start at 0")
        if len(set(starts)) != len(starts):
            raise ValueError("two tiers cannot start at the same score")
        return dict(sorted(value.items(), key=lambda item: item[1]))

    @field_validator("hints", mode="before")
    @staticmethod
    def _merge_hints(value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        merged: dict[str, Any] = dict(DEFAULT_HINTS)
        for name, hint in value.items():
            # ``reasoning = 0.4`` is the short way to give just the shift.
            numeric = isinstance(hint, int | float) and not isinstance(hint, bool)
            merged[name] = {"shift": hint} if numeric else hint
        return merged

    @field_validator("hints")
    @staticmethod
    def _check_hint_names(
        value: Mapping[str, RoutingHint],
    ) -> Mapping[str, RoutingHint]:
        for name in value:
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(
                    "hint names are 1-32 characters of a-z, 0-9, _ and -, starting"
                    f" with a letter; got {name!r}"
                )
        return value

    @field_validator("keywords")
    @staticmethod
    def _check_keywords(value: tuple[str, ...]) -> tuple[str, ...]:
        words = tuple(word.strip().lower() for word in value)
        if any(len(word) < 2 for word in words):
            raise ValueError("keywords must be at least 2 characters")
        return tuple(dict.fromkeys(words))

    def tier_of(self, quality: float) -> str:
        """The tier whose score range holds ``quality``."""
        found = next(iter(self.tiers))
        for name, start in self.tiers.items():
            if quality >= start:
                found = name
        return found
