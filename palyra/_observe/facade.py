"""``client.observability``: delivery's counts, flushing, and the metrics.

The observer (the hooks and the events' thread) is made with the client
when it has ``on_event``, ``[observability] log_calls`` or OpenTelemetry
on, or on first use of `Observability.metrics` (the ``/v1`` app's
``/metrics``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._config import ObservabilityConfig, PalyraConfig
from .._exceptions import InvalidRequestError
from .dispatcher import EventDispatcher, ObservabilityStats
from .logs import log_call
from .metrics import CallMetrics
from .observer import Observer
from .tracing import Tracing

__all__ = ["Observability"]


class Observability:
    """How a client's calls are told (``client.observability``).

    Args:
        on_event: ``Palyra(on_event=...)``: a callable, a list, or None.
        capture_content: ``Palyra(capture_content=...)``.
        hooks: The pipeline's hooks, for an observer made later.
        config: The client's configuration (``[observability]``, and the
            providers and models spans name).
        health: The client's ``health()`` (breaker metrics).
        budgets: Its budgets' ``status()`` (budget metrics).
        otel: ``Palyra(otel=...)``: None for ``[observability] otel``.

    Raises:
        InvalidRequestError: an ``on_event`` that is not callable.
        ConfigError: OpenTelemetry on without the ``otel`` extra.
    """

    def __init__(
        self,
        on_event: Any,
        capture_content: bool,
        hooks: Any,
        config: PalyraConfig,
        health: Callable[[], Iterable[Any]],
        budgets: Callable[[], Iterable[Any]],
        otel: bool | None = None,
    ) -> None:
        table: ObservabilityConfig = config.observability
        self._hooks, self._config = hooks, table
        self._content = capture_content or table.capture_content
        self._health, self._budgets = health, budgets
        self._lock = threading.Lock()
        self._metrics: CallMetrics | None = None
        self.observer: Observer | None = None
        self.tracing: Tracing | None = None
        """OpenTelemetry's side, when on (``/v1`` takes requests' trace
        context through it)."""
        if table.otel if otel is None else otel:
            self.tracing = Tracing(
                config.providers,
                config.models,
                health,
                propagate=table.otel_propagate,
            )  # imports opentelemetry-api, nothing more
        callbacks = _callbacks(on_event)
        if table.log_calls:
            callbacks.append(log_call)
        if callbacks or self.tracing is not None:
            self._observe(callbacks)

    def __repr__(self) -> str:
        dispatcher = None if self.observer is None else self.observer.dispatcher
        return f"Observability({dispatcher!r})"

    def stats(self) -> ObservabilityStats:
        """Events emitted, delivered, dropped (a full queue), callback errors,
        waiting now, and OpenTelemetry's failures (all 0 when nothing
        observes the calls)."""
        if self.observer is None:
            return ObservabilityStats(0, 0, 0, 0, 0)
        stats = self.observer.dispatcher.stats()
        if self.tracing is None:
            return stats
        return dataclasses.replace(stats, otel_failures=self.tracing.failures)

    def metrics(self, labels: Sequence[str] = ()) -> CallMetrics:
        """The client's Prometheus metrics (the ``metrics`` extra), counted
        from the calls' events from now on; made once (``labels`` then).

        Raises:
            ConfigError: prometheus-client is not installed.
        """
        with self._lock:
            if self._metrics is None:
                made = CallMetrics(self._health, self._budgets, labels)
                if self.observer is None:
                    self._observe([made])
                else:
                    self.observer.dispatcher.add(made)
                self._metrics = made
            return self._metrics

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds for the queued events to reach the
        callbacks; whether they all did."""
        observer = self.observer
        return True if observer is None else observer.dispatcher.flush(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued, then stop (the client's ``close``)."""
        observer = self.observer
        drained = True if observer is None else observer.dispatcher.close(timeout)
        if self.tracing is not None:
            self.tracing.close()
        return drained

    def _observe(self, callbacks: list[Any]) -> None:
        dispatcher = EventDispatcher(callbacks, self._config.queue_size)
        observer = Observer(
            dispatcher, capture_content=self._content, tracing=self.tracing
        )
        observer.install(self._hooks)
        self.observer = observer


def _callbacks(on_event: Any) -> list[Any]:
    if on_event is None:
        return []
    callbacks = [on_event] if callable(on_event) else list(on_event)
    for i, callback in enumerate(callbacks):
        if not callable(callback):
            raise InvalidRequestError(
                f"on_event[{i}]: must be callable, got {type(callback).__name__}"
            )
    return callbacks
