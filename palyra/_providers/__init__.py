"""Provider adapters: pure translators between palyra and one wire dialect.

What it is for: the adapter contract (`ProviderAdapter`, `Target`,
`StreamParser`), the dialect toolkit every adapter shares (the SSE decoder,
the chunk accumulator, error mapping in ``base``), and the adapters
themselves: ``openai`` (OpenAI-compatible), ``anthropic`` (Messages API, with
``anthropic_stream``) and ``deterministic`` (the offline upstream). The
in-process upstreams share their script and answer decision (``scripted``);
``anthropic_mock`` (with ``anthropic_checks``) answers in the Messages API
for ``palyra.testing``.

May import: the leaves (``_exceptions``, ``_utils``, ``_wire``, ``_config``,
``_tokens``, ``_request``, ``_registry``) and httpx. Never the core or a
subsystem: the core drives adapters through the contract exported here.

Exports to the rest of palyra: the contract, `request_id`, `too_large` (the
error of an answer past a size cap), `stream_parser`
(the parser for the body a stream request actually got), `Adapters`, which
loads each kind's adapter on first use (``import palyra`` loads none), and the
scriptable backends, loaded when first named.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._exceptions import UnsupportedCapabilityError
from .._registry import ResolvedModel
from .._tokens import TokenCounter
from .._version import __version__
from .base import (
    InProcessTransport,
    ProviderAdapter,
    StreamParser,
    Target,
    request_id,
    too_large,
)
from .unstreamed import stream_parser

if TYPE_CHECKING:
    from .anthropic_mock import AnthropicBackend
    from .deterministic import DeterministicAdapter, DeterministicBackend, ScriptedReply

__all__ = [
    "Adapters",
    "AnthropicBackend",
    "DeterministicAdapter",
    "DeterministicBackend",
    "InProcessTransport",
    "ProviderAdapter",
    "ScriptedReply",
    "StreamParser",
    "Target",
    "request_id",
    "stream_parser",
    "too_large",
]

# Provider kind -> module whose ``create(counter)`` builds the kind's adapter.
_MODULES = {
    "openai_compatible": "palyra._providers.openai",
    "anthropic": "palyra._providers.anthropic",
    "deterministic": "palyra._providers.deterministic",
}
# Name -> module defining it, imported when the name is first used.
_LAZY = {
    "AnthropicBackend": "anthropic_mock",
    "DeterministicAdapter": "deterministic",
    "DeterministicBackend": "deterministic",
    "ScriptedReply": "deterministic",
}


class Adapters:
    """The adapters of one client, one per provider kind, built on first use.

    Args:
        counter: Returns the client's token counter (the deterministic
            upstream counts usage with it).
    """

    def __init__(self, counter: Callable[[], TokenCounter]) -> None:
        self._counter = counter
        self._built: dict[str, ProviderAdapter] = {}
        self._lock = threading.Lock()

    def for_model(self, model: ResolvedModel) -> ProviderAdapter:
        """The adapter speaking ``model``'s provider dialect.

        Raises:
            UnsupportedCapabilityError: no adapter serves the provider's kind.
        """
        adapter = self._built.get(model.provider.kind)
        if adapter is None:
            adapter = self._build(model.provider.kind, model)
        return adapter

    def for_kind(self, kind: str) -> ProviderAdapter:
        """The adapter of one provider kind."""
        return self._built.get(kind) or self._build(kind, None)

    def _build(self, kind: str, model: ResolvedModel | None) -> ProviderAdapter:
        module = _MODULES.get(kind)
        if module is None:
            raise UnsupportedCapabilityError(
                f"provider kind {kind!r} is not served by palyra {__version__}",
                capability="provider_kind",
                provider=model.provider.id if model else None,
                model=model.id if model else None,
            )
        create = importlib.import_module(module).create
        with self._lock:
            if kind not in self._built:
                self._built[kind] = create(self._counter)
            return self._built[kind]


def __getattr__(name: str) -> Any:
    # The backends' modules (and the email parser) load only when used.
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
