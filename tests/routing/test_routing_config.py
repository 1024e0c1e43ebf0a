"""The ``[routing]`` table (issue 12): defaults, TOML, and every bad value a
`ConfigError` naming its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import palyra
from tests.routing.registry import registry


def config(**routing: Any) -> palyra.PalyraConfig:
    return palyra.PalyraConfig.from_dict(registry(**routing))


def test_routing_is_off_by_default_with_documented_tiers_and_hints() -> None:
    routing = palyra.PalyraConfig().routing
    assert routing.mode == "off"
    assert dict(routing.tiers) == {"small": 0.0, "medium": 0.25, "large": 0.5}
    assert {"background", "classification", "extraction", "reasoning", "code"} <= set(
        routing.hints
    )
    assert routing.hints["classification"].prefer == "latency"
    assert routing.weights.keywords == 0.30


def test_modes_are_trimmed_lower_cased_and_dry_run_may_have_a_dash() -> None:
    assert config(mode=" Dry-Run ").routing.mode == "dry_run"
    assert config(mode="ENFORCED").routing.mode == "enforced"


def test_the_table_reads_from_toml(tmp_path: Path) -> None:
    file = tmp_path / "palyra.toml"
    file.write_text(
        """
[[providers]]
id = "local"
kind = "deterministic"

[[models]]
id = "cheap"
provider = "local"
tier = "basic"

[[models]]
id = "strong"
provider = "local"
quality = 0.9

[routing]
mode = "suggest"
prefer = "latency"
expected_output_tokens = 100
tiers = { basic = 0.0, pro = 0.6 }
weights = { keywords = 0.5, code = 0.0 }
hints = { triage = -0.4, deep = { shift = 0.2, tier = "pro" } }
"""
    )
    loaded = palyra.PalyraConfig.from_file(file)
    routing = loaded.routing
    assert routing.mode == "suggest"
    assert routing.prefer == "latency"
    assert list(routing.tiers) == ["basic", "pro"]
    assert routing.weights.keywords == 0.5
    assert routing.weights.code == 0.0
    assert routing.hints["triage"].shift == -0.4
    assert routing.hints["deep"].tier == "pro"
    assert "reasoning" in routing.hints  # merged over the built-in hints
    decision = palyra.Palyra(loaded, ledger=False).route(
        [{"role": "user", "content": "hi"}], hint="deep"
    )
    assert decision.tier == "pro"
    assert decision.chosen == "strong"
    assert decision.candidate("strong").tier == "pro"  # type: ignore[union-attr]


def test_tiers_are_sorted_by_their_start() -> None:
    routing = config(tiers={"large": 0.7, "small": 0.0, "medium": 0.3}).routing
    assert list(routing.tiers) == ["small", "medium", "large"]
    assert routing.tier_of(0.5) == "medium"
    assert routing.tier_of(0.7) == "large"


BAD: list[tuple[dict[str, Any], str]] = [
    ({"mode": "enforce"}, "routing.mode"),
    ({"mode": 1}, "routing.mode"),
    ({"weights": {"code": 1.5}}, "routing.weights.code"),
    ({"weights": {"keywords": -0.1}}, "routing.weights.keywords"),
    ({"weights": {"images": float("nan")}}, "routing.weights.images"),
    ({"weights": {"vibes": 0.2}}, "routing.weights.vibes"),
    ({"tiers": {"small": 0.1, "large": 0.5}}, "routing.tiers"),
    ({"tiers": {"small": 0.0, "large": 1.0}}, "routing.tiers.large"),
    ({"tiers": {"small": 0.0, "a": 0.5, "b": 0.5}}, "routing.tiers"),
    ({"tiers": {"Big Tier": 0.0}}, "routing.tiers"),
    ({"tiers": {}}, "routing.tiers"),
    ({"hints": {"x": 2}}, "routing.hints.x.shift"),
    ({"hints": {"x": {"prefer": "vibes"}}}, "routing.hints.x.prefer"),
    ({"hints": {"x": {"tier": "huge"}}}, "routing.hints.x.tier"),
    ({"hints": {"Bad Name": 0.1}}, "routing.hints"),
    ({"prefer": "quality"}, "routing.prefer"),
    ({"keywords": ["a"]}, "routing.keywords[0]"),
    ({"expected_output_tokens": 0}, "routing.expected_output_tokens"),
    ({"moed": "enforced"}, "routing.moed"),
]


@pytest.mark.parametrize(("routing", "path"), BAD)
def test_a_bad_value_names_its_field(routing: dict[str, Any], path: str) -> None:
    with pytest.raises(palyra.ConfigError) as caught:
        config(**routing)
    assert path in [p for p, _ in caught.value.errors], caught.value.errors


def test_a_misspelt_table_key_is_suggested() -> None:
    with pytest.raises(palyra.ConfigError, match=r"did you mean 'mode'"):
        config(moed="enforced")


def test_an_unknown_model_tier_names_the_model() -> None:
    data = registry()
    data["models"][1]["tier"] = "xl"
    with pytest.raises(palyra.ConfigError) as caught:
        palyra.PalyraConfig.from_dict(data)
    assert caught.value.errors == [
        ("models[1].tier", "unknown tier 'xl'; tiers: small, medium, large")
    ]


@pytest.mark.parametrize("quality", [-0.1, 1.1, "high"])
def test_a_bad_quality_names_the_model(quality: Any) -> None:
    data = registry()
    data["models"][0]["quality"] = quality
    with pytest.raises(palyra.ConfigError) as caught:
        palyra.PalyraConfig.from_dict(data)
    assert "models[0].quality" in [p for p, _ in caught.value.errors]


def test_custom_tiers_apply_to_models_and_their_qualities() -> None:
    data = registry(tiers={"eco": 0.0, "max": 0.4})
    for model, tier in zip(data["models"], ("eco", "eco", "max"), strict=True):
        model["tier"] = tier
    c = palyra.Palyra(data, ledger=False)
    assert c.route([{"role": "user", "content": "hello"}]).chosen == "small"
