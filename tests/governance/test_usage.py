"""Usage normalised from OpenAI, Anthropic and palyra's Anthropic mapping."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from palyra._governance.usage import (
    NormalizedUsage,
    from_anthropic,
    from_embeddings,
    from_openai,
)
from palyra._providers.anthropic_stream import usage_from
from palyra._wire import CompletionUsage, EmbeddingUsage


def _openai(
    prompt: int,
    completion: int,
    *,
    cached: int | None = None,
    written: int | None = None,
    reasoning: int | None = None,
) -> CompletionUsage:
    return CompletionUsage.model_validate(
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {
                "cached_tokens": cached,
                "cache_write_tokens": written,
            },
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
    )


def test_openai_cached_tokens_are_inside_prompt_tokens() -> None:
    # OpenAI's usage: 2,006 prompt tokens of which 1,920 were cached.
    usage = from_openai(_openai(2006, 300, cached=1920))
    assert (usage.input_uncached, usage.cache_read, usage.cache_write) == (86, 1920, 0)
    assert usage.input_total == 2006
    assert usage.total == 2306


def test_openai_reasoning_is_inside_completion_tokens() -> None:
    usage = from_openai(_openai(100, 1000, reasoning=800))
    assert usage.output == 1000
    assert usage.reasoning == 800
    assert usage.total == 1100  # not 1900: reasoning is not added again


def test_openai_without_details() -> None:
    usage = from_openai(CompletionUsage(prompt_tokens=10, completion_tokens=5))
    assert usage == NormalizedUsage(input_uncached=10, output=5)


def test_palyra_anthropic_mapping_is_not_double_counted() -> None:
    # What the Anthropic adapter gives the pipeline: input_tokens excludes the
    # cache, the adapter adds reads and writes into prompt_tokens.
    native = {
        "input_tokens": 100,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 200,
        "output_tokens": 50,
    }
    mapped = CompletionUsage.model_validate(usage_from(native))
    assert mapped.prompt_tokens == 1300
    usage = from_openai(mapped)
    assert (usage.input_uncached, usage.cache_read, usage.cache_write) == (
        100,
        1000,
        200,
    )
    assert usage.input_total == 1300
    direct = from_anthropic(100, 50, 200, 1000)
    assert direct == usage


def test_anthropic_native_keeps_ttl_split() -> None:
    usage = from_anthropic(
        10, 20, 300, 40, cache_creation_5m=100, cache_creation_1h=200
    )
    assert (usage.cache_write, usage.cache_write_5m, usage.cache_write_1h) == (
        300,
        100,
        200,
    )
    assert usage.input_uncached == 10
    assert usage.reasoning == 0


def test_anthropic_split_without_aggregate() -> None:
    usage = from_anthropic(1, 1, cache_creation_1h=50)
    assert (usage.cache_write, usage.cache_write_5m, usage.cache_write_1h) == (
        50,
        None,
        50,
    )


def test_anthropic_inconsistent_split_is_dropped() -> None:
    usage = from_anthropic(1, 1, 300, cache_creation_5m=100, cache_creation_1h=100)
    assert usage.cache_write == 300
    assert usage.cache_write_5m is None
    assert usage.cache_write_1h is None


def test_embeddings() -> None:
    usage = from_embeddings(EmbeddingUsage(prompt_tokens=42, total_tokens=42))
    assert usage == NormalizedUsage(input_uncached=42)


@pytest.mark.parametrize(
    "make",
    [
        lambda e: from_openai(_openai(5, 5), estimated=e),
        lambda e: from_anthropic(5, 5, estimated=e),
        lambda e: from_embeddings(EmbeddingUsage(prompt_tokens=5), estimated=e),
    ],
)
@pytest.mark.parametrize("estimated", [True, False])
def test_estimated_flag_propagates(make: object, estimated: bool) -> None:
    assert callable(make)
    assert make(estimated).estimated is estimated


def test_inconsistent_openai_details_are_clamped() -> None:
    usage = from_openai(_openai(100, 10, cached=80, written=50, reasoning=99))
    assert (usage.input_uncached, usage.cache_read, usage.cache_write) == (0, 80, 20)
    assert usage.input_total == 100
    assert usage.reasoning == 10


@pytest.mark.parametrize(
    "fields",
    [
        {"input_uncached": -1},
        {"output": True},
        {"output": 1.0},
        {"cache_write": 10, "cache_write_5m": 3},
        {"cache_write": 10, "cache_write_5m": 3, "cache_write_1h": 8},
        {"output": 1, "reasoning": 2},
        {"extra": 1},
    ],
)
def test_bad_usage_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        NormalizedUsage.model_validate(fields)


def test_usage_is_frozen() -> None:
    usage = NormalizedUsage(output=1)
    with pytest.raises(ValidationError):
        usage.output = 2  # type: ignore[misc]


# -- Anthropic's 1 hour cache writes through the adapter --------------------------

SPLIT = {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200}


def _anthropic(**fields: object) -> dict[str, object]:
    return {"input_tokens": 10, "cache_creation_input_tokens": 300, **fields}


def test_usage_from_carries_a_consistent_1h_split() -> None:
    got = usage_from(_anthropic(output_tokens=5, cache_creation=SPLIT))
    assert got["prompt_tokens"] == 310
    assert got["prompt_tokens_details"] == {
        "cached_tokens": 0,
        "cache_write_tokens": 300,
        "cache_write_1h_tokens": 200,
    }


@pytest.mark.parametrize(
    "split",
    [
        pytest.param(None, id="absent"),
        pytest.param({"ephemeral_5m_input_tokens": 100}, id="one-part"),
        pytest.param(
            {"ephemeral_5m_input_tokens": 50, "ephemeral_1h_input_tokens": 200},
            id="disagrees",
        ),
        pytest.param(
            {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": "200"},
            id="string",
        ),
        pytest.param(
            {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": -100},
            id="negative",
        ),
        pytest.param(
            {"ephemeral_5m_input_tokens": 99.5, "ephemeral_1h_input_tokens": 200.5},
            id="fractional",
        ),
        pytest.param(
            {"ephemeral_5m_input_tokens": True, "ephemeral_1h_input_tokens": 299},
            id="bool",
        ),
        pytest.param([100, 200], id="not-an-object"),
    ],
)
def test_usage_from_drops_an_odd_split_without_raising(split: object) -> None:
    fields = {} if split is None else {"cache_creation": split}
    got = usage_from(_anthropic(**fields))
    assert got["prompt_tokens_details"]["cache_write_tokens"] == 300
    assert "cache_write_1h_tokens" not in got["prompt_tokens_details"]
    normalized = from_openai(CompletionUsage.model_validate(got))
    assert (normalized.cache_write_5m, normalized.cache_write_1h) == (None, None)
    assert normalized.cache_write == 300


def test_usage_from_still_names_a_malformed_aggregate() -> None:
    with pytest.raises(ValueError, match=r"usage\.cache_creation_input_tokens"):
        usage_from({"cache_creation_input_tokens": "300", "cache_creation": SPLIT})


def test_from_openai_splits_the_1h_writes() -> None:
    usage = CompletionUsage.model_validate(usage_from(_anthropic(cache_creation=SPLIT)))
    normalized = from_openai(usage)
    assert normalized.cache_write == 300
    assert (normalized.cache_write_5m, normalized.cache_write_1h) == (100, 200)
    assert normalized == from_anthropic(
        10, 0, 300, cache_creation_5m=100, cache_creation_1h=200
    )


@pytest.mark.parametrize("hour", [0, 300])
def test_from_openai_split_at_the_edges(hour: int) -> None:
    usage = _openai(310, 0, written=300)
    assert usage.prompt_tokens_details is not None
    usage.prompt_tokens_details.cache_write_1h_tokens = hour
    normalized = from_openai(usage)
    assert (normalized.cache_write_5m, normalized.cache_write_1h) == (300 - hour, hour)


def test_from_openai_drops_a_split_larger_than_the_writes() -> None:
    usage = _openai(310, 0, written=300)
    assert usage.prompt_tokens_details is not None
    usage.prompt_tokens_details.cache_write_1h_tokens = 301
    normalized = from_openai(usage)
    assert (normalized.cache_write_5m, normalized.cache_write_1h) == (None, None)
    assert normalized.cache_write == 300
