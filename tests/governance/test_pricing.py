"""Prices, the price table and the cost of a call: Decimal, dated, never $0."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from palyra._config import Pricing
from palyra._governance.pricing import (
    TOTAL_PLACES,
    Cost,
    PriceEntry,
    PriceTable,
    cost_of,
    entry_from_config,
)
from palyra._governance.usage import NormalizedUsage, from_anthropic, from_openai
from palyra._providers.anthropic_stream import usage_from
from palyra._wire import CompletionUsage

D = Decimal
T = datetime(2026, 6, 1, tzinfo=UTC)
PARTS = ("total", "input", "cache_read", "cache_write", "output", "per_request")


def _entry(model: str = "m", **fields: object) -> PriceEntry:
    fields.setdefault("input", D("1"))
    fields.setdefault("output", D("2"))
    return PriceEntry.model_validate({"model": model, **fields})


def _all_decimal(cost: Cost) -> None:
    for name in PARTS:
        assert type(getattr(cost, name)) is Decimal, name


# -- published worked examples ---------------------------------------------


def test_openai_cached_input_worked_example() -> None:
    # OpenAI's cached-input arithmetic (community.openai.com, o1 at $15 input,
    # $7.50 cached input, $60 output): uncached = prompt - cached.
    o1 = _entry("o1", input=D("15"), cache_read=D("7.50"), output=D("60"))
    usage = CompletionUsage.model_validate(
        {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 1920},
        }
    )
    cost = cost_of(from_openai(usage), o1)
    assert cost.input == D("0.00129")
    assert cost.cache_read == D("0.0144")
    assert cost.output == D("0.018")
    assert cost.total == D("0.03369")
    assert not cost.notes
    _all_decimal(cost)


def test_anthropic_multipliers_match_the_published_cache_prices() -> None:
    # Anthropic's pricing table for Sonnet 4: $3 input, $3.75 5m writes, $6
    # 1h writes, $0.30 cache hits, $15 output (1.25x, 2x and 0.1x of input).
    published = _entry(
        "s",
        input=D("3"),
        output=D("15"),
        cache_write_5m=D("3.75"),
        cache_write_1h=D("6"),
        cache_read=D("0.30"),
    )
    derived = _entry("s", provider_kind="anthropic", input=D("3"), output=D("15"))
    usage = from_anthropic(
        1_000_000,
        1_000_000,
        3_000_000,
        1_000_000,
        cache_creation_5m=1_000_000,
        cache_creation_1h=2_000_000,
    )
    a, b = cost_of(usage, published), cost_of(usage, derived)
    for name in PARTS:
        assert getattr(a, name) == getattr(b, name), name
    assert a.input == D("3")
    assert a.cache_read == D("0.3")
    assert a.cache_write == D("15.75")  # 3.75 + 2 x 6
    assert a.output == D("15")
    assert a.total == D("34.05")
    _all_decimal(b)


def test_anthropic_1h_write_through_the_adapter_worked_example() -> None:
    # A Sonnet 4 answer's usage as Anthropic sends it ($3 input, $15 output:
    # 5m writes 1.25x = $3.75, 1h writes 2x = $6, reads 0.1x = $0.30 per MTok),
    # through the adapter's mapping and back to priced parts.
    payload = {
        "input_tokens": 2000,
        "cache_read_input_tokens": 10000,
        "cache_creation_input_tokens": 3000,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 1000,
            "ephemeral_1h_input_tokens": 2000,
        },
        "output_tokens": 500,
    }
    usage = CompletionUsage.model_validate(usage_from(payload))
    entry = _entry("s", provider_kind="anthropic", input=D("3"), output=D("15"))
    cost = cost_of(from_openai(usage), entry)
    assert cost.input == D("0.006")
    assert cost.cache_read == D("0.003")
    assert cost.cache_write == D("0.01575")  # 1000 x 3.75 + 2000 x 6, per MTok
    assert cost.output == D("0.0075")
    assert cost.total == D("0.03225")
    # Without the split every write would be priced as a 5m one: less.
    del payload["cache_creation"]
    unsplit = cost_of(
        from_openai(CompletionUsage.model_validate(usage_from(payload))), entry
    )
    assert unsplit.cache_write == D("0.01125")
    _all_decimal(cost)


@pytest.mark.parametrize(
    ("fields", "anthropic"),
    [
        ({"provider_kind": "anthropic"}, True),
        ({"provider": "anthropic"}, True),
        ({"provider": "anthropic", "provider_kind": "openai_compatible"}, False),
        ({"provider": "claude-eu", "provider_kind": "anthropic"}, True),
        ({}, False),
    ],
)
def test_which_entries_take_anthropic_multipliers(
    fields: dict[str, object], anthropic: bool
) -> None:
    entry = PriceEntry.model_validate({"model": "m", "input": 4, "output": 0, **fields})
    assert entry.is_anthropic is anthropic
    cost = cost_of(NormalizedUsage(cache_read=1_000_000), entry)
    assert cost.cache_read == (D("0.4") if anthropic else D("4"))


def test_anthropic_write_of_unknown_lifetime_is_priced_at_5_minutes() -> None:
    entry = _entry(provider_kind="anthropic", input=D("3"), output=D("15"))
    cost = cost_of(from_anthropic(0, 0, 1_000_000), entry)
    assert cost.cache_write == D("3.75")
    assert any("lifetime unknown" in note for note in cost.notes)


def test_cache_read_not_priced_separately_is_input_and_noted() -> None:
    cost = cost_of(NormalizedUsage(cache_read=1_000_000), _entry(input=D("2")))
    assert cost.cache_read == D("2")
    assert any("cache_read not priced separately" in n for n in cost.notes)
    quiet = cost_of(NormalizedUsage(input_uncached=5), _entry())
    assert quiet.notes == ()


def test_non_anthropic_1h_write_falls_back_to_the_5m_price() -> None:
    entry = _entry(cache_write_5m=D("4"))
    usage = NormalizedUsage(cache_write=1_000_000, cache_write_1h=1_000_000)
    assert cost_of(usage, entry).cache_write == D("4")


# -- arithmetic --------------------------------------------------------------


def test_reasoning_is_billed_once_as_output() -> None:
    usage = NormalizedUsage(output=1000, reasoning=800)
    cost = cost_of(usage, _entry(input=D("0"), output=D("10")))
    assert cost.output == D("0.01")
    assert cost.total == D("0.01")


def test_per_request_is_added() -> None:
    cost = cost_of(NormalizedUsage(), _entry(per_request=D("0.002")))
    assert cost.per_request == D("0.002")
    assert cost.total == D("0.002")


@pytest.mark.parametrize(
    ("tokens", "price", "total"),
    [
        (1, "0.00015", "0.0000000002"),  # 1.5e-10, half to even: up
        (1, "0.00025", "0.0000000002"),  # 2.5e-10, half to even: down
        (1, "0.00035", "0.0000000004"),
        (1, "0.00014", "0.0000000001"),
        (123_457, "2.50", "0.3086425000"),
    ],
)
def test_total_is_rounded_half_even_to_10_places(
    tokens: int, price: str, total: str
) -> None:
    cost = cost_of(NormalizedUsage(input_uncached=tokens), _entry(input=D(price)))
    assert cost.total == D(total)
    assert cost.total is not None
    assert cost.total.as_tuple().exponent == TOTAL_PLACES.as_tuple().exponent
    # The part is kept exact.
    assert cost.input == D(tokens) * D(price) / D(1_000_000)


def test_no_float_rounding_on_large_counts() -> None:
    # 0.1 + 0.2 style drift would show in the last places here.
    usage = NormalizedUsage(input_uncached=10**12 + 1, output=3)
    cost = cost_of(usage, _entry(input=D("0.1"), output=D("0.2")))
    assert cost.input == D("100000.0000001")
    assert cost.total == D("100000.0000007000")
    assert cost.output == D("6E-7")


def test_float_prices_are_refused() -> None:
    with pytest.raises(ValidationError, match="not floats"):
        _entry(input=0.1)


def test_unpriced_is_none_never_zero() -> None:
    cost = cost_of(NormalizedUsage(input_uncached=10, estimated=True), None)
    assert cost.total is None
    assert cost.unpriced is True
    assert cost.estimated is True
    assert cost.price is None
    assert cost.input is None
    assert cost.total != D(0)


def test_estimated_flag_propagates() -> None:
    entry = _entry()
    assert cost_of(NormalizedUsage(estimated=True), entry).estimated is True
    assert cost_of(NormalizedUsage(), entry).estimated is False


def test_cost_carries_its_entry_and_currency() -> None:
    entry = _entry()
    cost = cost_of(NormalizedUsage(), entry)
    assert cost.price is entry
    assert cost.currency == "USD"
    assert cost.unpriced is False
    assert cost.total == D("0E-10")


# -- the table ---------------------------------------------------------------


def test_effective_dates_are_half_open() -> None:
    old = _entry(input=D("1"), effective_until=T, source="old")
    new = _entry(input=D("2"), effective_from=T, source="new")
    table = PriceTable([old, new])
    assert table.lookup(None, "m", T - timedelta(microseconds=1)) is old
    assert table.lookup(None, "m", T) is new
    assert table.lookup(None, "m", T + timedelta(days=400)) is new


def test_a_later_price_never_rewrites_history() -> None:
    usage = NormalizedUsage(input_uncached=1_000_000)
    past = T - timedelta(days=1)
    before = PriceTable([_entry(input=D("1"))])
    after = PriceTable(
        [
            _entry(input=D("1"), effective_until=T),
            _entry(input=D("5"), effective_from=T),
        ]
    )
    assert cost_of(usage, before.lookup(None, "m", past)).total == D("1")
    assert cost_of(usage, after.lookup(None, "m", past)).total == D("1")
    assert cost_of(usage, after.lookup(None, "m", T)).total == D("5")


def test_lookup_outside_every_span_is_unpriced() -> None:
    table = PriceTable([_entry(effective_from=T, effective_until=T + timedelta(1))])
    assert table.lookup(None, "m", T - timedelta(1)) is None
    assert table.lookup(None, "m", T + timedelta(1)) is None
    assert table.lookup(None, "other", T) is None


def test_user_entries_override_defaults() -> None:
    default = _entry("gpt-x", input=D("1"), source="default")
    user = _entry("gpt-x", input=D("9"), source="user")
    assert PriceTable([user], [default]).lookup("p", "gpt-x", T) is user
    assert PriceTable([], [default]).lookup("p", "gpt-x", T) is default
    # A user pattern still beats an exact default: the user's word is final.
    pattern = _entry("gpt-*", input=D("7"))
    assert PriceTable([pattern], [default]).lookup("p", "gpt-x", T) is pattern


def test_user_price_from_a_date_leaves_earlier_calls_on_defaults() -> None:
    default = _entry("gpt-x", input=D("1"))
    user = _entry("gpt-x", input=D("9"), effective_from=T)
    table = PriceTable([user], [default])
    assert table.lookup(None, "gpt-x", T - timedelta(1)) is default
    assert table.lookup(None, "gpt-x", T) is user


def test_exact_beats_pattern_and_provider_beats_any() -> None:
    exact = _entry("claude-x-1")
    short = _entry("claude-*")
    long = _entry("claude-x-*")
    mine = _entry("claude-x-1", provider="mine")
    table = PriceTable([short, long, exact, mine])
    assert table.lookup("mine", "claude-x-1", T) is mine
    assert table.lookup("other", "claude-x-1", T) is exact
    assert table.lookup("other", "claude-x-2", T) is long
    assert table.lookup("other", "claude-y", T) is short
    assert PriceTable([mine]).lookup("other", "claude-x-1", T) is None


def test_overlapping_spans_take_the_latest_start() -> None:
    early = _entry(effective_from=T - timedelta(10))
    late = _entry(effective_from=T - timedelta(1))
    assert PriceTable([late, early]).lookup(None, "m", T) is late


def test_times_are_utc_and_aware() -> None:
    plus2 = timezone(timedelta(hours=2))
    entry = _entry(effective_from=datetime(2026, 6, 1, 2, tzinfo=plus2))
    assert entry.effective_from == T
    assert entry.effective_from is not None
    assert entry.effective_from.tzinfo is UTC
    table = PriceTable([entry])
    assert table.lookup(None, "m", datetime(2026, 6, 1, 1, 59, tzinfo=plus2)) is None
    naive = T.replace(tzinfo=None)
    with pytest.raises(ValueError, match="time zone"):
        table.lookup(None, "m", naive)
    with pytest.raises(ValidationError, match="time zone"):
        _entry(effective_from=naive)


@pytest.mark.parametrize(
    "fields",
    [
        {"input": D("-1")},
        {"input": D("NaN")},
        {"output": D("Infinity")},
        {"currency": "EUR"},
        {"model": ""},
        {"effective_from": T, "effective_until": T},
        {"unknown": 1},
    ],
)
def test_bad_entries_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PriceEntry.model_validate({"model": "m", "input": 1, "output": 2, **fields})


def test_entry_from_config() -> None:
    pricing = Pricing(
        input=D("3"), output=D("15"), cached_input=D("0.3"), cache_write=D("3.75")
    )
    entry = entry_from_config("sonnet", "anthropic", pricing, provider_kind="anthropic")
    assert entry.model == "sonnet"
    assert entry.provider == "anthropic"
    assert (entry.input, entry.output) == (D("3"), D("15"))
    assert (entry.cache_read, entry.cache_write_5m, entry.cache_write_1h) == (
        D("0.3"),
        D("3.75"),
        None,
    )
    assert entry.source == "config"
    usage = NormalizedUsage(cache_write=1_000_000, cache_write_1h=1_000_000)
    assert cost_of(usage, entry).cache_write == D("6")  # 2x input, Anthropic
    bare = entry_from_config("m", None, Pricing(input=D("1"), output=D("2")))
    assert (bare.cache_read, bare.cache_write_5m, bare.provider_kind) == (
        None,
        None,
        None,
    )
