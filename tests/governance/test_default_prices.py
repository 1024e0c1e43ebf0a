"""The shipped default price table: dated, exact, published list prices."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from palyra._governance.default_prices import DEFAULT_PRICES, SNAPSHOT_DATE
from palyra._governance.pricing import Cost, PriceEntry, PriceTable, cost_of
from palyra._governance.usage import NormalizedUsage, from_openai
from palyra._providers.anthropic_stream import usage_from
from palyra._wire import CompletionUsage

D = Decimal
T = datetime(2026, 12, 1, tzinfo=UTC)
PARTS = ("total", "input", "cache_read", "cache_write", "output", "per_request")


def _all_decimal(cost: Cost) -> None:
    for name in PARTS:
        assert type(getattr(cost, name)) is Decimal, name


DEFAULTS = PriceTable([], DEFAULT_PRICES)


def _default(model: str) -> PriceEntry:
    entry = DEFAULTS.lookup("any", model, T)
    assert entry is not None, model
    return entry


@pytest.mark.parametrize(
    ("model", "prompt", "completion", "total"),
    [
        # The reference's worked examples at the published list prices
        # (governance-and-cron.md 3.3), unrounded here: palyra keeps 10 places.
        ("gpt-4o-mini", 1000, 500, "0.00045"),
        ("gpt-4o", 123_457, 0, "0.3086425"),
        ("gpt-4.1", 1000, 500, "0.006"),  # deploybase.ai's worked example
        ("gpt-4.1-mini", 1_000_000, 1_000_000, "2.00"),  # tokenmath.io's
    ],
)
def test_default_openai_worked_examples(
    model: str, prompt: int, completion: int, total: str
) -> None:
    usage = from_openai(
        CompletionUsage(prompt_tokens=prompt, completion_tokens=completion)
    )
    cost = cost_of(usage, _default(model))
    assert cost.total == D(total)
    _all_decimal(cost)


@pytest.mark.parametrize(
    ("model", "cached"),
    [
        ("gpt-4o", "1.25"),
        ("gpt-4o-mini", "0.075"),
        ("gpt-4.1", "0.50"),
        ("gpt-4.1-mini", "0.10"),
        ("o3-mini", "0.55"),
    ],
)
def test_default_openai_cached_input(model: str, cached: str) -> None:
    usage = from_openai(
        CompletionUsage.model_validate(
            {
                "prompt_tokens": 1_000_000,
                "prompt_tokens_details": {"cached_tokens": 1_000_000},
            }
        )
    )
    cost = cost_of(usage, _default(model))
    assert cost.input == 0
    assert cost.cache_read == D(cached)
    assert cost.total == D(cached)


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("claude-opus-4-1-20250805", "15"),
        ("claude-opus-4-20250514", "15"),
        ("claude-opus-4-0", "15"),
        ("claude-sonnet-4-20250514", "3"),
        ("claude-sonnet-4-0", "3"),
        ("claude-3-7-sonnet-20250219", "3"),
        ("claude-3-7-sonnet-latest", "3"),
        ("claude-3-5-haiku-20241022", "0.80"),
        ("claude-3-5-haiku-latest", "0.80"),
    ],
)
def test_default_anthropic_prices_follow_the_published_multipliers(
    model: str, base: str
) -> None:
    entry = _default(model)
    assert entry.input == D(base)
    assert entry.output == D(base) * 5
    assert entry.cache_write_5m == D(base) * D("1.25")
    assert entry.cache_write_1h == D(base) * 2
    assert entry.cache_read == D(base) * D("0.1")


def test_default_haiku_3_uses_the_published_rounded_cache_prices() -> None:
    # Haiku 3's published cache prices are rounded ($0.30, not 1.25 x $0.25).
    entry = _default("claude-3-haiku-20240307")
    assert (entry.cache_write_5m, entry.cache_write_1h, entry.cache_read) == (
        D("0.30"),
        D("0.50"),
        D("0.03"),
    )


def test_default_anthropic_cost_through_the_adapter_mapping() -> None:
    # Sonnet 4 via palyra's Anthropic adapter: 100 uncached, 1,000 read,
    # 200 written (unknown lifetime: 5 min), 50 output.
    mapped = CompletionUsage.model_validate(
        usage_from(
            {
                "input_tokens": 100,
                "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 200,
                "output_tokens": 50,
            }
        )
    )
    cost = cost_of(from_openai(mapped), _default("claude-sonnet-4-20250514"))
    # 100 x 3 + 1000 x 0.30 + 200 x 3.75 + 50 x 15 = 2,100 per million
    assert cost.total == D("0.0021")


@pytest.mark.parametrize(
    "model",
    [
        "claude-opus-5",  # later than the snapshot's sources
        "claude-sonnet-5-5",
        "gpt-4o-2024-05-13",  # dearer than gpt-4o
        "gpt-5",
        "no-such-model",
    ],
)
def test_models_not_in_the_snapshot_are_unpriced(model: str) -> None:
    assert DEFAULTS.lookup("any", model, T) is None
    cost = cost_of(NormalizedUsage(input_uncached=1), DEFAULTS.lookup(None, model, T))
    assert cost.unpriced is True
    assert cost.total is None


def test_default_embeddings() -> None:
    assert _default("text-embedding-3-small").input == D("0.02")
    assert _default("text-embedding-3-large").input == D("0.13")


def test_the_default_table_is_dated_and_exact() -> None:
    assert isinstance(SNAPSHOT_DATE, date)
    for entry in DEFAULT_PRICES:
        assert SNAPSHOT_DATE.isoformat() in entry.source
        assert entry.effective_from is None
        for name in ("input", "output", "cache_read", "cache_write_5m"):
            value = getattr(entry, name)
            assert value is None or type(value) is Decimal


@pytest.mark.parametrize(
    ("model", "prices"),
    [
        # Opus 4.5 and later cost a third of Opus 4: never Opus 4's pattern.
        ("claude-opus-4-5-20251101", ("5", "6.25", "10", "0.50", "25")),
        ("claude-opus-4-20250514", ("15", "18.75", "30", "1.50", "75")),
        ("claude-sonnet-4-5", ("3", "3.75", "6", "0.30", "15")),
        ("claude-sonnet-4-5-20250929", ("3", "3.75", "6", "0.30", "15")),
        ("claude-haiku-4-5", ("1", "1.25", "2", "0.10", "5")),
    ],
)
def test_the_4_5_generation_is_priced(model: str, prices: tuple[str, ...]) -> None:
    entry = DEFAULTS.lookup("anthropic", model, T, "anthropic")
    assert entry is not None
    got = (entry.input, entry.cache_write_5m, entry.cache_write_1h)
    assert (*got, entry.cache_read, entry.output) == tuple(D(p) for p in prices)
    # An OpenAI-compatible provider serving a model of that name is not
    # priced as Anthropic: the entries are for Anthropic providers.
    assert DEFAULTS.lookup("proxy", model, T, "openai_compatible") is None
