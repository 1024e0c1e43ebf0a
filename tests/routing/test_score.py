"""The complexity score (issue 12): pinned for a table of prompts, computed by
the documented formula, deterministic, and moved by each weight, threshold
and hint in the documented direction."""

from __future__ import annotations

from typing import Any

import pytest

import palyra
from palyra._routing.scoring import SATURATION, tier_for
from palyra._routing.signals import find_keywords
from tests.routing.registry import (
    CODE,
    IMAGE,
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

WEIGHTS = palyra.RoutingWeights()

# The scores of the table, pinned (tiktoken's cl100k counts included).
PINNED = {
    "short": 0.00245,
    "reasoning": 0.584375,
    "code": 0.62875,
    "medium": 0.356,
    "vision": 0.2108,
    "long_plain": 0.211225,
}
PROMPTS = {name: messages for name, messages, _, _ in TABLE} | {
    "long_plain": LONG_PLAIN
}


def client(**routing: Any) -> palyra.Palyra:
    return palyra.Palyra(registry(**routing), ledger=False)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_table_of_prompts_has_pinned_scores(name: str) -> None:
    decision = client().route(PROMPTS[name])
    assert decision.score == pytest.approx(PINNED[name], abs=1e-9)
    assert 0.0 <= decision.score <= 1.0


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_score_is_the_documented_weighted_sum(name: str) -> None:
    decision = client().route(PROMPTS[name])
    f = decision.features
    expected = (
        WEIGHTS.prompt_tokens * min(f.prompt_tokens / 2000, 1)
        + WEIGHTS.messages * min((f.messages - 1) / 19, 1)
        + WEIGHTS.images * min(f.images / 2, 1)
        + WEIGHTS.tools * min(f.tools, 1)
        + WEIGHTS.json_mode * f.json_mode
        + WEIGHTS.code * min(f.code_blocks / 2, 1)
        + WEIGHTS.keywords * min(len(f.keywords) / 3, 1)
        + WEIGHTS.output_tokens * min(f.output_tokens / 4000, 1)
    )
    assert decision.score == pytest.approx(min(expected, 1.0), abs=1e-6)
    assert sum(f.parts.values()) == pytest.approx(decision.score, abs=1e-3)


def test_the_features_say_what_was_measured() -> None:
    c = client()
    code = c.route(CODE).features
    assert code.code_blocks == 2
    assert code.keywords == ("debug", "optimi", "refactor")
    assert set(code.parts) == {"prompt_tokens", "code", "keywords"}
    vision = c.route(VISION).features
    assert (vision.images, vision.messages) == (1, 1)
    reasoning = c.route(REASONING).features
    assert set(reasoning.keywords) >= {"analy", "trade-off", "step by step", "prove"}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    asked = c.route(
        SHORT,
        tools=tools,
        response_format={"type": "json_object"},
        max_tokens=2000,
        hint="code",
    ).features
    assert (asked.tools, asked.json_mode, asked.output_tokens) == (1, True, 2000)
    assert asked.hint == "code"
    assert asked.parts["hint"] == pytest.approx(0.30)
    assert asked.parts["output_tokens"] == pytest.approx(0.05)


def test_the_same_request_always_scores_the_same() -> None:
    a, b = client(), client()
    for messages in PROMPTS.values():
        first = a.route(messages)
        assert a.route(messages) == first  # the memoised count changes nothing
        assert b.route(messages).score == first.score


def test_only_asking_roles_carry_keywords_but_every_text_carries_code() -> None:
    c = client()
    answered = [
        {"role": "user", "content": "ok"},
        {"role": "assistant", "content": "I will analyze and refactor\n```\nx\n```"},
    ]
    features = c.route(answered).features
    assert features.keywords == ()
    assert features.code_blocks == 1
    assert features.messages == 2


def test_keywords_match_at_the_start_of_words_only() -> None:
    keywords = ("analy", "design", "step by step")
    assert find_keywords("we analysed it", keywords) == ("analy",)
    assert find_keywords("psychoanalysis; redesign", keywords) == ()
    assert find_keywords("(design) step by step", keywords) == (
        "design",
        "step by step",
    )


# -- each knob moves the score in the documented direction -----------------------

SIGNAL_PROMPTS: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {
    "prompt_tokens": (user(words(600)), {}),
    "messages": ([*user("a") * 5], {}),
    "images": (VISION, {}),
    "tools": (SHORT, {"tools": [{"type": "function", "function": {"name": "f"}}]}),
    "json_mode": (SHORT, {"response_format": {"type": "json_object"}}),
    "code": (user("```\nx\n```"), {}),
    "keywords": (user("please analyze this"), {}),
    "output_tokens": (SHORT, {"max_tokens": 1000}),
}


@pytest.mark.parametrize("signal", sorted(SIGNAL_PROMPTS))
def test_raising_a_weight_raises_the_score_and_zero_removes_its_part(
    signal: str,
) -> None:
    messages, options = SIGNAL_PROMPTS[signal]
    default = getattr(WEIGHTS, signal)
    scores = [
        client(weights={signal: weight}).route(messages, **options).score
        for weight in (0.0, default, min(default + 0.3, 1.0))
    ]
    assert scores[0] < scores[1] < scores[2]
    without = client(weights={signal: 0.0}).route(messages, **options)
    assert signal not in without.features.parts


def test_every_signal_saturates_at_one() -> None:
    many = [{"role": "user", "content": [IMAGE] * 5}] * 30
    decision = client(weights={"images": 0.2, "messages": 0.2}).route(many)
    assert decision.features.parts["images"] == pytest.approx(0.2)
    assert decision.features.parts["messages"] == pytest.approx(0.2)
    assert SATURATION["images"] == 2


def test_the_score_is_clamped_to_one_and_zero() -> None:
    top = client(weights=dict.fromkeys(SIGNAL_PROMPTS, 1.0), hints={"x": 1.0})
    assert top.route(CODE, hint="x").score == 1.0
    assert client(hints={"x": -1.0}).route(REASONING, hint="x").score == 0.0


def test_hints_shift_the_score_by_their_amount() -> None:
    c = client()
    plain = c.route(MEDIUM).score
    assert c.route(MEDIUM, hint="reasoning").score == pytest.approx(plain + 0.35)
    assert c.route(MEDIUM, hint="background").score == pytest.approx(plain - 0.25)
    custom = client(hints={"reasoning": 0.1})
    assert custom.route(MEDIUM, hint="reasoning").score == pytest.approx(plain + 0.1)


def test_thresholds_map_scores_to_tiers_in_order() -> None:
    tiers = {"small": 0.0, "medium": 0.25, "large": 0.5}
    assert [tier_for(s, tiers) for s in (0, 0.2499, 0.25, 0.49, 0.5, 1)] == [
        "small",
        "small",
        "medium",
        "medium",
        "large",
        "large",
    ]
    # Raising a threshold above a score moves its request down a tier.
    assert client().route(MEDIUM).tier == "medium"
    higher = client(tiers={"small": 0, "medium": 0.4, "large": 0.6})
    assert higher.route(MEDIUM).tier == "small"
    lower = client(tiers={"small": 0, "medium": 0.1, "large": 0.3})
    assert lower.route(MEDIUM).tier == "large"


def test_keywords_can_be_replaced() -> None:
    c = client(keywords=["quux"])
    assert c.route(user("analyze the quux")).features.keywords == ("quux",)


def test_code_blocks_are_counted_per_text() -> None:
    split = [
        {"role": "user", "content": "first ``` half"},
        {"role": "user", "content": "other ``` half"},
    ]
    assert client().route(split).features.code_blocks == 0
    both = [{"role": "user", "content": "```\na\n```"}, *user("```\nb\n```")]
    assert client().route(both).features.code_blocks == 2
