"""Prometheus metrics of one client (the ``metrics`` extra: prometheus-client).

Calls are counted from their events, on the events' thread (never on the
call's path): calls by provider, model and outcome (``ok``, ``error``,
``cancelled``, as the ledger says), their duration and time to first
token, tokens by kind, and cost. Budgets (spent, remaining, limit) and
breakers (0 closed, 1 half-open, 2 open) are read when scraped. Labels are
bounded: provider, model, outcome, token kind, currency, budget and its
scope value; never an agent, a session or a tag unless asked for
(``labels=("agent",)``), and never a credential or content.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .._exceptions import ConfigError
from .events import CallEvent

__all__ = ["CONTENT_TYPE", "CallMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_OUTCOME = {"end": "ok", "error": "error", "cancelled": "cancelled"}
_BREAKER = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
_CALLER = ("agent", "session", "principal")


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError(
            [
                (
                    "metrics",
                    "Prometheus metrics need prometheus-client:"
                    " pip install 'palyra[metrics]'",
                )
            ]
        ) from None
    return prometheus_client


class CallMetrics:
    """The metrics of one client, and its ``/metrics`` page.

    Args:
        health: The client's ``health()`` (breakers, read when scraped).
        budgets: Its budgets' ``status()`` (read when scraped).
        labels: Caller fields to label calls with, of ``agent``,
            ``session``, ``principal`` (none by default: each value is a
            series).
    """

    def __init__(
        self,
        health: Callable[[], Iterable[Any]],
        budgets: Callable[[], Iterable[Any]],
        labels: Sequence[str] = (),
    ) -> None:
        unknown = [label for label in labels if label not in _CALLER]
        if unknown:
            raise ConfigError([("metrics.labels", f"unknown labels {unknown}")])
        pc = _prometheus()
        self._pc = pc
        self._extra = tuple(labels)
        self.registry = pc.CollectorRegistry(auto_describe=False)
        base = ("provider", "model")
        self._calls = pc.Counter(
            "palyra_calls",
            "Calls by provider, model and outcome (ok, error, cancelled).",
            [*base, "outcome", *self._extra],
            registry=self.registry,
        )
        self._duration = pc.Histogram(
            "palyra_call_duration_seconds",
            "Wall time of calls, from start to their end.",
            [*base, "outcome"],
            buckets=_SECONDS,
            registry=self.registry,
        )
        self._ttft = pc.Histogram(
            "palyra_time_to_first_token_seconds",
            "Time to a stream's first chunk.",
            base,
            buckets=_SECONDS,
            registry=self.registry,
        )
        self._tokens = pc.Counter(
            "palyra_tokens",
            "Tokens by kind: input (cached included), cached, output.",
            [*base, "kind", *self._extra],
            registry=self.registry,
        )
        self._cost = pc.Counter(
            "palyra_cost",
            "Cost of calls, in their currency.",
            [*base, "currency", *self._extra],
            registry=self.registry,
        )
        self.registry.register(_Read(health, budgets, pc))

    def __repr__(self) -> str:
        return f"CallMetrics(labels={list(self._extra)})"

    def __call__(self, event: CallEvent) -> None:
        """Count an event (an ``on_event`` callback of the client's)."""
        outcome = _OUTCOME.get(event.kind)
        if outcome is None:
            return
        base = (event.provider or "", event.model or "")
        extra = tuple(getattr(event, name) or "" for name in self._extra)
        self._calls.labels(*base, outcome, *extra).inc()
        if event.latency_ms is not None:
            self._duration.labels(*base, outcome).observe(event.latency_ms / 1000)
        if event.ttft_ms is not None:
            self._ttft.labels(*base).observe(event.ttft_ms / 1000)
        usage, cost = event.usage, event.cost
        if usage is not None:
            tokens = self._tokens
            tokens.labels(*base, "input", *extra).inc(usage.input_total)
            tokens.labels(*base, "cached", *extra).inc(usage.cache_read)
            tokens.labels(*base, "output", *extra).inc(usage.output)
        if cost is not None and cost.total is not None:
            self._cost.labels(*base, cost.currency, *extra).inc(float(cost.total))

    def render(self) -> bytes:
        """The ``/metrics`` page (Prometheus' text format)."""
        data: bytes = self._pc.generate_latest(self.registry)
        return data


class _Read:
    """What is read when scraped: budgets and breakers."""

    def __init__(
        self,
        health: Callable[[], Iterable[Any]],
        budgets: Callable[[], Iterable[Any]],
        pc: Any,
    ) -> None:
        self._health, self._budgets, self._pc = health, budgets, pc

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily as family

        breakers = family(
            "palyra_breaker_state",
            "Circuit breakers: 0 closed, 1 half-open, 2 open.",
            labels=["provider", "model"],
        )
        for model in self._health():
            breakers.add_metric([model.provider, model.model], _BREAKER[model.state])
        yield breakers
        labels = ["budget", "metric", "scope", "scope_value"]
        spent = family("palyra_budget_spent", "Spent in the window.", labels=labels)
        left = family(
            "palyra_budget_remaining", "Left under the hard limit.", labels=labels
        )
        limit = family("palyra_budget_hard_limit", "The hard limit.", labels=labels)
        try:
            statuses = list(self._budgets())
        except Exception:  # a ledger or Redis that cannot be read: no budgets
            statuses = []
        for status in statuses:
            key = [status.policy, status.metric, status.scope, status.scope_value]
            spent.add_metric(key, float(status.spent))
            if status.remaining is not None:
                left.add_metric(key, float(status.remaining))
            if status.hard_limit is not None:
                limit.add_metric(key, float(status.hard_limit))
        yield from (spent, left, limit)
