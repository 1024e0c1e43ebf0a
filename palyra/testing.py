"""Test doubles for applications built on palyra.

The deterministic provider covers most offline tests (``client.deterministic()``
to script replies). To test a real provider configuration without a network,
pass a mock's ``transport`` to the client: `OpenAIMock` answers an
``openai_compatible`` provider in the OpenAI wire format, `AnthropicMock` an
``anthropic`` one in the Messages API format (JSON and SSE both). Both are
scripted like the deterministic provider::

    mock = OpenAIMock()
    mock.enqueue("scripted answer")
    client = palyra.Palyra(config, transport=mock.transport)

docs/testing.md shows them at work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx

from ._providers import AnthropicBackend, DeterministicBackend
from ._tokens import TiktokenCounter, TokenCounter

__all__ = ["AnthropicMock", "OpenAIMock"]

_OPENAI_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
_ANTHROPIC_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")


class OpenAIMock(DeterministicBackend):
    """An in-memory OpenAI-compatible upstream for `Palyra(transport=...)`.

    It echoes the last user message, streams when asked, embeds with stable hash
    vectors and transcribes, unless replies were queued with ``enqueue`` (see
    `palyra.DeterministicBackend`). Every request body is kept in ``history``.
    The ``transport`` serves sync and async clients alike.

    Args:
        token_counter: Counts the usage it reports (tiktoken's by default).
        models: The ids ``GET /models`` lists (``client.provider_models``);
            by default ``gpt-4o-mini``, ``gpt-4o`` and ``text-embedding-3-small``.
    """

    def __init__(
        self,
        token_counter: TokenCounter | None = None,
        *,
        models: Sequence[str] = _OPENAI_MODELS,
    ) -> None:
        super().__init__(_counting(token_counter), models=models)
        self.transport = httpx.MockTransport(self.handle)


class AnthropicMock(AnthropicBackend):
    """An in-memory Anthropic Messages API for `Palyra(transport=...)`.

    Scripted with the same ``enqueue`` as `OpenAIMock`, it answers
    ``/v1/messages`` as a ``message`` object or an event stream (``tool_use``
    blocks for tool calls, the stop reason in Anthropic's terms), counts tokens
    on ``/v1/messages/count_tokens`` and lists ``models`` on ``GET /v1/models``.
    Scripted errors come in Anthropic's error envelope (529 is
    ``overloaded_error``). Requests the real API refuses get its 400: a missing
    ``anthropic-version`` header or ``max_tokens``, a ``temperature`` above 1, a
    ``tool_use`` without its ``tool_result``... Every request body is kept in
    ``history``, refused ones included. The ``transport`` serves sync and async
    clients alike.

    Args:
        token_counter: Counts the usage it reports (tiktoken's by default).
        models: The ids ``GET /v1/models`` lists, in this order and in pages;
            by default ``claude-sonnet-4-5``, ``claude-haiku-4-5`` and
            ``claude-opus-4-1``.
    """

    def __init__(
        self,
        token_counter: TokenCounter | None = None,
        *,
        models: Sequence[str] = _ANTHROPIC_MODELS,
    ) -> None:
        super().__init__(_counting(token_counter), models=models)
        self.transport = httpx.MockTransport(self.handle)


def _counting(token_counter: TokenCounter | None) -> Callable[[], TokenCounter]:
    # TiktokenCounter loads nothing until the first count.
    counter = token_counter or TiktokenCounter()
    return lambda: counter
