"""What a client's configuration asks of it, read once at construction:
whether calls may be routed, whether credentials may come from profiles,
the keys it names (kept out of the scheduler's records), and the config
itself from what ``Palyra(config=)`` was given."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._config import PalyraConfig

__all__ = [
    "configured_keys",
    "load_config",
    "may_route",
    "may_use_profiles",
    "relies_on_profiles",
]


def may_route(config: PalyraConfig) -> bool:
    """Whether calls may be routed without a ``route=`` of their own: then
    served calls are watched for their cache use (for routing's prices)."""
    return config.routing.mode != "off" or any(
        m.tier is not None or m.quality is not None for m in config.models
    )


def may_use_profiles(config: PalyraConfig) -> bool:
    """Whether any provider could take its credential from a profile."""
    return any(
        (p.enabled and p.effective_auth_header != "none" and p.api_key is None)
        or p.auth_profile is not None
        for p in config.providers
    )


def relies_on_profiles(config: PalyraConfig) -> bool:
    """Whether a provider takes its credential from profiles first."""
    return any(
        p.enabled
        and p.effective_auth_header != "none"
        and (
            p.auth_profile is not None or (p.api_key_env is None and p.api_key is None)
        )
        for p in config.providers
    )


def configured_keys(config: PalyraConfig) -> tuple[str, ...]:
    """The keys the configuration names (inline, or in the environment):
    redacted from what the scheduler records of a job's failure."""
    found: list[str] = []
    for provider in config.providers:
        if provider.api_key is not None:
            found.append(provider.api_key.get_secret_value())
        if provider.api_key_env is not None:
            found.append(os.environ.get(provider.api_key_env, "").strip())
    return tuple(key for key in found if key)


def load_config(
    config: PalyraConfig | Mapping[str, Any] | str | Path | None,
) -> PalyraConfig:
    """The configuration ``Palyra(config=)`` names (None: the offline default).

    Raises:
        ConfigError: it is invalid (each bad field's path named).
    """
    if config is None:
        return PalyraConfig()
    if isinstance(config, PalyraConfig):
        return config
    if isinstance(config, str | Path):
        return PalyraConfig.from_file(config)
    return PalyraConfig.from_dict(config)
