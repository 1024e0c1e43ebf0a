"""Candidates and ranking (issue 12), through ``client.route``: the table of
prompts goes where it should, and models that cannot serve are skipped with
the right reason: no vision, over a hard budget (nothing reserved), an open
breaker, a context too small, disabled, no tier."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

import palyra
from tests.routing.registry import (
    LONG_PLAIN,
    MEDIUM,
    REASONING,
    SHORT,
    TABLE,
    VISION,
    registry,
    user,
    words,
)

pytestmark = [pytest.mark.anyio]


def client(config: dict[str, Any] | None = None, **kw: Any) -> palyra.Palyra:
    return palyra.Palyra(config or registry(), ledger=kw.pop("ledger", False), **kw)


def reasons(decision: palyra.RoutingDecision, model: str) -> tuple[str, ...]:
    found = decision.candidate(model)
    assert found is not None, decision.candidates
    return found.reasons


@pytest.mark.parametrize(("name", "messages", "tier", "chosen"), TABLE)
async def test_the_table_routes_where_it_should(
    name: str, messages: list[dict[str, Any]], tier: str, chosen: str
) -> None:
    c = client()
    decision = c.route(messages)
    assert (decision.tier, decision.chosen) == (tier, chosen)
    assert await c.aroute(messages) == decision  # the async twin decides the same
    assert decision.requested == "mid"  # the default
    assert decision.mode == "off"  # the config's; client.route decides anyway
    assert decision.candidates[0].model == chosen
    assert decision.candidates[0].eligible
    assert decision.explanation.count(".") >= 1
    assert decision.explanation.endswith(".")
    assert chosen in decision.explanation


def test_short_simple_prompts_go_to_the_cheap_model() -> None:
    decision = client().route(SHORT)
    assert decision.chosen == "small"
    assert reasons(decision, "small")[0] == "only_fit"
    assert reasons(decision, "mid") == ("other_tier", "requested")
    assert reasons(decision, "large") == ("other_tier",)
    small = decision.candidate("small")
    assert small is not None
    # 14 prompt tokens at $0.15/M plus 256 expected output tokens at $0.60/M.
    expected = (14 * Decimal("0.15") + 256 * Decimal("0.60")) / 1_000_000
    assert small.estimated_cost == expected
    assert small.health == "healthy"
    assert small.latency_ms is None


def test_long_reasoning_and_code_prompts_go_to_the_strong_model() -> None:
    c = client()
    for messages in (REASONING, [*REASONING, *user("also: ```\nx\n``` ```y```")]):
        decision = c.route(messages)
        assert decision.chosen == "large"
        assert decision.chosen_tier == "large"
    assert c.route(REASONING, hint="background").chosen == "mid"


def test_vision_requests_go_only_to_vision_models() -> None:
    decision = client().route(VISION)
    assert decision.chosen == "large"
    assert reasons(decision, "small")[0] == "no_vision"
    assert reasons(decision, "mid")[0] == "no_vision"
    assert reasons(decision, "large")[:2] == ("only_fit", "stepped_up")
    assert "stronger tier large" in decision.explanation
    assert not decision.candidate("small").eligible  # type: ignore[union-attr]


def test_a_model_too_small_for_the_context_is_skipped() -> None:
    decision = client().route(LONG_PLAIN)
    assert decision.tier == "small"
    assert reasons(decision, "small")[0] == "context_too_small"
    assert decision.chosen == "mid"
    assert reasons(decision, "mid")[:2] == ("only_fit", "stepped_up")
    # The output asked for counts toward the window, and against max output.
    asked = client().route(SHORT, max_tokens=1020)
    assert reasons(asked, "small")[:2] == ("context_too_small", "output_too_small")


def test_a_model_over_a_hard_budget_is_skipped_and_nothing_is_reserved() -> None:
    budget = {"id": "cap", "scope": "agent", "metric": "usd", "hard_limit": "0.05"}
    c = client({**registry(), "budgets": [budget]}, ledger=palyra.MemoryLedger())
    # large's worst case: ~1,640 prompt tokens + 8,192 output at $5/$25 per 1M.
    decision = c.route(REASONING, agent="ann")
    assert reasons(decision, "large")[0] == "over_budget"
    assert decision.chosen == "mid"
    assert reasons(decision, "mid")[:2] == ("only_fit", "stepped_down")
    assert "weaker tier medium" in decision.explanation
    status = c.budgets.status()
    assert all(s.reserved == 0 for s in status)
    # Without an agent the per-agent budget does not apply.
    assert c.route(REASONING).chosen == "large"


def test_unpriced_models_under_a_usd_budget_are_skipped() -> None:
    config = registry()
    del config["models"][0]["pricing"]
    config["budgets"] = [{"id": "all", "metric": "usd", "hard_limit": "100"}]
    decision = client(config, ledger=palyra.MemoryLedger()).route(SHORT)
    assert reasons(decision, "small")[0] == "unpriced_budget"
    assert decision.chosen == "mid"


def test_a_model_whose_breaker_is_open_is_skipped() -> None:
    c = client()
    backend = c.deterministic("p-mid")
    backend.enqueue(status=500, times=2)
    for _ in range(2):
        with pytest.raises(palyra.InternalServerError):
            c.chat(SHORT, "mid")
    decision = c.route(MEDIUM)
    assert decision.tier == "medium"
    assert reasons(decision, "mid")[0] == "breaker_open"
    assert decision.candidate("mid").health == "degraded"  # type: ignore[union-attr]
    assert decision.chosen == "large"  # the nearer tier, upward first
    assert reasons(decision, "large")[:2] == ("only_fit", "stepped_up")


def test_disabled_and_untiered_models_are_skipped() -> None:
    config = registry()
    config["models"].append(
        {"id": "old", "provider": "p-small", "tier": "small", "enabled": False}
    )
    config["models"].append({"id": "plain", "provider": "p-small"})
    decision = client(config).route(SHORT)
    assert reasons(decision, "old")[0] == "disabled"
    assert reasons(decision, "plain")[:2] == ("no_tier", "unpriced")
    assert decision.candidate("plain").tier is None  # type: ignore[union-attr]
    assert decision.chosen == "small"


def test_the_cheapest_fit_wins_within_a_tier_and_quality_breaks_ties_upward() -> None:
    config = registry()
    config["models"] += [
        {
            "id": "tiny",
            "provider": "p-small",
            "quality": 0.1,
            "pricing": {"input": "0.10", "output": "0.40"},
        },
        {
            "id": "twin",
            "provider": "p-small",
            "quality": 0.2,
            "pricing": {"input": "0.10", "output": "0.40"},
        },
    ]
    decision = client(config).route(SHORT)
    assert decision.candidate("tiny").tier == "small"  # type: ignore[union-attr]
    assert decision.chosen == "twin"  # as cheap as tiny, of higher quality
    assert reasons(decision, "twin")[0] == "cheapest_fit"
    assert reasons(decision, "tiny")[0] == "pricier"
    assert reasons(decision, "small")[0] == "pricier"
    assert [c.model for c in decision.candidates[:3]] == ["twin", "tiny", "small"]


def test_the_price_counts_the_tokens_each_model_reads_from_its_cache() -> None:
    config = registry()
    config["models"].append(
        {
            "id": "cached",
            "provider": "p-small",
            "tier": "small",
            "context_window": 8000,
            "pricing": {"input": "0.30", "output": "0.60", "cached_input": "0.03"},
        }
    )
    c = client(config)
    prompt = user(words(600))
    assert c.route(prompt).chosen == "small"  # both uncached: small is cheaper
    shares = c._router._assessor.shares  # what served calls would have taught it
    for _ in range(30):
        shares.observe(
            ("p-small", "cached"),
            palyra.NormalizedUsage(input_uncached=100, cache_read=900, output=10),
        )
    decision = c.route(prompt)
    assert decision.chosen == "cached"
    small, cached = decision.candidate("small"), decision.candidate("cached")
    assert small is not None
    assert cached is not None
    assert cached.estimated_cost is not None
    assert small.estimated_cost is not None
    assert cached.estimated_cost < small.estimated_cost


def test_served_calls_teach_the_cache_share() -> None:
    c = client(registry(mode="suggest"))
    shares = c._router._assessor.shares
    c.chat(SHORT, "small")
    # The deterministic provider reports no cache reads: the share is 0.
    assert shares.share(("p-small", "small")) == 0.0
    assert ("p-small", "small") in shares._shares


def test_a_latency_hint_ranks_by_observed_latency_first() -> None:
    config = registry()
    config["models"].append(
        {
            "id": "quick",
            "provider": "p-mid",
            "tier": "small",
            "context_window": 8000,
            "pricing": {"input": "0.50", "output": "1"},
        }
    )
    c = client(config)
    health = c._pipeline.health
    for _ in range(5):
        health.record(("p-small", "small"), True, 900.0)
        health.record(("p-mid", "quick"), True, 40.0)
    by_cost = c.route(SHORT)
    assert by_cost.chosen == "small"
    assert by_cost.candidate("quick").latency_ms == 40.0  # type: ignore[union-attr]
    by_latency = c.route(SHORT, hint="classification")
    assert by_latency.chosen == "quick"
    assert reasons(by_latency, "quick")[0] == "fastest_fit"
    assert reasons(by_latency, "small")[0] == "slower"


def test_degraded_models_rank_after_healthy_ones() -> None:
    config = registry()
    config["models"].append(
        {
            "id": "cheaper",
            "provider": "p-mid",
            "tier": "small",
            "context_window": 8000,
            "pricing": {"input": "0.01", "output": "0.01"},
        }
    )
    c = client(config)
    assert c.route(SHORT).chosen == "cheaper"
    health = c._pipeline.health
    for ok in (True, False, True, False, True, False, True, False, False, True):
        health.record(("p-mid", "cheaper"), ok, 10.0)
    decision = c.route(SHORT)
    assert decision.candidate("cheaper").health == "degraded"  # type: ignore[union-attr]
    assert "degraded" in reasons(decision, "cheaper")
    assert decision.chosen == "small"


def test_a_hint_may_pin_a_tier() -> None:
    c = client(registry(hints={"deep": {"tier": "large"}}))
    decision = c.route(SHORT, hint="deep")
    assert (decision.tier, decision.chosen) == ("large", "large")


def test_nothing_fits_keeps_the_requested_model() -> None:
    image_only = [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
    config = registry()
    config["models"][2]["capabilities"] = {"vision": False}
    decision = client(config).route(VISION)
    assert decision.chosen == "mid" == decision.requested
    assert decision.chosen_tier is None
    assert all(not c.eligible for c in decision.candidates)
    assert "no model fits" in decision.explanation
    assert client(config).route(image_only).chosen == "small"


def test_an_unknown_hint_or_mode_is_a_typed_error_naming_it() -> None:
    c = client()
    with pytest.raises(palyra.InvalidRequestError, match=r"hint: unknown task hint"):
        c.route(SHORT, hint="poetry")
    with pytest.raises(palyra.InvalidRequestError, match=r"route: must be one of"):
        c.route(SHORT, route="always")
    with pytest.raises(palyra.InvalidRequestError, match=r"hint"):
        c.route(SHORT, hint=3)  # type: ignore[arg-type]
    with pytest.raises(palyra.ModelNotFoundError):
        c.route(SHORT, "nope")
    with pytest.raises(palyra.InvalidRequestError, match=r"hint: unknown"):
        c.chat(SHORT, route="suggest", hint="poetry")
    # Off too: a misspelt hint fails now, not on the day routing is on.
    with pytest.raises(palyra.InvalidRequestError, match=r"hint: unknown"):
        c.chat(SHORT, hint="poetry")
    assert c.chat(SHORT, hint="code").palyra.routing is None  # type: ignore[union-attr]


def test_the_decision_is_public_and_serialisable() -> None:
    decision = client().route(REASONING, route="enforced")
    assert type(decision) is palyra.RoutingDecision
    assert isinstance(decision.candidates[0], palyra.RoutingCandidate)
    assert isinstance(decision.features, palyra.RoutingFeatures)
    dumped = decision.model_dump()
    assert "rows" not in dumped
    assert dumped["explanation"] == decision.explanation
    assert [c["model"] for c in dumped["candidates"]] == ["large", "mid", "small"]
    again = palyra.RoutingDecision.model_validate_json(decision.model_dump_json())
    assert again == decision
    assert again.candidates == decision.candidates
    assert again.explanation == decision.explanation
    made = palyra.RoutingDecision(**{**dumped, "candidates": decision.candidates})
    assert made == decision
    with pytest.raises(AttributeError, match="frozen"):
        decision.candidates = ()  # type: ignore[misc]
    schema = palyra.RoutingDecision.model_json_schema()
    assert {"candidates", "explanation"} <= set(schema["properties"])
    assert "rows" not in schema["properties"]
    assert set(dumped) <= set(schema["properties"])
    reply = client(registry(mode="enforced")).chat(REASONING)
    assert reply.palyra is not None
    shown = json.loads(reply.model_dump_json())["palyra"]["routing"]
    assert shown["candidates"][0]["model"] == "large"
    assert shown["explanation"].startswith("Score 0.58 asks for tier large")
    assert decision.serves == "large"
    assert decision.mode == "enforced"
