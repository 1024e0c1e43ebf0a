"""The shapes of usage and cost that replies carry: `NormalizedUsage`,
`PriceEntry` and `Cost`.

They sit low, beside the wire models, because ``reply.palyra`` holds them;
what fills them in (the mappings from each provider's usage, the price table,
the arithmetic) is usage governance, ``palyra._governance``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Annotated, Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "TOTAL_PLACES",
    "Cost",
    "NormalizedUsage",
    "PriceEntry",
    "built",
    "trusted",
]

M = TypeVar("M", bound=BaseModel)


def trusted(model: type[M], /, **values: Any) -> M:
    """An instance of ``model`` from values known valid, every field given.

    Governance builds a usage and a cost or two on every call from numbers it
    has just checked or computed; validating them again (or pydantic's
    ``model_construct``, which resolves defaults field by field) would cost
    more than the arithmetic. The instance is what validation would give.
    """
    return built(model, values)


def built(model: type[M], values: dict[str, Any]) -> M:
    """`trusted` from a dict of every field (taken over, not copied)."""
    made = _new(model)
    _set(made, "__dict__", values)
    _set(made, "__pydantic_fields_set__", set(values))
    _set(made, "__pydantic_extra__", None)
    _set(made, "__pydantic_private__", None)
    return made


_new = object.__new__  # pydantic models keep object's: no __new__ of their own
_set = object.__setattr__


TOTAL_PLACES = Decimal("1E-10")
"""A cost's total is quantized to this (10 places), ``ROUND_HALF_EVEN``."""

_Price = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
_Count = Annotated[int, Field(ge=0, strict=True)]


class NormalizedUsage(BaseModel):
    """Tokens of one call, split the way they are priced.

    Args:
        input_uncached: Prompt tokens billed at the plain input price.
        cache_read: Prompt tokens read from the provider's prompt cache.
        cache_write: Prompt tokens written to the prompt cache.
        cache_write_5m: Of ``cache_write``, those with a 5 minute lifetime,
            when the provider says (Anthropic prices the two differently).
        cache_write_1h: Of ``cache_write``, those with a 1 hour lifetime.
        output: Output tokens, reasoning included (billed as output).
        reasoning: Of ``output``, the reasoning tokens; reported, never
            billed a second time.
        estimated: The counts were estimated, not reported by the upstream.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_uncached: _Count = 0
    cache_read: _Count = 0
    cache_write: _Count = 0
    cache_write_5m: _Count | None = None
    cache_write_1h: _Count | None = None
    output: _Count = 0
    reasoning: _Count = 0
    estimated: bool = False

    @model_validator(mode="after")
    def _parts_fit(self) -> Self:
        if self.cache_write_5m is not None or self.cache_write_1h is not None:
            split = (self.cache_write_5m or 0) + (self.cache_write_1h or 0)
            if split != self.cache_write:
                raise ValueError(
                    f"cache_write_5m + cache_write_1h ({split}) must equal"
                    f" cache_write ({self.cache_write})"
                )
        if self.reasoning > self.output:
            raise ValueError(
                f"reasoning ({self.reasoning}) is part of output ({self.output})"
                " and cannot exceed it"
            )
        return self

    @property
    def input_total(self) -> int:
        """Every prompt token: uncached, cache read and cache write."""
        return self.input_uncached + self.cache_read + self.cache_write

    @property
    def total(self) -> int:
        """Prompt and output tokens (reasoning is inside output)."""
        return self.input_total + self.output


def _no_float(value: Any) -> Any:
    # Decimal(0.1) is 0.1000000000000000055...: a float price would make the
    # exact arithmetic a lie, so prices come as str, int or Decimal.
    if isinstance(value, float):
        raise ValueError("give prices as strings or Decimals, not floats")
    return value


class PriceEntry(BaseModel):
    """The price of one model over one span of time.

    Args:
        model: Upstream model name, exact or an ``fnmatch`` pattern
            (``claude-sonnet-4-*``); an exact name beats any pattern.
        provider: Provider id it applies to; None for any provider.
        provider_kind: ``anthropic`` makes the cache prices default to
            Anthropic's multipliers of ``input``; when None, a ``provider``
            of ``anthropic`` does the same.
        input: USD per 1M uncached input tokens.
        output: USD per 1M output tokens (reasoning included).
        cache_read: USD per 1M tokens read from the prompt cache. None: not
            priced separately (Anthropic: 0.1x input; else the input price,
            and the cost says so in its notes).
        cache_write_5m: USD per 1M tokens written with a 5 minute lifetime
            (or of unknown lifetime). None: Anthropic 1.25x input; else input.
        cache_write_1h: USD per 1M tokens written for 1 hour. None:
            Anthropic 2x input; else ``cache_write_5m``'s price.
        per_request: Fixed USD per request.
        effective_from: First instant (UTC) the price holds; None: always.
        effective_until: First instant it no longer holds; None: open-ended.
        currency: Always ``USD`` for now.
        source: Where the price came from (a URL and date, or ``config``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Annotated[str, Field(min_length=1)]
    provider: str | None = None
    provider_kind: str | None = None
    input: _Price
    output: _Price
    cache_read: _Price | None = None
    cache_write_5m: _Price | None = None
    cache_write_1h: _Price | None = None
    per_request: _Price = Decimal(0)
    effective_from: datetime | None = None
    effective_until: datetime | None = None
    currency: str = "USD"
    source: str = ""

    _no_floats = field_validator(
        "input",
        "output",
        "cache_read",
        "cache_write_5m",
        "cache_write_1h",
        "per_request",
        mode="before",
    )(_no_float)

    @field_validator("effective_from", "effective_until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must carry a time zone (UTC is safest)")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _span(self) -> Self:
        start, end = self.effective_from, self.effective_until
        if start is not None and end is not None and end <= start:
            raise ValueError("effective_until must be after effective_from")
        if self.currency != "USD":
            raise ValueError("only USD prices are supported")
        return self

    @property
    def is_anthropic(self) -> bool:
        """Whether Anthropic's cache multipliers fill in missing cache prices."""
        if self.provider_kind is not None:
            return self.provider_kind == "anthropic"
        return self.provider == "anthropic"

    @property
    def is_pattern(self) -> bool:
        """Whether ``model`` is a pattern rather than one exact name."""
        return any(c in self.model for c in "*?[")

    def matches(
        self, provider: str | None, model: str, kind: str | None = None
    ) -> bool:
        """Whether this entry prices ``model`` served by ``provider`` (a
        provider of ``kind``: an entry for any provider but of one kind, as
        the shipped defaults are, prices only providers of that kind)."""
        if self.provider is not None:
            if self.provider != provider:
                return False
        elif kind is not None and self.provider_kind not in (None, kind):
            return False
        if self.is_pattern:
            return fnmatchcase(model, self.model)
        return model == self.model

    def in_effect(self, at: datetime) -> bool:
        """Whether the price holds at ``at``: ``[effective_from, effective_until)``."""
        if self.effective_from is not None and at < self.effective_from:
            return False
        return self.effective_until is None or at < self.effective_until


class Cost(BaseModel):
    """What one call cost.

    Args:
        total: The sum of the parts, rounded to 10 places (`TOTAL_PLACES`,
            ``ROUND_HALF_EVEN``); None when unpriced, never 0.
        input: Uncached input, exact (None when unpriced).
        cache_read: Cache reads, exact.
        cache_write: Cache writes (both lifetimes), exact.
        output: Output, reasoning included, exact.
        per_request: The fixed price per request.
        unpriced: No price was found for the model.
        estimated: The usage it was worked from was estimated.
        currency: ``USD``.
        price: The entry used, or None.
        notes: Where a part used a fallback price, and which.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    total: Decimal | None
    input: Decimal | None = None
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    output: Decimal | None = None
    per_request: Decimal | None = None
    unpriced: bool
    estimated: bool = False
    currency: str = "USD"
    price: PriceEntry | None = None
    notes: tuple[str, ...] = ()
