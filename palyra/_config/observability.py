"""The ``[observability]`` table: call events, their queue, call log lines,
OpenTelemetry."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import ConfigModel

__all__ = ["ObservabilityConfig"]


class ObservabilityConfig(ConfigModel):
    """What a client tells of its calls, besides ``reply.palyra``.

    Args:
        log_calls: One line per call at INFO on the ``palyra.calls`` logger
            (written by the events' thread, never on the call's path), its
            fields also in ``extra=`` for JSON formatters.
        capture_content: Put the prompt and the answer in the call events
            (and nowhere else); off, content is never recorded.
        queue_size: Events waiting for the callbacks, at most; past it new
            ones are dropped and counted.
        otel: OpenTelemetry spans and metrics of every call, on the app's
            global tracer and meter providers (the ``otel`` extra).
        otel_propagate: With ``otel``, the trace context upstream requests
            carry (``traceparent``, ``tracestate``): ``parent``, the app's
            current span (the upstream's spans join the app's trace beside
            palyra's); ``span``, the call's own span (the upstream's spans
            are its children; the span is then started on the call's path,
            about 25 us); ``none``.
    """

    log_calls: bool = False
    capture_content: bool = False
    queue_size: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    otel: bool = False
    otel_propagate: Literal["parent", "span", "none"] = "parent"
