"""OpenTelemetry traces of calls: a span per call, a child span per attempt,
GenAI attributes and palyra's own (cost, cached tokens, budgets, failover).

Offline (the deterministic provider), no key. Needs the OpenTelemetry SDK
besides ``palyra[otel]``: ``pip install 'palyra[otel]' opentelemetry-sdk``
(the dev extra has both). The app sets up its tracer provider as usual,
here with the SDK's in-memory exporter so the spans can be printed; palyra
only uses the API. A chat inside a span of the app's, a stream, and a call
a budget refuses, then the span tree. Run it with
``python examples/otel_traces.py``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import palyra

CONFIG = {
    "providers": [{"id": "local", "kind": "deterministic"}],
    "models": [
        {"id": "bot", "provider": "local", "pricing": {"input": "1", "output": "2"}}
    ],
    "budgets": [
        {"id": "tiny", "metric": "tokens", "scope": "agent", "value": "greedy",
         "hard_limit": 10}
    ],
    "observability": {"otel": True},  # or Palyra(..., otel=True)
}  # fmt: skip
ASK = [{"role": "user", "content": "Tell me about the weather"}]
SHOWN = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "palyra.cost.total",
    "palyra.agent",
    "palyra.ttft_ms",
    "error.type",
    "palyra.budget.policy",
)


def tracing() -> Any:
    """The app's usual set-up, with an in-memory exporter (None: no SDK)."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
    except ImportError:
        return None
    exporter = InMemorySpanExporter()
    trace.set_tracer_provider(TracerProvider())  # kept if one was set before
    provider: Any = trace.get_tracer_provider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def show(span: Any, spans: list[Any], depth: int = 0) -> None:
    """One span and, below it, its children."""
    ms = (span.end_time - span.start_time) / 1e6
    attrs = {k: span.attributes[k] for k in SHOWN if k in span.attributes}
    if span.name == "palyra.attempt":
        attrs = {"outcome": span.attributes["palyra.attempt.outcome"]}
    print(f"{'  ' * depth}{span.name} [{ms:.1f} ms] {attrs}")
    for child in spans:
        if child.parent is not None and child.parent.span_id == span.context.span_id:
            show(child, spans, depth + 1)


def main() -> None:
    exporter = tracing()
    if exporter is None:
        print("needs the OpenTelemetry SDK: pip install opentelemetry-sdk")
        return
    from opentelemetry import trace

    client = palyra.Palyra(CONFIG, ledger=False)
    with trace.get_tracer("example-app").start_as_current_span("handle request"):
        client.chat(ASK, agent="docs")
    with client.stream(ASK, agent="docs") as stream:
        for _ in stream:
            pass
    with contextlib.suppress(palyra.BudgetExceededError):
        client.chat(ASK, agent="greedy")
    client.flush(5)  # spans are made off the calls' path: now they are all ended
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time)
    ours = {s.context.span_id for s in spans}
    for span in spans:
        if span.parent is None or span.parent.span_id not in ours:
            show(span, spans)
    client.close()


if __name__ == "__main__":
    main()
