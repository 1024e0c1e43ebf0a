"""What a provider offers: `ModelEntry`, its `Capabilities` and `Pricing`."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, Field, field_validator, model_validator

from .base import ConfigModel, ProviderId, normalize_id

__all__ = ["Capabilities", "ModelEntry", "ModelRole", "Pricing"]

ModelRole = Literal["chat", "embeddings", "audio_transcription"]
_ROLE_ALIASES = {
    "embedding": "embeddings",
    "audio": "audio_transcription",
    "transcription": "audio_transcription",
    "audio-transcription": "audio_transcription",
}


class Capabilities(ConfigModel):
    """What a model can do; unset fields take the defaults of its kind and role."""

    streaming: bool | None = None
    tools: bool | None = None
    json_mode: bool | None = None
    vision: bool | None = None
    audio: bool | None = None


class Pricing(ConfigModel):
    """USD per one million tokens (used by governance).

    Args:
        input: Uncached input tokens.
        output: Output tokens (reasoning included).
        cached_input: Tokens read from the prompt cache. None: Anthropic
            models take 0.1x input, others the input price.
        cache_write: Tokens written to the prompt cache (Anthropic: with the
            default 5 minute lifetime). None: Anthropic 1.25x input, others
            the input price.
        cache_write_1h: Tokens written for 1 hour (Anthropic). None:
            Anthropic 2x input, others ``cache_write``.
        per_request: A fixed USD price per request.
        effective_from: The first instant (with a time zone) the price
            holds; older calls are priced by the table's other entries.
        effective_until: The first instant it no longer holds.
    """

    input: Annotated[Decimal, Field(ge=0)]
    output: Annotated[Decimal, Field(ge=0)]
    cached_input: Annotated[Decimal, Field(ge=0)] | None = None
    cache_write: Annotated[Decimal, Field(ge=0)] | None = None
    cache_write_1h: Annotated[Decimal, Field(ge=0)] | None = None
    per_request: Annotated[Decimal, Field(ge=0)] = Decimal(0)
    effective_from: AwareDatetime | None = None
    effective_until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _span(self) -> Self:
        start, end = self.effective_from, self.effective_until
        if start is not None and end is not None and end <= start:
            raise ValueError("effective_until must be after effective_from")
        return self


class ModelEntry(ConfigModel):
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
        tier: The routing tier the model serves (a name of
            ``routing.tiers``, e.g. ``small``, ``medium``, ``large``).
        quality: A number in [0, 1] on the routing score's scale: the model
            serves the tier whose range holds it (when ``tier`` is unset),
            and breaks ranking ties upward.
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
    tier: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    quality: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    aliases: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] | None = None
    metadata_source: Literal[
        "static", "discovery", "operator_override", "legacy_migration"
    ] = "static"

    _normalize_provider = field_validator("provider", mode="before")(
        staticmethod(normalize_id)
    )

    @field_validator("id", "upstream_model")
    @staticmethod
    def _check_name(value: str | None) -> str | None:
        if value is not None:
            value = value.strip()
            if not value or "\x00" in value:
                raise ValueError("must be a non-blank name without NUL characters")
        return value

    @field_validator("aliases", "fallbacks", mode="before")
    @staticmethod
    def _one_name(value: Any) -> Any:
        # aliases = "fast" means one alias, not the letters of one.
        return (value,) if isinstance(value, str) else value

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
