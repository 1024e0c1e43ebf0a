"""Test doubles for applications built on palyra.

The deterministic provider covers most offline tests (``client.deterministic()``
to script replies). `OpenAIMock` is for testing an ``openai_compatible``
configuration without a network: an `httpx.MockTransport` that answers in the
OpenAI wire format (JSON and SSE) from the same scriptable backend::

    mock = OpenAIMock()
    mock.enqueue("scripted answer")
    client = palyra.Palyra(config, transport=mock.transport,
                           async_transport=mock.transport)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from ._providers.deterministic import DeterministicBackend
from ._tokens import TiktokenCounter, TokenCounter

__all__ = ["OpenAIMock"]


class OpenAIMock:
    """An in-memory OpenAI-compatible upstream for `Palyra(transport=...)`.

    It echoes the last user message, streams when asked, embeds with stable hash
    vectors and transcribes, unless replies were queued with `enqueue`. Every
    request body is kept in `history`.
    """

    def __init__(self, token_counter: TokenCounter | None = None) -> None:
        # TiktokenCounter loads nothing until the first count.
        counter = token_counter or TiktokenCounter()
        self._backend = DeterministicBackend(lambda: counter)
        self.transport = httpx.MockTransport(self._backend.handle)

    @property
    def history(self) -> list[dict[str, Any]]:
        """Request bodies received, oldest first."""
        return self._backend.history

    def enqueue(
        self,
        content: str | None = None,
        *,
        tool_calls: Sequence[Mapping[str, Any]] = (),
        finish_reason: str | None = None,
        refusal: str | None = None,
        status: int = 200,
        error: str | None = None,
    ) -> None:
        """Queue the next reply (see `palyra.DeterministicBackend.enqueue`)."""
        self._backend.enqueue(
            content,
            tool_calls=tool_calls,
            finish_reason=finish_reason,
            refusal=refusal,
            status=status,
            error=error,
        )
