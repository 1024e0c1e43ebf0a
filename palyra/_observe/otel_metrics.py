"""OpenTelemetry metrics of a client's calls, recorded off the call path.

GenAI's client metrics (``gen_ai.client.operation.duration``,
``gen_ai.client.token.usage``, ``gen_ai.client.operation.time_to_first_chunk``,
with the conventions' bucket boundaries) and palyra's own: ``palyra.cost``,
``palyra.budget.blocks`` and ``palyra.breaker.state`` (0 closed, 1
half-open, 2 open; read when the app's reader collects). Attributes are
bounded: operation, provider, model, error type, token type, currency,
budget policy; never a caller or a tag (spans carry those).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .events import CallEvent
from .spans import Attributes

__all__ = ["OtelMetrics"]

_SECONDS = tuple(0.01 * 2**i for i in range(14))  # 0.01 s ... 81.92 s
_TOKENS = tuple(float(4**i) for i in range(14))  # 1, 4, 16 ... 4**13
_BREAKER = {"closed": 0, "half_open": 1, "open": 2}
# One breaker gauge per process (a second with the same name would be the
# first, without its callback), reading every open client's breakers.
_LIVE: weakref.WeakSet[OtelMetrics] = weakref.WeakSet()
_GAUGE = threading.Lock()
_gauge_made = False


class OtelMetrics:
    """The instruments of one client, made from a meter of the app's
    provider (the global one: set it before or after; the API's proxy
    hands over).

    Args:
        meter: ``opentelemetry.metrics.get_meter("palyra")``.
        health: The client's ``health()`` (breakers, read when collected).
        observation: ``opentelemetry.metrics.Observation``.
    """

    def __init__(
        self,
        meter: Any,
        health: Callable[[], Iterable[Any]],
        observation: Any,
    ) -> None:
        # Weakly: the meter keeps the gauge's callback for good, and the
        # client must still go when the app drops it.
        self._health: Callable[[], Callable[[], Iterable[Any]] | None] = (
            weakref.WeakMethod(health)
            if hasattr(health, "__self__")
            else lambda: health
        )
        self.observation = observation
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Input and output tokens used, per call.",
            explicit_bucket_boundaries_advisory=_TOKENS,
        )
        self.first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to the first chunk of a streamed answer.",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self.cost = meter.create_counter(
            "palyra.cost", unit="{USD}", description="What calls cost."
        )
        self.blocks = meter.create_counter(
            "palyra.budget.blocks",
            unit="{call}",
            description="Calls a budget refused before they were sent.",
        )
        global _gauge_made
        with _GAUGE:
            if not _gauge_made:
                meter.create_observable_gauge(
                    "palyra.breaker.state",
                    callbacks=[_breakers],
                    description="Circuit breakers: 0 closed, 1 half-open, 2 open.",
                )
                _gauge_made = True
            _LIVE.add(self)

    def __repr__(self) -> str:
        return "OtelMetrics()"

    def record(self, event: CallEvent, span_attrs: Attributes) -> None:
        """Record a call's last event (on the events' thread)."""
        base: Attributes = {
            key: span_attrs[key]
            for key in (
                "gen_ai.operation.name",
                "gen_ai.provider.name",
                "gen_ai.request.model",
                "gen_ai.response.model",
                "error.type",
            )
            if key in span_attrs
        }
        if event.latency_ms is not None:
            self.duration.record(event.latency_ms / 1000, base)
        if event.ttft_ms is not None:
            self.first_chunk.record(event.ttft_ms / 1000, base)
        usage = event.usage
        if usage is not None and (usage.total or event.kind == "end"):
            self.tokens.record(
                usage.input_total, {**base, "gen_ai.token.type": "input"}
            )
            self.tokens.record(usage.output, {**base, "gen_ai.token.type": "output"})
        cost = event.cost
        if cost is not None and cost.total is not None:
            self.cost.add(
                float(cost.total), {**base, "palyra.cost.currency": cost.currency}
            )
        if span_attrs.get("palyra.budget.blocked"):
            self.blocks.add(
                1,
                {
                    "palyra.budget.policy": span_attrs["palyra.budget.policy"],
                    "palyra.budget.reason": span_attrs["palyra.budget.reason"],
                    "gen_ai.request.model": base.get("gen_ai.request.model", ""),
                },
            )

    def close(self) -> None:
        """The client closed: its breakers are no longer reported."""
        with _GAUGE:
            _LIVE.discard(self)

    def states(self) -> Iterator[tuple[tuple[str, str], int]]:
        """The client's breakers now, by provider and model."""
        health = self._health()
        if health is None:
            return
        for model in health():
            yield (model.provider, model.model), _BREAKER[model.state]


def _breakers(options: Any) -> Iterator[Any]:
    """The gauge's callback (on the app's metric reader's thread): each
    model's worst state over the open clients (two clients of the same
    model are one series)."""
    with _GAUGE:  # clients come and go on other threads
        live = list(_LIVE)
    worst: dict[tuple[str, str], int] = {}
    observation = None
    for metrics in live:
        observation = metrics.observation
        for key, state in metrics.states():
            worst[key] = max(state, worst.get(key, 0))
    for (provider, model), state in worst.items():
        assert observation is not None
        yield observation(state, {"palyra.provider": provider, "palyra.model": model})
