"""OpenTelemetry (the ``otel`` extra: opentelemetry-api only): a span per
call with a child span per attempt, the GenAI metrics, and the trace carried
to the upstream.

The call's own thread or task does the least it can, because the SDK's
span start alone costs more than the call's whole budget for this: it
takes the app's current trace context (the app's span, or a ``/v1``
request's ``traceparent``), notes when each attempt is sent, and writes a
trace context into the upstream request's headers (``traceparent`` and
``tracestate`` only: never baggage, which may hold what a provider should
not see). With ``otel_propagate = "parent"`` (the default) that is the
app's own span: the upstream's spans join the app's trace beside palyra's
call span. With ``"span"`` the call's span is started on the call's path
and the upstream's spans are its children, at the cost of that start.

Everything else waits for the events' thread: the call's span (dated from
the call's start), its attributes, the attempts' spans (drawn from the
call's `Attempt` records and the moments they were sent), its end at the
moment the call ended, and the metrics. So a call's spans and metrics are
exported once its ``end``, ``error`` or ``cancelled`` note is delivered
(``client.flush``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from .._config import ModelEntry, ProviderConfig
from .._exceptions import ConfigError
from .._version import __version__
from .events import OUTCOMES, CallEvent
from .otel_metrics import OtelMetrics
from .spans import attempt_attributes, call_attributes, provider_host, provider_name

__all__ = ["Propagate", "Trace", "Tracing"]

logger = logging.getLogger("palyra")

Propagate = Literal["parent", "span", "none"]


class Trace:
    """One call's trace: its parent, its span once started, and what its
    attempts' spans are drawn from."""

    __slots__ = (
        "earlier",
        "epoch",
        "headers",
        "name",
        "parent",
        "perf",
        "sent",
        "span",
        "start",
    )

    def __init__(self, parent: Any, name: str, started: float) -> None:
        self.parent, self.name = parent, name  # the app's context then
        self.epoch, self.perf = time.time_ns(), time.perf_counter()
        self.start = self.ns(started)  # the call's start, epoch ns
        self.span: Any = None  # started on the events' thread, or for "span"
        self.headers: dict[str, str] | None = None  # carried upstream
        self.sent: list[float] = []  # perf_counter() of each request sent
        self.earlier: list[Any] = []  # a first flow's attempts (401 again)

    def ns(self, perf: float) -> int:
        """A perf_counter() moment as epoch nanoseconds."""
        return self.epoch + int((perf - self.perf) * 1e9)


class Tracing:
    """One client's OpenTelemetry side, on the app's global providers.

    Args:
        providers: The configured providers (``gen_ai.provider.name``).
        models: The configured models (the attempts' upstream names).
        health: The client's ``health()`` (the breaker gauge).
        propagate: The trace context carried to the upstream: the app's
            (``parent``), the call span's (``span``), or none.

    Raises:
        ConfigError: opentelemetry-api is not installed.
    """

    def __init__(
        self,
        providers: Iterable[ProviderConfig],
        models: Iterable[ModelEntry],
        health: Callable[[], Iterable[Any]],
        *,
        propagate: Propagate = "parent",
    ) -> None:
        try:
            from opentelemetry import context, metrics, trace
            from opentelemetry import propagate as carry
        except ImportError:
            raise ConfigError(
                [
                    (
                        "observability.otel",
                        "OpenTelemetry needs the otel extra:"
                        " pip install 'palyra[otel]'",
                    )
                ]
            ) from None
        self._trace, self._context, self._extract = trace, context, carry.extract
        self._textmap = carry.get_global_textmap
        self._propagate = propagate
        self._client_kind = trace.SpanKind.CLIENT
        self.failures = 0  # spans or metrics that could not be made (a bug)
        self.tracer = trace.get_tracer("palyra", __version__)
        self.metrics = OtelMetrics(
            metrics.get_meter("palyra", __version__), health, metrics.Observation
        )
        providers = list(providers)
        names = {p.id: provider_name(p) for p in providers}
        hosts = {p.id: provider_host(p) for p in providers}
        self.provider_of: Callable[[str], str] = lambda pid: names.get(pid, pid)
        self._host_of: Callable[[str], str | None] = hosts.get
        upstream = {(m.provider, m.id): m.upstream_model or m.id for m in models}
        self._upstream_of: Callable[[str, str], str] = lambda provider, model: (
            upstream.get((provider, model), model)
        )

    def __repr__(self) -> str:
        return f"Tracing(propagate={self._propagate!r})"

    def failed(self, doing: str) -> None:
        """Something of ours failed while ``doing``: counted, and logged
        the first time only (it would be every call)."""
        self.failures += 1
        if self.failures == 1:
            logger.exception("palyra: %s failed (counted; said once)", doing)

    def close(self) -> None:
        """The client closed: its breakers leave the gauge."""
        self.metrics.close()

    @property
    def propagates(self) -> bool:
        """Whether upstream requests carry a trace context."""
        return self._propagate != "none"

    # -- on the call's thread or task ----------------------------------------

    def start(self, ctx: Any, requested: str) -> Trace:
        """Note the call's parent (the app's current trace context); its
        span is started later, dated from the call's start."""
        return Trace(
            self._context.get_current(), f"{ctx.operation} {requested}", ctx.started
        )

    def carry(self, trace: Trace, request: Any) -> None:
        """Write the trace context into an upstream request (nothing when
        there is none to carry: no span of the app's is current)."""
        headers = trace.headers
        if headers is None:
            if self._propagate == "span":
                span = self._opened(trace).get_span_context()
            elif self._propagate == "parent":
                span = self._trace.get_current_span(trace.parent).get_span_context()
            else:
                span = None
            headers = trace.headers = _trace_context(span)
        for name, value in headers.items():
            request.headers[name] = value

    def enter(self, headers: Mapping[str, str]) -> object | None:
        """A ``/v1`` request's trace context made current, as the app's
        propagator reads it (W3C's by default); None: there is none, or a
        span of the app's own (an ASGI middleware's) is current, already
        the request's. A propagator that raises is counted, never the
        request's failure."""
        try:
            if self._trace.get_current_span().get_span_context().is_valid:
                return None
            fields = self._textmap().fields
            if not any(name in headers for name in fields):
                return None
            return self._context.attach(self._extract(headers))
        except Exception:
            self.failed("taking a /v1 request's trace context")
            return None

    def leave(self, token: Any) -> None:
        """Undo `enter`."""
        if token is not None:
            try:
                self._context.detach(token)
            except Exception:
                self.failed("leaving a /v1 request's trace context")

    # -- on the events' thread -------------------------------------------------

    def finish(self, trace: Trace, event: CallEvent, ctx: Any, at: float) -> None:
        """The call ended at ``at`` (epoch seconds): its span, its attempts'
        spans, its attributes and end, and the metrics. Each part on its
        own: an app's span processor that raises loses no other."""
        end = int(at * 1e9)
        attrs = call_attributes(event, ctx, self.provider_of)
        try:
            self.metrics.record(event, attrs)
        except Exception:
            self.failed("recording a call's metrics")
        span = self._opened(trace)
        try:
            self._attempts(trace, ctx, end, bool(event.stream))
            span.update_name(f"{event.operation} {attrs['gen_ai.request.model']}")
            span.set_attributes(attrs)
            if event.ttft_ms is not None:
                first = trace.start + int(event.ttft_ms * 1e6)
                span.add_event("gen_ai.first_chunk", timestamp=first)
            if event.kind == "error":
                span.set_status(
                    self._trace.Status(
                        self._trace.StatusCode.ERROR, attrs["error.type"]
                    )
                )
        finally:
            span.end(end_time=end)

    def dropped(self, trace: Trace, kind: str) -> None:
        """A call's last event found the queue full (or closed): a span
        already started (``otel_propagate = "span"``) is ended now, bare,
        rather than never (the upstream was told of it)."""
        span = trace.span
        if span is None:
            return
        span.set_attribute("palyra.outcome", OUTCOMES.get(kind, kind))
        span.set_attribute("palyra.dropped", True)
        span.end()

    def _opened(self, trace: Trace) -> Any:
        """The call's span, started now if it was not yet."""
        if trace.span is None:
            trace.span = self.tracer.start_span(
                trace.name,
                context=trace.parent,
                kind=self._client_kind,
                start_time=trace.start,
            )
        return trace.span

    def _attempts(self, trace: Trace, ctx: Any, end: int, stream: bool) -> None:
        parent = self._trace.set_span_in_context(trace.span)
        records = [*trace.earlier, *ctx.attempts]
        sent = iter(trace.sent)
        cursor = trace.start
        number = 0
        for number, record in enumerate(records, 1):
            if record.outcome == "skipped":  # passed over: no request went
                start = stop = cursor
            else:
                moment = next(sent, None)
                start = cursor if moment is None else trace.ns(moment)
                stop = start + int(record.latency_ms * 1e6)
                if stream and number == len(records) and _opened_stream(record):
                    stop = end  # the stream it opened lasted until the end (or cut)
            self._guarded(parent, number, record, start, min(stop, end))
            cursor = stop
        for moment in sent:  # sent, never answered: the call ended first
            number += 1
            self._guarded(parent, number, None, trace.ns(moment), end)

    def _guarded(
        self, parent: Any, number: int, record: Any, start: int, stop: int
    ) -> None:
        try:
            self._attempt(parent, number, record, start, stop)
        except Exception:
            self.failed("making an attempt's span")

    def _attempt(
        self, parent: Any, number: int, record: Any, start: int, stop: int
    ) -> None:
        attrs = attempt_attributes(number, record, self._upstream_of, self._host_of)
        span = self.tracer.start_span(
            "palyra.attempt",
            context=parent,
            kind=self._client_kind,
            attributes=attrs,
            start_time=start,
        )
        if record is not None and record.outcome == "error":
            status = self._trace.Status(
                self._trace.StatusCode.ERROR, attrs.get("error.type")
            )
            span.set_status(status)
        span.end(end_time=max(stop, start))


def _opened_stream(record: Any) -> bool:
    """Whether an attempt opened a stream (its answer's head was a 2xx:
    served, or cut once it had begun)."""
    status = record.status_code
    return status is not None and 200 <= status < 300


def _trace_context(span: Any) -> dict[str, str]:
    """W3C Trace Context headers of a span's context, written as its
    propagator does (a third of its cost: this is on the call's path)."""
    if span is None or not span.is_valid:
        return {}
    headers = {
        "traceparent": f"00-{span.trace_id:032x}-{span.span_id:016x}"
        f"-{span.trace_flags:02x}"
    }
    if span.trace_state:
        headers["tracestate"] = span.trace_state.to_header()
    return headers
