"""Observability: each call's lifecycle events, for the app's callbacks.

What it is for: ``Palyra(on_event=...)``: a call's ``start``,
``first_token`` (streams), ``end``, ``error`` and ``cancelled`` events,
noted by pipeline hooks (``observer``) from the call's own thread or task,
built into `CallEvent` objects (``events``) and handed to the callbacks by
one dispatcher thread through a bounded queue (``dispatcher``): a slow or
raising callback never slows or fails a call; one log line per call at
INFO (``logs``) with ``[observability] log_calls``; Prometheus metrics
counted from the events and written by palyra (``metrics``);
OpenTelemetry spans and GenAI metrics with ``[observability] otel``: the
call's path notes its trace (``tracing``), the events' thread makes the
spans (their attributes: ``spans``) and records the metrics
(``otel_metrics``); and ``client.observability`` itself (``facade``).

May import: the leaves (``_exceptions``, ``_version``), ``_config``,
``_usage``, ``_core``'s exports (the hooks' types and the call context),
``_governance``'s id maker, and, lazily, prometheus-client and
opentelemetry-api (never the SDK: the app chooses it).
Never the core's internals: it joins a call through the hooks and the
context's ``observe`` slot.

Exports to the rest of palyra: what is listed in ``__all__`` below.
"""

from .dispatcher import DEFAULT_QUEUE, EventDispatcher, ObservabilityStats
from .events import CallEvent, EventKind
from .facade import Observability
from .logs import log_call
from .metrics import CONTENT_TYPE, CallMetrics
from .observer import Observer

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_QUEUE",
    "CallEvent",
    "CallMetrics",
    "EventDispatcher",
    "EventKind",
    "Observability",
    "ObservabilityStats",
    "Observer",
    "log_call",
]
