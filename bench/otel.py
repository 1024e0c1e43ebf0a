"""Issue 17's OpenTelemetry: what ``otel=True`` costs a call.

Two clients on the offline deterministic provider, no ledger: one with
OpenTelemetry off, one with it on, exporting to the SDK's in-memory span
exporter (through a SimpleSpanProcessor: each span exported as it ends)
and an in-memory metric reader. Interleaved call by call in a new random
order each pass; chats and streams read to their end. The events' thread
makes the spans meanwhile, as in an app.

Two figures per kind of call, both in CPU time (this machine's neighbours
make wall times swing by a third between runs):
- on the call's path: the calling thread's CPU time per call
  (``time.thread_time``), median of interleaved rounds: what a call itself
  pays (its span started, the trace context carried, attempts noted);
- all in: the process's CPU time (``time.process_time``: every thread)
  of blocks of calls on one side, their spans and metrics made and
  exported (``client.flush``) before the clock stops, per call: what the
  events' thread's work costs the process too. Beside it, the SDK's own
  floor measured in the same run: two spans started and ended and the
  metric records a call makes, done directly, with the same attributes.

The target: at most 30 us more per call, on the call's path.
"""

from __future__ import annotations

import time
from typing import Any

import palyra
from bench._common import (
    banner,
    cpu_all_in,
    cpu_on_path,
    median,
    percentile,
    table,
    verdict,
)

TARGET_US = 30.0
MESSAGES = [{"role": "user", "content": "Name three primary colours."}]


def _stream(client: palyra.Palyra) -> None:
    with client.stream(MESSAGES) as stream:
        for _ in stream:
            pass


def _providers() -> Any:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    exporter = InMemorySpanExporter()
    tracer = TracerProvider()
    tracer.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return exporter, reader


def _sdk_floor(exporter: Any, stream: bool, n: int) -> float:
    """CPU time per call of what the SDK itself does for one: two spans (a
    call's and its attempt's) with a call's attributes, and its records."""
    from opentelemetry import metrics, trace

    tracer = trace.get_tracer("bench-floor")
    meter = metrics.get_meter("bench-floor")
    duration = meter.create_histogram("floor.duration", unit="s")
    tokens = meter.create_histogram("floor.tokens", unit="{token}")
    attrs = {f"gen_ai.attr{i}": f"value{i}" for i in range(14)}
    base = {f"gen_ai.base{i}": "x" for i in range(4)}
    started = time.process_time()
    for _ in range(n):
        span = tracer.start_span("chat m", kind=trace.SpanKind.CLIENT, attributes=base)
        child = tracer.start_span(
            "attempt",
            context=trace.set_span_in_context(span),
            attributes={f"palyra.a{i}": i for i in range(7)},
        )
        child.end()
        span.set_attributes(attrs)
        span.end()
        duration.record(0.1, base)
        tokens.record(10, {**base, "gen_ai.token.type": "input"})
        tokens.record(5, {**base, "gen_ai.token.type": "output"})
        if stream:
            duration.record(0.01, base)
    took = (time.process_time() - started) / n * 1e6
    exporter.clear()
    return took


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the table, return the JSON section."""
    try:
        exporter, _reader = _providers()
    except ImportError:
        print("otel: skipped (opentelemetry-sdk is not installed: the dev extra)")
        return {"skipped": "opentelemetry-sdk not installed"}
    rounds, per_round, warmup = (6, 100, 200) if quick else (30, 300, 500)
    blocks, size = (4, 200) if quick else (12, 500)
    banner(
        "otel: a call with OpenTelemetry off against one with it on (in-memory"
        f" span exporter and metric reader), deterministic provider, no ledger,"
        f" {rounds} rounds x {per_round} calls per side, interleaved; then"
        f" {blocks} blocks x {size} calls per side, flushed"
    )
    clients = {
        "off": palyra.Palyra(ledger=False),
        "otel": palyra.Palyra(ledger=False, otel=True),
    }
    found: dict[str, Any] = {}
    rows = []
    try:
        for what, call in (("chat", lambda c: c.chat(MESSAGES)), ("stream", _stream)):
            calls = {name: (lambda c=c, f=call: f(c)) for name, c in clients.items()}
            timed = cpu_on_path(calls, rounds, per_round, warmup)
            clients["otel"].flush(10)
            exporter.clear()
            diffs = [s - b for s, b in zip(timed["otel"], timed["off"], strict=True)]
            added = median(diffs)
            whole = cpu_all_in(calls, clients, blocks, size)
            exporter.clear()
            all_in = whole["otel"] - whole["off"]
            floor = _sdk_floor(exporter, what == "stream", blocks * size)
            found[what] = {
                "off_us": median(timed["off"]),
                "otel_us": median(timed["otel"]),
                "added_us_median": added,
                "added_us_p10": percentile(diffs, 10),
                "added_us_p90": percentile(diffs, 90),
                "all_in_off_us": whole["off"],
                "all_in_otel_us": whole["otel"],
                "all_in_added_us": all_in,
                "sdk_floor_us": floor,
                "verdict": verdict(added, TARGET_US),
            }
            rows.append(
                [what, found[what]["off_us"], found[what]["otel_us"], added,
                 found[what]["added_us_p10"], found[what]["added_us_p90"],
                 TARGET_US, found[what]["verdict"], all_in, floor]
            )  # fmt: skip
        found["spans_per_call"] = _spans_per_call(clients["otel"], exporter)
    finally:
        for client in clients.values():
            client.close()
    print(
        table(
            ["call", "off us", "otel us", "added", "p10", "p90", "target", "",
             "all in added", "SDK floor"],
            rows,
        )
    )  # fmt: skip
    print(f"spans per call: {found['spans_per_call']}")
    return found


def _spans_per_call(client: palyra.Palyra, exporter: Any) -> float:
    exporter.clear()
    for _ in range(10):
        client.chat(MESSAGES)
    client.flush(10)
    return len(exporter.get_finished_spans()) / 10
