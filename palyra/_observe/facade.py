"""``client.observability``: delivery's counts, flushing, and the metrics.

The observer (the hooks and the events' thread) is made with the client
when it has ``on_event`` or ``[observability] log_calls``, or on first use
of `Observability.metrics` (the ``/v1`` app's ``/metrics``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._config import ObservabilityConfig
from .._exceptions import InvalidRequestError
from .dispatcher import EventDispatcher, ObservabilityStats
from .logs import log_call
from .metrics import CallMetrics
from .observer import Observer

__all__ = ["Observability"]


class Observability:
    """How a client's calls are told (``client.observability``).

    Args:
        on_event: ``Palyra(on_event=...)``: a callable, a list, or None.
        capture_content: ``Palyra(capture_content=...)``.
        hooks: The pipeline's hooks, for an observer made later.
        config: The ``[observability]`` table.
        health: The client's ``health()`` (breaker metrics).
        budgets: Its budgets' ``status()`` (budget metrics).

    Raises:
        InvalidRequestError: an ``on_event`` that is not callable.
    """

    def __init__(
        self,
        on_event: Any,
        capture_content: bool,
        hooks: Any,
        config: ObservabilityConfig,
        health: Callable[[], Iterable[Any]],
        budgets: Callable[[], Iterable[Any]],
    ) -> None:
        self._hooks, self._config = hooks, config
        self._content = capture_content or config.capture_content
        self._health, self._budgets = health, budgets
        self._lock = threading.Lock()
        self._metrics: CallMetrics | None = None
        self.observer: Observer | None = None
        callbacks = _callbacks(on_event)
        if config.log_calls:
            callbacks.append(log_call)
        if callbacks:
            self._observe(callbacks)

    def __repr__(self) -> str:
        dispatcher = None if self.observer is None else self.observer.dispatcher
        return f"Observability({dispatcher!r})"

    def stats(self) -> ObservabilityStats:
        """Events emitted, delivered, dropped (a full queue), callback errors,
        and waiting now (all 0 when nothing observes the calls)."""
        if self.observer is None:
            return ObservabilityStats(0, 0, 0, 0, 0)
        return self.observer.dispatcher.stats()

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
        return True if observer is None else observer.dispatcher.close(timeout)

    def _observe(self, callbacks: list[Any]) -> None:
        dispatcher = EventDispatcher(callbacks, self._config.queue_size)
        observer = Observer(dispatcher, capture_content=self._content)
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
