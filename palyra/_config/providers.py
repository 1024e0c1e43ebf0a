"""Where and how to reach one upstream: `ProviderConfig`."""

from __future__ import annotations

import re
import warnings
from typing import Annotated, Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from .._utils import header_problem, normalize_base_url, private_address_problem
from .base import (
    ENV_NAME,
    ConfigModel,
    InsecureConfigWarning,
    PositiveSeconds,
    ProviderId,
    normalize_id,
)
from .oauth import OAuthConfig

__all__ = [
    "DEFAULT_AUTH_HEADERS",
    "DEFAULT_BASE_URLS",
    "AuthHeader",
    "ProviderConfig",
    "ProviderKind",
]

ProviderKind = Literal["deterministic", "openai_compatible", "anthropic"]
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
_PROFILE_ID = re.compile(r"[a-z0-9._-]{1,128}")


class ProviderConfig(ConfigModel):
    """Where and how to reach one upstream.

    Args:
        id: Unique provider id (``a-z0-9_.:-``, lower-cased).
        kind: ``deterministic``, ``openai_compatible`` (alias ``openai``) or
            ``anthropic``.
        base_url: ``https`` URL (``http`` only to loopback); defaults per kind.
        allow_private_base_url: Allow a base URL that is, or resolves to, a
            special-purpose address: private, shared, link-local, reserved...
            (`palyra._addresses`; host names are resolved and checked when a
            connection is opened, never at construction).
        enabled: Disabled providers serve no calls.
        auth_profile: Id of an auth profile holding the credential (beats
            every other source; see ``docs/auth.md``).
        auth_order: Ids of the provider's auth profiles to prefer, in order,
            when palyra selects one (no ``auth_profile``, no key found).
        api_key_env: Name of an environment variable holding the API key.
        api_key: Inline key (discouraged: warns; kept as a `SecretStr`).
        auth_header: ``bearer``, ``x-api-key`` or ``none``; defaults per kind
            (Bearer when the provider has an ``oauth`` table).
        headers: Extra non-secret headers sent with every request.
        timeout: Seconds one attempt may take: each read/write/pool wait and
            the whole body; for streams, the longest wait for the next chunk.
        connect_timeout: Seconds to establish a connection.
        max_retries: Retries after the first attempt (0-10).
        retry_backoff: Base of the exponential retry backoff, in seconds.
        retry_backoff_max: Cap of one backoff sleep, in seconds.
        circuit_breaker_threshold: Consecutive failed calls that open the breaker.
        circuit_breaker_cooldown: Seconds the breaker stays open.
        stream_usage: Ask an OpenAI-compatible upstream for usage at the end
            of a stream (``stream_options.include_usage``). False for a server
            that refuses the option: usage is then counted locally.
        oauth: The provider's OAuth 2.0 authorization server and client
            (`OAuthConfig`), for auth profiles connected by OAuth; None when
            the provider takes only keys.

    Literal private addresses are refused here; host names are resolved and
    checked on every new connection (`palyra.BlockedAddressError`). Retries,
    breakers and failover are described in ``docs/resilience.md``.
    """

    id: ProviderId
    kind: ProviderKind = "deterministic"
    base_url: str | None = None
    allow_private_base_url: bool = False
    enabled: bool = True
    auth_profile: str | None = None
    auth_order: tuple[str, ...] = ()
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
    stream_usage: bool = True
    oauth: OAuthConfig | None = None

    _normalize_id = field_validator("id", "auth_profile", mode="before")(
        staticmethod(normalize_id)
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
        if value is not None and not ENV_NAME.match(value):
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
        for name, text in value.items():
            problem = header_problem(name, text)
            if problem:
                raise ValueError(f"header {name!r} {problem}")
        return value

    @field_validator("auth_order", mode="before")
    @staticmethod
    def _check_order(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(
                item.strip().lower() if isinstance(item, str) else item
                for item in value
            )
        return value

    @model_validator(mode="after")
    def _check_credentials(self) -> Self:
        named = [("auth_profile", self.auth_profile)] if self.auth_profile else []
        for where, profile_id in named + [("auth_order", p) for p in self.auth_order]:
            if not _PROFILE_ID.fullmatch(profile_id):
                raise ValueError(
                    f"{where}: {profile_id!r} is not a profile id (1-128 of"
                    " a-z, 0-9, '.', '_' or '-')"
                )
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
        """The auth header style used for calls: ``auth_header``, else Bearer
        for a provider with an ``oauth`` table (its credentials are OAuth
        access tokens), else the kind's default."""
        if self.auth_header is not None:
            return self.auth_header
        if self.oauth is not None and self.kind != "deterministic":
            return "bearer"
        return DEFAULT_AUTH_HEADERS[self.kind]
