"""Prometheus metrics of one client, counted from its calls' events.

Calls are counted on the events' thread (never on the call's path): calls
by provider, model and outcome (``ok``, ``error``, ``cancelled``, as the
ledger says), their duration and time to first token, tokens by kind, and
cost. Budgets (spent, remaining, limit) and breakers (0 closed, 1
half-open, 2 open) are read when scraped. Labels are bounded: provider,
model, outcome, token kind, currency, budget and its scope value; never an
agent, a session or a tag unless asked for (``labels=("agent",)``), and
never a credential or content.

palyra keeps the series itself and writes Prometheus' text format: the
page of 100 models is a few milliseconds, where building it through
prometheus-client's registry took over 20. `CallMetrics.collect` hands the
same series to a prometheus-client registry of the app's own (the
``metrics`` extra), for an app that serves its metrics itself.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .._exceptions import ConfigError
from .events import OUTCOMES, CallEvent

__all__ = ["CONTENT_TYPE", "CallMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BREAKER = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
_CALLER = ("agent", "session", "principal")
_BUDGET = ("budget", "metric", "scope", "scope_value")


class _Family:
    """One metric: its name, help, type, label names, and series."""

    __slots__ = ("help", "kind", "labels", "name", "values")

    def __init__(self, name: str, kind: str, help: str, labels: Sequence[str]):
        self.name, self.kind, self.help = name, kind, help
        self.labels = tuple(labels)
        self.values: dict[tuple[str, ...], Any] = {}

    def add(self, key: tuple[str, ...], amount: float) -> None:
        self.values[key] = self.values.get(key, 0.0) + amount

    def observe(self, key: tuple[str, ...], value: float) -> None:
        row = self.values.get(key)
        if row is None:  # a count per bucket (and +Inf), then sum, count
            row = self.values[key] = [0.0] * (len(_SECONDS) + 3)
        row[bisect_left(_SECONDS, value)] += 1
        row[-2] += value
        row[-1] += 1


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
        self._health, self._budgets = health, budgets
        self._extra = tuple(labels)
        self._lock = threading.Lock()
        base = ("provider", "model")
        self._calls = _Family(
            "palyra_calls",
            "counter",
            "Calls by provider, model and outcome (ok, error, cancelled).",
            [*base, "outcome", *self._extra],
        )
        self._duration = _Family(
            "palyra_call_duration_seconds",
            "histogram",
            "Wall time of calls, from start to their end.",
            [*base, "outcome"],
        )
        self._ttft = _Family(
            "palyra_time_to_first_token_seconds",
            "histogram",
            "Time to a stream's first chunk.",
            base,
        )
        self._tokens = _Family(
            "palyra_tokens",
            "counter",
            "Tokens by kind: input (cached included), cached, output.",
            [*base, "kind", *self._extra],
        )
        self._cost = _Family(
            "palyra_cost",
            "counter",
            "Cost of calls, in their currency.",
            [*base, "currency", *self._extra],
        )
        self._counted = (
            self._calls,
            self._duration,
            self._ttft,
            self._tokens,
            self._cost,
        )

    def __repr__(self) -> str:
        return f"CallMetrics(labels={list(self._extra)})"

    def __call__(self, event: CallEvent) -> None:
        """Count an event (an ``on_event`` callback of the client's)."""
        outcome = OUTCOMES.get(event.kind)
        if outcome is None:
            return
        base = (event.provider or "", event.model or "")
        extra = tuple(getattr(event, name) or "" for name in self._extra)
        usage, cost = event.usage, event.cost
        with self._lock:
            self._calls.add((*base, outcome, *extra), 1)
            if event.latency_ms is not None:
                self._duration.observe((*base, outcome), event.latency_ms / 1000)
            if event.ttft_ms is not None:
                self._ttft.observe(base, event.ttft_ms / 1000)
            if usage is not None:
                self._tokens.add((*base, "input", *extra), usage.input_total)
                self._tokens.add((*base, "cached", *extra), usage.cache_read)
                self._tokens.add((*base, "output", *extra), usage.output)
            if cost is not None and cost.total is not None:
                self._cost.add((*base, cost.currency, *extra), float(cost.total))

    def families(self) -> list[_Family]:
        """A copy of every series: the counted ones, and those read now."""
        with self._lock:
            counted = []
            for family in self._counted:
                copy = _Family(family.name, family.kind, family.help, family.labels)
                copy.values = {
                    k: list(v) if isinstance(v, list) else v
                    for k, v in family.values.items()
                }
                counted.append(copy)
        return counted + self._read()

    def render(self) -> bytes:
        """The ``/metrics`` page (Prometheus' text format, version 0.0.4)."""
        lines: list[str] = []
        for family in self.families():
            _write(family, lines)
        lines.append("")
        return "\n".join(lines).encode()

    def collect(self) -> Iterator[Any]:
        """The series as prometheus-client metric families (the ``metrics``
        extra): ``registry.register(client.observability.metrics())``.

        Raises:
            ConfigError: prometheus-client is not installed.
        """
        core = _prometheus_core()
        kinds = {
            "counter": core.CounterMetricFamily,
            "gauge": core.GaugeMetricFamily,
            "histogram": core.HistogramMetricFamily,
        }
        for family in self.families():
            made = kinds[family.kind](family.name, family.help, labels=family.labels)
            for key, value in sorted(family.values.items()):
                if family.kind == "histogram":
                    made.add_metric(list(key), _cumulative(value), value[-2])
                else:
                    made.add_metric(list(key), value)
            yield made

    def _read(self) -> list[_Family]:
        breakers = _Family(
            "palyra_breaker_state",
            "gauge",
            "Circuit breakers: 0 closed, 1 half-open, 2 open.",
            ("provider", "model"),
        )
        for model in self._health():
            breakers.values[(model.provider, model.model)] = _BREAKER[model.state]
        spent = _Family("palyra_budget_spent", "gauge", "Spent in the window.", _BUDGET)
        left = _Family(
            "palyra_budget_remaining", "gauge", "Left under the hard limit.", _BUDGET
        )
        limit = _Family("palyra_budget_hard_limit", "gauge", "The hard limit.", _BUDGET)
        try:
            statuses = list(self._budgets())
        except Exception:  # a ledger or Redis that cannot be read: no budgets
            statuses = []
        for status in statuses:
            key = (status.policy, status.metric, status.scope, status.scope_value)
            spent.values[key] = float(status.spent)
            if status.remaining is not None:
                left.values[key] = float(status.remaining)
            if status.hard_limit is not None:
                limit.values[key] = float(status.hard_limit)
        return [breakers, spent, left, limit]


def _write(family: _Family, lines: list[str]) -> None:
    name, labels = family.name, family.labels
    shown = f"{name}_total" if family.kind == "counter" else name
    lines.append(f"# HELP {shown} {family.help}")
    lines.append(f"# TYPE {shown} {family.kind}")
    for key, value in sorted(family.values.items()):
        pairs = [f'{n}="{_escaped(v)}"' for n, v in zip(labels, key, strict=True)]
        if family.kind != "histogram":
            lines.append(f"{shown}{{{','.join(pairs)}}} {_number(value)}")
            continue
        for bound, count in _cumulative(value):
            le = ",".join([*pairs, f'le="{bound}"'])
            lines.append(f"{name}_bucket{{{le}}} {_number(count)}")
        lines.append(f"{name}_sum{{{','.join(pairs)}}} {_number(value[-2])}")
        lines.append(f"{name}_count{{{','.join(pairs)}}} {_number(value[-1])}")


def _cumulative(row: list[float]) -> list[tuple[str, float]]:
    """A histogram's buckets as Prometheus has them: counts up to each bound."""
    out, running = [], 0.0
    for bound, count in zip([*map(repr, _SECONDS), "+Inf"], row[:-2], strict=True):
        running += count
        out.append((bound, running))
    return out


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value))


def _prometheus_core() -> Any:
    try:
        from prometheus_client import core
    except ImportError:
        raise ConfigError(
            [
                (
                    "metrics",
                    "registering palyra's metrics in a prometheus-client registry"
                    " needs it: pip install 'palyra[metrics]'",
                )
            ]
        ) from None
    return core
