"""The ``limits`` table: its defaults, and bad values named by their path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from palyra import ConfigError, LimitsConfig, PalyraConfig

MiB = 1024 * 1024


def test_defaults() -> None:
    """16 MiB per stream event, 64 MiB per whole answer."""
    limits = PalyraConfig().limits
    assert limits == LimitsConfig()
    assert (limits.max_event_bytes, limits.max_response_bytes) == (16 * MiB, 64 * MiB)


def test_set_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "palyra.toml"
    path.write_text(
        "[limits]\nmax_event_bytes = 1_048_576\nmax_response_bytes = 1024\n",
        encoding="utf-8",
    )
    limits = PalyraConfig.from_file(path).limits
    assert (limits.max_event_bytes, limits.max_response_bytes) == (MiB, 1024)


@pytest.mark.parametrize("key", ["max_event_bytes", "max_response_bytes"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("16MB", "Input should be a valid integer", id="string"),
        pytest.param(1.5, "Input should be a valid integer", id="float"),
        pytest.param(True, "Input should be a valid integer", id="bool"),
        pytest.param(0, "Input should be greater than 0", id="zero"),
        pytest.param(-1, "Input should be greater than 0", id="negative"),
        pytest.param(
            1024 * MiB + 1,
            "Input should be less than or equal to 1073741824",
            id="huge",
        ),
    ],
)
def test_bad_values_name_their_path(key: str, value: Any, message: str) -> None:
    """A bad cap is a `ConfigError` naming ``limits.<key>``."""
    with pytest.raises(ConfigError) as info:
        PalyraConfig.from_dict({"limits": {key: value}})
    assert info.value.errors == [(f"limits.{key}", message)]
    with pytest.raises(ConfigError) as wrapped:
        PalyraConfig.from_dict({"palyra": {"limits": {key: value}}})
    assert wrapped.value.errors == [(f"palyra.limits.{key}", message)]


def test_unknown_key_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        PalyraConfig.from_dict({"limits": {"max_event_byte": 10}})
    assert info.value.errors == [
        ("limits.max_event_byte", "unknown key; did you mean 'max_event_bytes'?")
    ]
