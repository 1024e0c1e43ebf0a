"""Prices and their arithmetic: `PriceEntry`, `PriceTable`, `Cost`, `cost_of`.

Prices are USD per one million tokens, held and multiplied as ``Decimal``:
a float never enters (a float price is refused), so a cost is exact until
its total is rounded once, to 10 decimal places with ``ROUND_HALF_EVEN``
(`TOTAL_PLACES`). The parts of a cost are kept exact and unrounded, so a
ledger summing parts over many calls does not accumulate rounding. A model
with no price costs None and is flagged ``unpriced``, never $0.

A price is in effect over the half-open interval ``[effective_from,
effective_until)`` in UTC, so a price change is a new entry and the cost of
a past call, looked up at its own time, never changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from fnmatch import fnmatchcase
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._config import Pricing
from .usage import NormalizedUsage

__all__ = [
    "ANTHROPIC_CACHE_READ",
    "ANTHROPIC_CACHE_WRITE_1H",
    "ANTHROPIC_CACHE_WRITE_5M",
    "TOTAL_PLACES",
    "Cost",
    "PriceEntry",
    "PriceTable",
    "cost_of",
    "entry_from_config",
]

TOTAL_PLACES = Decimal("1E-10")
"""A cost's total is quantized to this (10 places), ``ROUND_HALF_EVEN``."""

# Anthropic's published prompt-caching multipliers of the base input price
# (docs.anthropic.com, "Prompt caching" / "Pricing"): used when an Anthropic
# entry gives only the input price.
ANTHROPIC_CACHE_WRITE_5M = Decimal("1.25")
ANTHROPIC_CACHE_WRITE_1H = Decimal("2")
ANTHROPIC_CACHE_READ = Decimal("0.1")

_MILLION = Decimal(1_000_000)
# Enough digits that no product of a token count and a price is rounded
# before the one rounding of the total (the default context keeps 28).
_EXACT = Context(prec=60)
_Price = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


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

    def matches(self, provider: str | None, model: str) -> bool:
        """Whether this entry prices ``model`` served by ``provider``."""
        if self.provider is not None and self.provider != provider:
            return False
        if self.is_pattern:
            return fnmatchcase(model, self.model)
        return model == self.model

    def in_effect(self, at: datetime) -> bool:
        """Whether the price holds at ``at``: ``[effective_from, effective_until)``."""
        if self.effective_from is not None and at < self.effective_from:
            return False
        return self.effective_until is None or at < self.effective_until


def entry_from_config(
    model_id: str,
    provider: str | None,
    pricing: Pricing,
    *,
    provider_kind: str | None = None,
    effective_from: datetime | None = None,
) -> PriceEntry:
    """The `PriceEntry` of a model entry's ``pricing`` in the config.

    ``cached_input`` is the cache read price; the config's single
    ``cache_write`` is the 5 minute (or unknown lifetime) write price, and
    the 1 hour price follows the entry's defaults.
    """
    return PriceEntry(
        model=model_id,
        provider=provider,
        provider_kind=provider_kind,
        input=pricing.input,
        output=pricing.output,
        cache_read=pricing.cached_input,
        cache_write_5m=pricing.cache_write,
        effective_from=effective_from,
        source="config",
    )


class PriceTable:
    """Prices to look up by provider, model and time; the user's beat the defaults.

    Args:
        entries: The user's entries (config, price table file).
        defaults: The shipped snapshot
            (`palyra._governance.default_prices.DEFAULT_PRICES`), or none.
    """

    def __init__(
        self, entries: Iterable[PriceEntry] = (), defaults: Iterable[PriceEntry] = ()
    ) -> None:
        self._layers = (tuple(entries), tuple(defaults))

    def lookup(
        self, provider: str | None, model: str, at: datetime
    ) -> PriceEntry | None:
        """The entry pricing ``model`` at ``at``, or None when none does.

        Any user entry in effect beats every default. Within one layer an
        exact model name beats a pattern (a longer pattern beats a shorter),
        an entry for this provider beats one for any provider, and of
        overlapping spans the one that started last wins.

        Raises:
            ValueError: ``at`` has no time zone.
        """
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("at must carry a time zone")
        at = at.astimezone(UTC)
        for layer in self._layers:
            found = [e for e in layer if e.matches(provider, model) and e.in_effect(at)]
            if found:
                return max(found, key=_rank)
        return None


def _rank(entry: PriceEntry) -> tuple[bool, int, bool, datetime]:
    start = entry.effective_from or datetime.min.replace(tzinfo=UTC)
    return (not entry.is_pattern, len(entry.model), entry.provider is not None, start)


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


def cost_of(usage: NormalizedUsage, entry: PriceEntry | None) -> Cost:
    """The cost of ``usage`` at the prices of ``entry`` (None: unpriced).

    Each part is tokens x price / 1,000,000, exact; the total is their sum
    rounded once to 10 places, half to even. Reasoning is inside output and
    is not billed again. Cache writes of a known lifetime take its price;
    writes of unknown lifetime take the 5 minute price (Anthropic's default
    lifetime, and the cheaper of the two).
    """
    if entry is None:
        return Cost(total=None, unpriced=True, estimated=usage.estimated)
    notes: list[str] = []
    read_rate, write_5m, write_1h = _cache_rates(entry, usage, notes)
    # A split, when given, adds up to cache_write (NormalizedUsage checks).
    split = usage.cache_write_5m is not None or usage.cache_write_1h is not None
    unknown = 0 if split else usage.cache_write
    if unknown:
        notes.append("cache_write lifetime unknown: priced at the 5 minute rate")
    input_ = _times(usage.input_uncached, entry.input)
    read = _times(usage.cache_read, read_rate)
    write = _EXACT.add(
        _times((usage.cache_write_5m or 0) + unknown, write_5m),
        _times(usage.cache_write_1h or 0, write_1h),
    )
    output = _times(usage.output, entry.output)
    exact = Decimal(0)
    for part in (input_, read, write, output, entry.per_request):
        exact = _EXACT.add(exact, part)
    return Cost(
        total=exact.quantize(TOTAL_PLACES, rounding=ROUND_HALF_EVEN, context=_EXACT),
        input=input_,
        cache_read=read,
        cache_write=write,
        output=output,
        per_request=entry.per_request,
        unpriced=False,
        estimated=usage.estimated,
        currency=entry.currency,
        price=entry,
        notes=tuple(notes),
    )


def _cache_rates(
    entry: PriceEntry, usage: NormalizedUsage, notes: list[str]
) -> tuple[Decimal, Decimal, Decimal]:
    """The cache read, 5 minute and 1 hour write prices, defaults filled in;
    a note for each fallback that prices tokens of this usage."""
    base = entry.input
    anthropic = entry.is_anthropic
    read = entry.cache_read
    if read is None:
        if anthropic:
            read = _EXACT.multiply(base, ANTHROPIC_CACHE_READ)
        else:
            read = base
            if usage.cache_read:
                notes.append("cache_read not priced separately: priced as input")
    five = entry.cache_write_5m
    if five is None:
        if anthropic:
            five = _EXACT.multiply(base, ANTHROPIC_CACHE_WRITE_5M)
        else:
            five = base
            if usage.cache_write:
                notes.append("cache_write not priced separately: priced as input")
    hour = entry.cache_write_1h
    if hour is None:
        hour = _EXACT.multiply(base, ANTHROPIC_CACHE_WRITE_1H) if anthropic else five
    return read, five, hour


def _times(tokens: int, per_million: Decimal) -> Decimal:
    return _EXACT.divide(_EXACT.multiply(Decimal(tokens), per_million), _MILLION)
