"""One log line per call (``[observability] log_calls``), from its events.

Written by the events' thread when the call has ended, at INFO on the
``palyra.calls`` logger: a readable message, and the same fields in
``extra=`` for JSON formatters (``record.provider``, ``record.cost`` ...).
Never a credential, a header or an upstream's text (an error is its class),
never the prompt nor the answer.
"""

from __future__ import annotations

import logging

from .events import CallEvent

__all__ = ["log_call"]

logger = logging.getLogger("palyra.calls")


def log_call(event: CallEvent) -> None:
    """Log ``event`` if it ends its call (an ``on_event`` callback)."""
    if event.kind in ("start", "first_token") or not logger.isEnabledFor(logging.INFO):
        return
    usage, cost = event.usage, event.cost
    fields = {
        "call_id": event.call_id,
        "outcome": event.kind,
        "operation": event.operation,
        "stream": event.stream,
        "provider": event.provider,
        "model": event.model,
        "requested_model": event.requested_model,
        "agent": event.agent,
        "session": event.session,
        "principal": event.principal,
        "tags": dict(event.tags),
        "attempts": event.attempts,
        "input_tokens": None if usage is None else usage.input_total,
        "output_tokens": None if usage is None else usage.output,
        "cached_tokens": None if usage is None else usage.cache_read,
        "cost": None if cost is None or cost.total is None else str(cost.total),
        "currency": None if cost is None else cost.currency,
        "latency_ms": event.latency_ms,
        "ttft_ms": event.ttft_ms,
        "error_class": event.error_class,
    }
    logger.info(
        "palyra call %s %s %s/%s attempts=%d tokens=%s/%s cost=%s latency_ms=%.1f%s",
        event.kind,
        event.operation,
        event.provider,
        event.model,
        event.attempts,
        fields["input_tokens"],
        fields["output_tokens"],
        fields["cost"],
        event.latency_ms or 0.0,
        f" error={event.error_class}" if event.error_class else "",
        extra=fields,
    )
