"""Test doubles for applications built on palyra.

The deterministic provider covers most offline tests (``client.deterministic()``
to script replies). `OpenAIMock` is for testing an ``openai_compatible``
configuration without a network: an `httpx.MockTransport` that answers in the
OpenAI wire format (JSON and SSE) from the same scriptable backend::

    mock = OpenAIMock()
    mock.enqueue("scripted answer")
    client = palyra.Palyra(config, transport=mock.transport)
"""

from __future__ import annotations

import httpx

from ._providers import DeterministicBackend
from ._tokens import TiktokenCounter, TokenCounter

__all__ = ["OpenAIMock"]


class OpenAIMock(DeterministicBackend):
    """An in-memory OpenAI-compatible upstream for `Palyra(transport=...)`.

    It echoes the last user message, streams when asked, embeds with stable hash
    vectors and transcribes, unless replies were queued with ``enqueue`` (see
    `palyra.DeterministicBackend`). Every request body is kept in ``history``.
    The ``transport`` serves sync and async clients alike.
    """

    def __init__(self, token_counter: TokenCounter | None = None) -> None:
        # TiktokenCounter loads nothing until the first count.
        counter = token_counter or TiktokenCounter()
        super().__init__(lambda: counter)
        self.transport = httpx.MockTransport(self.handle)
