"""The provider registry: config entries resolved into ready-to-route models.

A `ResolvedModel` has concrete capabilities (kind/role defaults with the
entry's overrides applied) and knows its provider. Lookups by id or alias are
plain dict reads, because they happen on every call.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from types import MappingProxyType

from ._config import ModelEntry, ModelRole, PalyraConfig, ProviderConfig
from ._exceptions import (
    InvalidRequestError,
    ModelNotFoundError,
    UnsupportedCapabilityError,
)
from ._wire import ModelCapabilities, ModelInfo

__all__: list[str] = []

_LISTED = 20  # names an unknown-model error lists in full

_ALL_OFF = {"streaming": False, "tools": False, "json_mode": False, "vision": False}
# Defaults per (provider kind, role); entry-level capabilities override them.
_CHAT = {"streaming": True, "tools": True, "json_mode": True, "audio": False}
# Defaults per (provider kind, role); entry-level capabilities override them.
_DEFAULT_CAPABILITIES: dict[tuple[str, str], dict[str, bool]] = {
    ("deterministic", "chat"): {**_CHAT, "vision": False},
    ("openai_compatible", "chat"): {**_CHAT, "vision": True},
    ("anthropic", "chat"): {**_CHAT, "vision": True},
}


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A registry model with its provider and concrete capabilities."""

    id: str
    upstream: str
    role: ModelRole
    provider: ProviderConfig
    capabilities: ModelCapabilities
    entry: ModelEntry

    @property
    def usable(self) -> bool:
        """Whether both the model and its provider are enabled."""
        return self.entry.enabled and self.provider.enabled


def _capabilities(entry: ModelEntry, provider: ProviderConfig) -> ModelCapabilities:
    defaults = _DEFAULT_CAPABILITIES.get(
        (provider.kind, entry.role),
        {**_ALL_OFF, "audio": entry.role == "audio_transcription"},
    )
    overrides = entry.capabilities.model_dump(exclude_none=True)
    return ModelCapabilities(**{**defaults, **overrides})


class Registry:
    """Providers and models of one client, indexed for per-call lookups."""

    def __init__(self, config: PalyraConfig) -> None:
        self.config = config
        self.providers = MappingProxyType({p.id: p for p in config.providers})
        models: dict[str, ResolvedModel] = {}
        by_name: dict[str, ResolvedModel] = {}
        for entry in config.models:
            provider = self.providers[entry.provider]
            model = ResolvedModel(
                id=entry.id,
                upstream=entry.upstream_model or entry.id,
                role=entry.role,
                provider=provider,
                capabilities=_capabilities(entry, provider),
                entry=entry,
            )
            models[entry.id] = model
            for name in (entry.id, *entry.aliases):
                by_name[name] = model
        self.models = MappingProxyType(models)
        self._by_name = by_name
        self._defaults: dict[str, ResolvedModel | None] = {
            role: self._pick_default(role)
            for role in ("chat", "embeddings", "audio_transcription")
        }

    def _pick_default(self, role: str) -> ResolvedModel | None:
        wanted = getattr(self.config.defaults, role)
        if wanted is not None:
            return self._by_name[wanted]
        for model in self.models.values():
            if model.role == role and model.usable:
                return model
        return None

    def default(self, role: ModelRole) -> ResolvedModel | None:
        """The default model for a role, if there is one."""
        return self._defaults[role]

    def resolve(self, name: str | None, role: ModelRole) -> ResolvedModel:
        """Find the model serving a call.

        Raises:
            ModelNotFoundError: no model or alias of that name, or no default.
            UnsupportedCapabilityError: the model exists but has another role.
        """
        if name is not None and not isinstance(name, str):
            kind = type(name).__name__
            raise InvalidRequestError(
                f"model: must be a model id or alias (a string), got {kind}"
            )
        model = self._defaults[role] if name is None else self._by_name.get(name)
        if model is None:
            if name is None:
                raise ModelNotFoundError(
                    f"no {role} model is configured; add a model with role"
                    f" {role!r} or set defaults.{role}"
                )
            raise ModelNotFoundError(
                f"unknown model {name!r}; {self._known(name, role)}", model=name
            )
        if model.role != role:
            raise UnsupportedCapabilityError(
                f"model {model.id!r} has role {model.role!r}, not {role!r}",
                capability=role,
                provider=model.provider.id,
                model=model.id,
            )
        if not model.usable:
            what = "model" if not model.entry.enabled else "its provider"
            raise ModelNotFoundError(
                f"model {model.id!r} is disabled ({what} has enabled = false)",
                provider=model.provider.id,
                model=model.id,
            )
        return model

    def _known(self, name: str, role: ModelRole) -> str:
        """What could have been meant: every name of the role, or the nearest."""
        names = [n for n, m in self._by_name.items() if m.role == role]
        if not names:
            return f"no {role} model is configured"
        if len(names) <= _LISTED:
            return f"configured {role} models: {', '.join(names)}"
        near = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
        shown = ", ".join(near or names[:_LISTED])
        return f"{len(names)} {role} models are configured, e.g. {shown}"

    def find(self, name: str) -> ResolvedModel | None:
        """The model with this id or alias, if any (no role or enabled check)."""
        return self._by_name.get(name)

    def any_model(self, provider: str) -> ResolvedModel:
        """A model of ``provider`` to address provider-level calls with.

        Raises:
            ModelNotFoundError: the provider is unknown or has no model.
        """
        for model in self.models.values():
            if model.provider.id == provider:
                return model
        raise ModelNotFoundError(
            f"provider {provider!r} is not configured or has no model",
            provider=provider,
        )

    def describe(self) -> list[ModelInfo]:
        """Every registry model, as `ModelInfo`."""
        defaults = {id(m) for m in self._defaults.values() if m is not None}
        return [
            ModelInfo(
                id=model.id,
                owned_by=model.provider.id,
                provider_kind=model.provider.kind,
                upstream_model=model.upstream,
                role=model.role,
                enabled=model.usable,
                is_default=id(model) in defaults,
                capabilities=model.capabilities,
                context_window=model.entry.context_window,
                max_output_tokens=model.entry.max_output_tokens,
                aliases=list(model.entry.aliases),
            )
            for model in self.models.values()
        ]
