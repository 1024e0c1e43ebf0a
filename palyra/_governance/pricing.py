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

from .._config import Pricing
from .._usage import TOTAL_PLACES, Cost, NormalizedUsage, PriceEntry, trusted

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
    "estimated_total",
    "estimated_units",
    "pick",
]

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


def entry_from_config(
    model_id: str,
    provider: str | None,
    pricing: Pricing,
    *,
    provider_kind: str | None = None,
) -> PriceEntry:
    """The `PriceEntry` of a model entry's ``pricing`` in the config.

    ``cached_input`` is the cache read price; ``cache_write`` is the 5 minute
    (or unknown lifetime) write price and ``cache_write_1h`` the 1 hour one.
    """
    return PriceEntry(
        model=model_id,
        provider=provider,
        provider_kind=provider_kind,
        input=pricing.input,
        output=pricing.output,
        cache_read=pricing.cached_input,
        cache_write_5m=pricing.cache_write,
        cache_write_1h=pricing.cache_write_1h,
        per_request=pricing.per_request,
        effective_from=pricing.effective_from,
        effective_until=pricing.effective_until,
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
        self, provider: str | None, model: str, at: datetime, kind: str | None = None
    ) -> PriceEntry | None:
        """The entry pricing ``model`` at ``at``, or None when none does.

        Any user entry in effect beats every default. Within one layer an
        exact model name beats a pattern (a longer pattern beats a shorter),
        an entry for this provider beats one for any provider, and of
        overlapping spans the one that started last wins. ``kind`` is the
        provider's kind: entries for one kind of provider price no other.

        Raises:
            ValueError: ``at`` has no time zone.
        """
        return pick(self.candidates(provider, model, kind), at)

    def candidates(
        self, provider: str | None, model: str, kind: str | None = None
    ) -> tuple[tuple[PriceEntry, ...], ...]:
        """Per layer, the entries that price ``model`` at some time: what
        `pick` chooses from (a client caches this per model)."""
        return tuple(
            tuple(e for e in layer if e.matches(provider, model, kind))
            for layer in self._layers
        )


def pick(
    candidates: tuple[tuple[PriceEntry, ...], ...], at: datetime
) -> PriceEntry | None:
    """The entry of `PriceTable.candidates` in effect at ``at``, if any."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must carry a time zone")
    at = at.astimezone(UTC)
    for layer in candidates:
        found = [e for e in layer if e.in_effect(at)]
        if found:
            return max(found, key=_rank)
    return None


def _rank(entry: PriceEntry) -> tuple[bool, int, bool, datetime]:
    start = entry.effective_from or datetime.min.replace(tzinfo=UTC)
    return (not entry.is_pattern, len(entry.model), entry.provider is not None, start)


def cost_of(usage: NormalizedUsage, entry: PriceEntry | None) -> Cost:
    """The cost of ``usage`` at the prices of ``entry`` (None: unpriced).

    Each part is tokens x price / 1,000,000, exact; the total is their sum
    rounded once to 10 places, half to even. Reasoning is inside output and
    is not billed again. Cache writes of a known lifetime take its price;
    writes of unknown lifetime take the 5 minute price (Anthropic's default
    lifetime, and the cheaper of the two).
    """
    if entry is None:
        return _UNPRICED_ESTIMATED if usage.estimated else _UNPRICED
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
    # Every field is computed here from validated inputs: construct without
    # validating again (this runs on every call, twice with budgets).
    return trusted(
        Cost,
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


def estimated_total(
    entry: PriceEntry, uncached: int, cache_read: int, output: int
) -> Decimal:
    """What `cost_of` totals for a usage of only uncached input, cache reads
    and output (routing's estimate of a request), without building the cost's
    parts: the same exact sum, rounded the same way."""
    units = estimated_units(entry, uncached, cache_read, output)
    return Decimal(units).scaleb(_PLACES, _EXACT)


def estimated_units(
    entry: PriceEntry, uncached: int, cache_read: int, output: int
) -> int:
    """`estimated_total` as an integer of 10**-10 USD (`TOTAL_PLACES`).

    Routing prices every model of the registry for every request, so the
    rates are kept as integers over one power of ten (exact: a price is a
    finite decimal), the sum is integer arithmetic, and it is rounded to ten
    places half to even, as `Decimal.quantize` rounds in `cost_of`.
    """
    scaled = _SCALED.get(id(entry))
    if scaled is None or scaled[0] is not entry:
        scaled = _scale(entry)
    _, exponent, per_input, per_read, per_output, fixed, fixed_exp = scaled
    tokens = uncached * per_input + cache_read * per_read + output * per_output
    places = exponent - 6  # of the token sum in USD
    if fixed:
        low = min(places, fixed_exp)
        tokens = tokens * _pow10(places - low) + fixed * _pow10(fixed_exp - low)
        places = low
    shift = places - _PLACES
    if shift >= 0:
        return tokens * _pow10(shift)
    unit = _pow10(-shift)
    whole, rest = divmod(tokens, unit)
    if 2 * rest > unit or (2 * rest == unit and whole % 2):
        whole += 1  # half to even, as quantize rounds
    return whole


_POWERS = [10**n for n in range(40)]


def _pow10(n: int) -> int:
    return _POWERS[n] if n < 40 else int(10**n)


_PLACES = -10  # TOTAL_PLACES' exponent
# id(entry) -> the entry (kept alive), the exponent of its rates, the input,
# cache read and output rates as integers, and its per-request price as an
# integer and its exponent.
_Scaled = tuple[PriceEntry, int, int, int, int, int, int]
_SCALED: dict[int, _Scaled] = {}


def _scale(entry: PriceEntry) -> _Scaled:
    read = entry.cache_read
    if read is None:
        read = (
            _EXACT.multiply(entry.input, ANTHROPIC_CACHE_READ)
            if entry.is_anthropic
            else entry.input
        )
    rates = (entry.input, read, entry.output)
    exponent = min(0, *(int(rate.as_tuple().exponent) for rate in rates))
    ints = [int(rate.scaleb(-exponent, context=_EXACT)) for rate in rates]
    fixed_exp = min(0, int(entry.per_request.as_tuple().exponent))
    fixed = int(entry.per_request.scaleb(-fixed_exp, context=_EXACT))
    if len(_SCALED) >= 4096:
        _SCALED.clear()
    made = (entry, exponent, ints[0], ints[1], ints[2], fixed, fixed_exp)
    _SCALED[id(entry)] = made
    return made


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
    if not tokens:
        return _ZERO
    return _EXACT.divide(_EXACT.multiply(Decimal(tokens), per_million), _MILLION)


_ZERO = Decimal(0)
_UNPRICED = Cost(total=None, unpriced=True)
_UNPRICED_ESTIMATED = Cost(total=None, unpriced=True, estimated=True)
