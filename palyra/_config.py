"""Configuration models: providers, models and registry defaults.

Every model is frozen and rejects unknown keys. Whatever the source (Python
objects, a dict, a TOML file), a bad configuration raises `ConfigError` naming
the path of each bad field, e.g. ``providers[1].base_url: http is only allowed
for loopback hosts; use https``. Configs hold secret *references* (an
environment variable name, an auth profile id); an inline ``api_key`` is
accepted with a warning and kept as a `pydantic.SecretStr`.
"""

from __future__ import annotations

import re
import tomllib
import warnings
from collections.abc import Mapping
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ._exceptions import ConfigError
from ._utils import normalize_base_url, private_address_problem

__all__ = [
    "Capabilities",
    "InsecureConfigWarning",
    "ModelEntry",
    "PalyraConfig",
    "Pricing",
    "ProviderConfig",
    "RegistryDefaults",
    "ResilienceConfig",
]

ProviderKind = Literal["deterministic", "openai_compatible", "anthropic"]
ModelRole = Literal["chat", "embeddings", "audio_transcription"]
AuthHeader = Literal["bearer", "x-api-key", "none"]

DEFAULT_BASE_URLS: dict[str, str] = {
    "openai_compatible": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
DEFAULT_AUTH_HEADERS: dict[str, AuthHeader] = {
    "deterministic": "none",
    "openai_compatible": "bearer",
    "anthropic": "x-api-key",
}
_KIND_ALIASES = {
    "openai": "openai_compatible",
    "openai-compatible": "openai_compatible",
}
_ROLE_ALIASES = {
    "embedding": "embeddings",
    "audio": "audio_transcription",
    "transcription": "audio_transcription",
    "audio-transcription": "audio_transcription",
}
# Credentials belong in api_key_env / auth profiles, never in plain header config.
_SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}
)
_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,127}$")
_ENV_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class InsecureConfigWarning(UserWarning):
    """A configuration choice that keeps a secret somewhere it should not be."""


_NESTING: ContextVar[int] = ContextVar("palyra_config_nesting", default=0)


class _ConfigModel(BaseModel):
    """Frozen, strict base whose constructor raises `ConfigError`."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, defer_build=True
    )

    def __init__(self, **data: Any) -> None:
        # pydantic calls a custom __init__ for nested models too: only the
        # outermost constructor turns errors into a ConfigError, so paths stay whole.
        depth = _NESTING.get()
        token = _NESTING.set(depth + 1)
        errors: list[tuple[str, str]] = []
        try:
            super().__init__(**data)
        except ValidationError as exc:
            if depth:
                raise
            errors = _validation_errors(exc)
        except _CrossFieldError as exc:
            errors = exc.errors
        finally:
            _NESTING.reset(token)
        if errors:
            # Raised outside the except block: pydantic's error quotes the input
            # (keys included), so it must not ride along as __context__.
            raise ConfigError(errors)


class _CrossFieldError(Exception):
    """Raised by registry-level checks; not a ValueError so pydantic passes it on."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    errors = []
    for err in exc.errors(include_url=False):
        path = _format_path(err["loc"])
        kind, msg = err["type"], err["msg"]
        if kind == "extra_forbidden":
            msg = "unknown key"
        elif kind == "missing":
            msg = "required key is missing"
        elif msg.startswith(("Value error, ", "Assertion failed, ")):
            msg = msg.split(", ", 1)[1]
        errors.append((path, msg))
    return errors


def _format_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _normalize_id(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().lower()
        if not _ID_PATTERN.match(value):
            raise ValueError(
                "must be 1-128 characters of a-z, 0-9, '_', '.', ':' or '-'"
                " starting with a letter or digit"
            )
    return value


ProviderId = Annotated[str, Field(min_length=1, max_length=128)]
PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]


class ProviderConfig(_ConfigModel):
    """Where and how to reach one upstream.

    Args:
        id: Unique provider id (``a-z0-9_.:-``, lower-cased).
        kind: ``deterministic``, ``openai_compatible`` (alias ``openai``) or
            ``anthropic``.
        base_url: ``https`` URL (``http`` only to loopback); defaults per kind.
        allow_private_base_url: Allow a base URL that is, or resolves to, a
            private, link-local or reserved address (host names are resolved
            when the client is built; unresolvable names are refused).
        enabled: Disabled providers serve no calls.
        auth_profile: Id of an auth profile holding the credential.
        api_key_env: Name of an environment variable holding the API key.
        api_key: Inline key (discouraged: warns; kept as a `SecretStr`).
        auth_header: ``bearer``, ``x-api-key`` or ``none``; defaults per kind.
        headers: Extra non-secret headers sent with every request.
        timeout: Seconds one attempt may take: each read/write/pool wait and
            the whole body; for streams, the longest wait for the next chunk.
        connect_timeout: Seconds to establish a connection.
        max_retries: Retries after the first attempt (0-10).
        retry_backoff: Base of the exponential retry backoff, in seconds.
        retry_backoff_max: Cap of one backoff sleep, in seconds.
        circuit_breaker_threshold: Consecutive failed calls that open the breaker.
        circuit_breaker_cooldown: Seconds the breaker stays open.

    Literal private addresses are refused here; host names are resolved and
    checked when a `Palyra` client is built. Retries, breakers and failover are
    described in ``docs/resilience.md``.
    """

    id: ProviderId
    kind: ProviderKind = "deterministic"
    base_url: str | None = None
    allow_private_base_url: bool = False
    enabled: bool = True
    auth_profile: str | None = None
    api_key_env: str | None = None
    api_key: SecretStr | None = None
    auth_header: AuthHeader | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: PositiveSeconds = 60.0
    connect_timeout: PositiveSeconds = 10.0
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_backoff: PositiveSeconds = 0.15
    retry_backoff_max: PositiveSeconds = 8.0
    circuit_breaker_threshold: Annotated[int, Field(gt=0, le=1000)] = 3
    circuit_breaker_cooldown: PositiveSeconds = 30.0

    _normalize_id = field_validator("id", "auth_profile", mode="before")(
        staticmethod(_normalize_id)
    )

    @field_validator("kind", mode="before")
    @staticmethod
    def _kind_alias(value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return _KIND_ALIASES.get(value, value)
        return value

    @field_validator("base_url")
    @staticmethod
    def _check_base_url(value: str | None) -> str | None:
        return None if value is None else normalize_base_url(value)

    @field_validator("api_key_env")
    @staticmethod
    def _check_env_name(value: str | None) -> str | None:
        if value is not None and not _ENV_PATTERN.match(value):
            raise ValueError("must be an environment variable name, not a key")
        return value

    @field_validator("api_key")
    @staticmethod
    def _warn_inline_key(value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            if not value.get_secret_value().strip():
                return None
            warnings.warn(
                "an inline api_key keeps a secret in configuration; prefer"
                " api_key_env or an auth_profile",
                InsecureConfigWarning,
                stacklevel=2,
            )
        return value

    @field_validator("headers")
    @staticmethod
    def _check_headers(value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in _SENSITIVE_HEADERS:
                raise ValueError(
                    f"header {name!r} carries credentials; use api_key_env or"
                    " auth_profile instead"
                )
        return value

    @model_validator(mode="after")
    def _check_credentials(self) -> Self:
        given = [
            name
            for name in ("auth_profile", "api_key_env", "api_key")
            if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"set only one of {', '.join(given)}")
        if self.kind == "deterministic" and self.base_url is not None:
            raise ValueError("deterministic providers take no base_url")
        if self.base_url is not None and not self.allow_private_base_url:
            problem = private_address_problem(self.base_url)
            if problem:
                raise ValueError(
                    f"base_url {problem}; set allow_private_base_url = true if this"
                    " is intended"
                )
        return self

    @property
    def effective_base_url(self) -> str:
        """The base URL used for calls (the kind's default when unset)."""
        return self.base_url or DEFAULT_BASE_URLS.get(self.kind, "")

    @property
    def effective_auth_header(self) -> AuthHeader:
        """The auth header style used for calls (the kind's default when unset)."""
        return self.auth_header or DEFAULT_AUTH_HEADERS[self.kind]


class Capabilities(_ConfigModel):
    """What a model can do; unset fields take the defaults of its kind and role."""

    streaming: bool | None = None
    tools: bool | None = None
    json_mode: bool | None = None
    vision: bool | None = None
    audio: bool | None = None


class Pricing(_ConfigModel):
    """USD per one million tokens (used by governance)."""

    input: Annotated[Decimal, Field(ge=0)]
    output: Annotated[Decimal, Field(ge=0)]
    cached_input: Annotated[Decimal, Field(ge=0)] | None = None
    cache_write: Annotated[Decimal, Field(ge=0)] | None = None


class ModelEntry(_ConfigModel):
    """One model offered by a provider.

    Args:
        id: Unique model id in the registry (case preserved).
        provider: Id of the provider serving it.
        upstream_model: Name sent upstream; defaults to ``id``.
        role: ``chat``, ``embeddings`` or ``audio_transcription``.
        enabled: Disabled models serve no calls.
        capabilities: Overrides of the kind/role default capabilities.
        context_window: Tokens of prompt plus output the model accepts.
        max_output_tokens: Most output tokens the model produces.
        dimensions: Embedding vector size (sent upstream when set).
        cost_tier: ``low``, ``standard`` or ``premium``.
        latency_tier: ``low``, ``standard`` or ``high``.
        pricing: Prices per 1M tokens.
        aliases: Other names that resolve to this model.
        fallbacks: Model ids or aliases to fail over to, in this order, when
            this model fails after its retries or its breaker is open. None
            (the default) picks candidates automatically; ``[]`` disables
            failover for this model.
        metadata_source: Where this entry came from (informational).
    """

    id: Annotated[str, Field(min_length=1, max_length=256)]
    provider: ProviderId
    upstream_model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    role: ModelRole = "chat"
    enabled: bool = True
    capabilities: Capabilities = Field(default_factory=Capabilities)
    context_window: Annotated[int, Field(gt=0)] | None = None
    max_output_tokens: Annotated[int, Field(gt=0)] | None = None
    dimensions: Annotated[int, Field(gt=0, le=65536)] | None = None
    cost_tier: Literal["low", "standard", "premium"] | None = None
    latency_tier: Literal["low", "standard", "high"] | None = None
    pricing: Pricing | None = None
    aliases: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] | None = None
    metadata_source: Literal[
        "static", "discovery", "operator_override", "legacy_migration"
    ] = "static"

    _normalize_provider = field_validator("provider", mode="before")(
        staticmethod(_normalize_id)
    )

    @field_validator("id", "upstream_model")
    @staticmethod
    def _check_name(value: str | None) -> str | None:
        if value is not None:
            value = value.strip()
            if not value or "\x00" in value:
                raise ValueError("must be a non-blank name without NUL characters")
        return value

    @field_validator("aliases")
    @staticmethod
    def _check_aliases(value: tuple[str, ...]) -> tuple[str, ...]:
        aliases = tuple(alias.strip() for alias in value)
        if any(not alias for alias in aliases):
            raise ValueError("aliases must be non-blank names")
        if len(set(aliases)) != len(aliases):
            raise ValueError("aliases must not repeat")
        return aliases

    @field_validator("role", mode="before")
    @staticmethod
    def _role_alias(value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return _ROLE_ALIASES.get(value, value)
        return value

    @model_validator(mode="after")
    def _check_output(self) -> Self:
        window, output = self.context_window, self.max_output_tokens
        if window is not None and output is not None and output > window:
            raise ValueError("max_output_tokens cannot exceed context_window")
        return self


class ResilienceConfig(_ConfigModel):
    """How calls survive failing upstreams (retries are set per provider).

    Args:
        failover: Try other candidates when a model fails after its retries or
            its circuit breaker is open. Models with an explicit ``fallbacks``
            list use it whatever this says.
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

    failover: bool = True
    deadline: PositiveSeconds | None = 300.0
    retry_after_cap: Annotated[float, Field(ge=0, le=3600)] = 60.0
    circuit_breakers: bool = True


class RegistryDefaults(_ConfigModel):
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


class PalyraConfig(_ConfigModel):
    """The whole registry: providers, models and per-role defaults.

    With no providers and no models, a deterministic provider with a chat and an
    embeddings model is configured, so ``Palyra()`` works offline.
    """

    providers: tuple[ProviderConfig, ...] = ()
    models: tuple[ModelEntry, ...] = ()
    defaults: RegistryDefaults = Field(default_factory=RegistryDefaults)
    resilience: ResilienceConfig = Field(default_factory=ResilienceConfig)

    @model_validator(mode="before")
    @classmethod
    def _fill_builtin(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not data.get("providers"):
            if data.get("models"):
                raise _CrossFieldError(
                    [("providers", "at least one provider is required for models")]
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
            raise _CrossFieldError(errors)
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PalyraConfig:
        """Build a config from plain data (e.g. parsed TOML or JSON).

        Raises:
            ConfigError: naming the path of every bad field.
        """
        if not isinstance(data, Mapping):
            raise ConfigError([("", "configuration must be a mapping")])
        if "palyra" in data and len(data) == 1:
            data = data["palyra"]
        return cls(**{str(key): value for key, value in data.items()})

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
