"""The whole configuration: `PalyraConfig` and its tables, read from Python
objects, a dict or TOML, and checked across fields (ids, aliases, defaults,
fallbacks)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from .._exceptions import ConfigError
from .base import ConfigModel, CrossFieldError, PositiveSeconds, unknown_keys
from .budgets import BudgetConfig
from .governance import LedgerConfig, PricingConfig
from .jobs import JobConfig
from .models import ModelEntry
from .observability import ObservabilityConfig
from .providers import ProviderConfig
from .routing import RoutingConfig
from .state import StateConfig

__all__ = [
    "AuthConfig",
    "LimitsConfig",
    "PalyraConfig",
    "RegistryDefaults",
    "ResilienceConfig",
]


FailoverScope = Literal["any", "same_provider", "off"]


class ResilienceConfig(ConfigModel):
    """How calls survive failing upstreams (retries are set per provider).

    Args:
        failover: Which candidates automatic failover may pick when a model
            fails after its retries or its breaker is open: ``"any"`` model
            of the same role, only models of the ``"same_provider"``, or
            ``"off"`` (True and False mean ``"any"`` and ``"off"``). Models
            with an explicit ``fallbacks`` list use it whatever this says.
        failover_max_price_ratio: Automatic failover never picks a model
            priced above this multiple of the failed model's price (input
            plus output, per token); with unpriced models, never a higher
            ``cost_tier``. None (``false`` in TOML): no price bound.
            Explicit ``fallbacks`` cross it.
        deadline: Seconds a whole call may take: every attempt, backoff sleep
            and failover included (for streams, until the first chunk). Each
            attempt's timeout is shortened to the time left. None: no limit
            beyond the per-attempt timeouts.
        retry_after_cap: Longest ``Retry-After`` honoured, in seconds. An
            upstream asking for a longer wait is not retried; the call fails
            over (or raises) at once.
        circuit_breakers: False turns breakers and health windows off: no call
            is refused for past failures, failover ignores health, and
            `Palyra.health` is empty (for an upstream gateway that already
            does this, or to measure what the bookkeeping costs).
    """

    failover: FailoverScope = "any"
    failover_max_price_ratio: Annotated[float, Field(gt=0, le=1e6)] | None = 2.0
    deadline: PositiveSeconds | None = 300.0
    retry_after_cap: Annotated[float, Field(ge=0, le=3600)] = 60.0
    circuit_breakers: bool = True

    @field_validator("failover_max_price_ratio", mode="before")
    @staticmethod
    def _ratio_off(value: Any) -> Any:
        # TOML has no null: false turns the bound off there.
        return None if value is False else value

    @field_validator("failover", mode="before")
    @staticmethod
    def _failover_bool(value: Any) -> Any:
        if isinstance(value, bool):  # the setting was a switch before it had scopes
            return "any" if value else "off"
        return value


MiB = 1024 * 1024
# Whole bytes (TOML and Python give ints; a bool or "16MB" is a mistake), at
# least one, at most 1 GiB: past that a cap no longer bounds anything useful.
ByteCount = Annotated[int, Field(strict=True, gt=0, le=1024 * MiB)]


class LimitsConfig(ConfigModel):
    """How much one upstream answer may hold, so that a broken or hostile
    upstream cannot grow memory (and time) without bound.

    Past a cap the call raises `ResponseTooLargeError`, naming the cap; like
    any answer of the wrong shape, it counts against the provider and is not
    retried, and another candidate may serve.

    Args:
        max_event_bytes: Largest server-sent event of a stream, in bytes: its
            ``data:`` lines plus the line being read, as sent (field names
            included, line breaks not).
        max_response_bytes: Largest whole answer, in bytes after decoding
            (gzip and the like): a non-streaming response body, or a JSON
            answer to a stream request.
    """

    max_event_bytes: ByteCount = 16 * MiB
    max_response_bytes: ByteCount = 64 * MiB


class RegistryDefaults(ConfigModel):
    """Default model id (or alias) per role."""

    chat: str | None = None
    embeddings: str | None = None
    audio_transcription: str | None = None


def _builtin_providers() -> tuple[ProviderConfig, ...]:
    return (ProviderConfig(id="deterministic", kind="deterministic"),)


def _builtin_models() -> tuple[ModelEntry, ...]:
    return (
        ModelEntry(
            id="deterministic-chat",
            provider="deterministic",
            role="chat",
            context_window=8192,
            max_output_tokens=4096,
            cost_tier="low",
            latency_tier="low",
        ),
        ModelEntry(
            id="deterministic-embeddings",
            provider="deterministic",
            role="embeddings",
            context_window=8192,
            dimensions=64,
            cost_tier="low",
            latency_tier="low",
        ),
    )


class AuthConfig(ConfigModel):
    """How auth profiles are used by calls.

    Args:
        refresh_window: Seconds before an OAuth access token expires from
            which a call refreshes it first (default 300).
    """

    refresh_window: PositiveSeconds = 300.0


class PalyraConfig(ConfigModel):
    """The whole registry: providers, models and per-role defaults.

    With no providers and no models, a deterministic provider with a chat and an
    embeddings model is configured, so ``Palyra()`` works offline.
    """

    providers: tuple[ProviderConfig, ...] = ()
    models: tuple[ModelEntry, ...] = ()
    defaults: RegistryDefaults = Field(default_factory=RegistryDefaults)
    resilience: ResilienceConfig = Field(default_factory=ResilienceConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    budgets: tuple[BudgetConfig, ...] = ()
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    jobs: tuple[JobConfig, ...] = ()
    state: StateConfig = Field(default_factory=StateConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)

    @field_validator("ledger", mode="before")
    @classmethod
    def _ledger_off(cls, value: Any) -> Any:
        # ``ledger = false`` is the short way to keep no records.
        return {"enabled": False} if value is False else value

    @model_validator(mode="before")
    @classmethod
    def _fill_builtin(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not data.get("providers"):
            if data.get("models"):
                # A misspelt [[providers]] is the likelier story: say so first.
                raise CrossFieldError(
                    [
                        *unknown_keys(cls, data),
                        ("providers", "at least one provider is required for models"),
                    ]
                )
            data = {
                **data,
                "providers": _builtin_providers(),
                "models": _builtin_models(),
            }
        return data

    @model_validator(mode="after")
    def _check_registry(self) -> Self:
        errors = _registry_errors(self)
        if errors:
            raise CrossFieldError(errors)
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PalyraConfig:
        """Build a config from plain data (e.g. parsed TOML or JSON).

        Raises:
            ConfigError: naming the path of every bad field.
        """
        if not isinstance(data, Mapping):
            raise ConfigError([("", "configuration must be a mapping")])
        if "palyra" not in data:
            return cls(**{str(key): value for key, value in data.items()})
        # palyra's own table inside an application's file: the rest of the
        # file is the application's business, and errors name the table.
        table = data["palyra"]
        if not isinstance(table, Mapping):
            raise ConfigError([("palyra", "must be a table of palyra settings")])
        try:
            return cls(**{str(key): value for key, value in table.items()})
        except ConfigError as exc:
            errors = [
                (f"palyra.{path}" if path else "palyra", m) for path, m in exc.errors
            ]
        raise ConfigError(errors)

    @classmethod
    def from_file(cls, path: str | Path) -> PalyraConfig:
        """Read a TOML configuration file.

        Raises:
            ConfigError: for an unreadable file, bad TOML or a bad field.
        """
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError([(str(file), f"cannot read: {exc.strerror}")]) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([(str(file), f"invalid TOML: {exc}")]) from None
        return cls.from_dict(data)


def _registry_errors(config: PalyraConfig) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    providers: dict[str, ProviderConfig] = {}
    for i, provider in enumerate(config.providers):
        if provider.id in providers:
            errors.append(
                (f"providers[{i}].id", f"duplicate provider id {provider.id!r}")
            )
        providers[provider.id] = provider
    if not config.models:
        errors.append(("models", "at least one model is required"))
    names: dict[str, ModelEntry] = {}
    for i, model in enumerate(config.models):
        if model.provider not in providers:
            errors.append(
                (f"models[{i}].provider", f"unknown provider {model.provider!r}")
            )
        elif (
            model.role == "embeddings" and providers[model.provider].kind == "anthropic"
        ):
            errors.append(
                (f"models[{i}].role", "anthropic providers serve no embeddings")
            )
        for j, name in enumerate((model.id, *model.aliases)):
            if name in names:
                where = f"models[{i}].id" if j == 0 else f"models[{i}].aliases[{j - 1}]"
                errors.append((where, f"{name!r} is already used by another model"))
            names[name] = model
    errors.extend(_fallback_errors(config, names))
    errors.extend(_tier_errors(config))
    jobs: set[str] = set()
    for i, job in enumerate(config.jobs):
        job_id = job.id or job.kind
        if job_id in jobs:
            errors.append((f"jobs[{i}].id", f"duplicate job id {job_id!r}"))
        jobs.add(job_id)
    budgets: set[str] = set()
    for i, budget in enumerate(config.budgets):
        if budget.id in budgets:
            errors.append((f"budgets[{i}].id", f"duplicate budget id {budget.id!r}"))
        budgets.add(budget.id)
    for role in ("chat", "embeddings", "audio_transcription"):
        wanted = getattr(config.defaults, role)
        if wanted is None:
            continue
        default = names.get(wanted)
        if default is None:
            errors.append((f"defaults.{role}", f"unknown model {wanted!r}"))
        elif default.role != role:
            errors.append(
                (f"defaults.{role}", f"model {wanted!r} has role {default.role!r}")
            )
    return errors


def _tier_errors(config: PalyraConfig) -> list[tuple[str, str]]:
    """Every tier a model or a task hint names must be a routing tier."""
    tiers = config.routing.tiers
    known = ", ".join(tiers)
    errors = [
        (f"models[{i}].tier", f"unknown tier {model.tier!r}; tiers: {known}")
        for i, model in enumerate(config.models)
        if model.tier is not None and model.tier not in tiers
    ]
    errors += [
        (f"routing.hints.{name}.tier", f"unknown tier {hint.tier!r}; tiers: {known}")
        for name, hint in config.routing.hints.items()
        if hint.tier is not None and hint.tier not in tiers
    ]
    return errors


def _fallback_errors(
    config: PalyraConfig, names: Mapping[str, ModelEntry]
) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for i, model in enumerate(config.models):
        for j, name in enumerate(model.fallbacks or ()):
            where = f"models[{i}].fallbacks[{j}]"
            target = names.get(name)
            if target is None:
                errors.append((where, f"unknown model {name!r}"))
            elif target is model:
                errors.append((where, "a model cannot fall back to itself"))
            elif target.role != model.role:
                errors.append(
                    (
                        where,
                        f"model {name!r} has role {target.role!r}, not {model.role!r}",
                    )
                )
        if model.fallbacks and len(set(model.fallbacks)) != len(model.fallbacks):
            errors.append((f"models[{i}].fallbacks", "fallbacks must not repeat"))
    return errors
