"""OpenTelemetry's SDK as an app sets it up: the global tracer and meter
providers, with the SDK's in-memory span exporter and a metric reader that
reports deltas. The API takes a provider once per process, so they are set
when this file is imported (while tests are collected, before any runs):
a docs page or an example run later adds its own span processor to the
same provider."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

_SETUP: dict[str, Any] = {}


@dataclass
class Otel:
    """What palyra exported, read after the client's events are flushed."""

    exporter: Any
    reader: Any

    def spans(self, client: Any) -> list[Any]:
        """Every span ended so far (the client flushed first)."""
        assert client.flush(5)
        return list(self.exporter.get_finished_spans())

    def points(self) -> dict[str, list[Any]]:
        """Each metric's data points since the last call (deltas)."""
        found: dict[str, list[Any]] = defaultdict(list)
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                if scope.scope.name != "palyra":
                    continue
                for metric in scope.metrics:
                    found[metric.name].extend(metric.data.data_points)
        return dict(found)


def _setup() -> Otel:
    if not _SETUP:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import (
            Counter,
            Histogram,
            MeterProvider,
            ObservableCounter,
            UpDownCounter,
        )
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            InMemoryMetricReader,
        )
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        exporter = InMemorySpanExporter()
        trace.set_tracer_provider(TracerProvider())
        provider: Any = trace.get_tracer_provider()  # ours, or one set before
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        delta = AggregationTemporality.DELTA
        reader = InMemoryMetricReader(
            preferred_temporality={
                Counter: delta,
                Histogram: delta,
                UpDownCounter: delta,
                ObservableCounter: delta,
            }
        )
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        _SETUP["otel"] = Otel(exporter, reader)
    otel: Otel = _SETUP["otel"]
    return otel


_setup()


@pytest.fixture
def otel() -> Iterator[Otel]:
    """The SDK's exporters, emptied for this test."""
    made = _setup()
    made.exporter.clear()
    made.points()  # what earlier tests recorded
    yield made
    made.exporter.clear()
