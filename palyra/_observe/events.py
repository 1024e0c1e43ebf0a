"""What a call's lifecycle events are: `CallEvent`, built off the call path.

A call emits ``start``, then for a stream ``first_token``, then one of
``end``, ``error`` or ``cancelled``: each once. The call's thread only
queues a small note (the kind, the call's context, the moment); the event
itself is built by the dispatcher's thread, from the context, which no
longer changes once the call has ended, and from what the note snapshot
took at the moment (a start's model, which failover may change later).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .._usage import Cost, NormalizedUsage

__all__ = ["OUTCOMES", "CallEvent", "EventKind"]

EventKind = Literal["start", "first_token", "end", "error", "cancelled"]
OUTCOMES = {"end": "ok", "error": "error", "cancelled": "cancelled"}
"""A call's last event as the ledger names its outcome."""


@dataclass(slots=True)
class CallEvent:
    """One moment of one call, as handed to ``on_event`` callbacks.

    Attributes:
        kind: ``start``, ``first_token`` (streams), ``end``, ``error`` or
            ``cancelled`` (a stream closed early, a cancelled task, a
            disconnected ``/v1`` client).
        call_id: The call's id, the same on each of its events.
        at: When it happened (aware, UTC).
        operation: ``chat``, ``embeddings`` or ``transcription``.
        stream: Whether the call streams.
        agent, session, principal, tags: Who the call is for.
        provider, model: At ``start`` the model asked for (after routing);
            later, the one that served or was tried last (after failover).
        requested_model: What the caller named.
        attempts: Requests sent so far (retries and failovers count).
        usage, cost: Normalised usage and its cost (on ``end``, and on
            ``error`` or ``cancelled`` when tokens were billed).
        latency_ms: On the last event, the call's wall time.
        ttft_ms: Time to the first chunk of a stream (from ``first_token``).
        routing: Smart routing's summary, when it ran.
        error_class: The exception class of an ``error`` or ``cancelled``.
        input: The request's messages (chat) or input, only with
            ``capture_content=True``, on ``start``.
        output: The answer's text, only with ``capture_content=True``, on
            ``end`` of a call that is not a stream.
    """

    kind: EventKind
    call_id: str
    at: datetime
    operation: str
    stream: bool = False
    agent: str | None = None
    session: str | None = None
    principal: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    provider: str | None = None
    model: str | None = None
    requested_model: str | None = None
    attempts: int = 0
    usage: NormalizedUsage | None = None
    cost: Cost | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    routing: dict[str, Any] | None = None
    error_class: str | None = None
    input: Any = None
    output: str | None = None

    def __repr__(self) -> str:
        shown = f"{self.provider}/{self.model}" if self.model else "?"
        return f"CallEvent({self.kind}, {self.call_id}, {shown})"
