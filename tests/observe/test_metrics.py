"""Prometheus metrics at /metrics: after a scripted mix of calls on a real
loopback upstream (answers, streams, one closed early, a failure, a budget
block), the counters match the ledger exactly; budgets and breakers are
read when scraped; labels stay bounded; no key is ever on the page."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

import palyra
from palyra.asgi import create_app
from tests.conftest import FAKE_KEY
from tests.helpers import chunk_json, completion_json, upstream_config
from tests.upstream import Reply, Upstream, error_reply

pytestmark = pytest.mark.anyio
HI = [{"role": "user", "content": "say hi"}]
STREAM = [chunk_json("Hel"), chunk_json("lo"), chunk_json(None, "stop"), "[DONE]"]


@pytest.fixture
def up(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    with Upstream(api_key=FAKE_KEY) as server:
        yield server


def config(up: Upstream) -> dict[str, Any]:
    made = upstream_config(up.base_url)
    made["models"][0]["pricing"] = {"input": "1.5", "output": "6"}
    made["budgets"] = [
        {"id": "greedy-cap", "metric": "tokens", "scope": "agent", "value": "greedy",
         "hard_limit": 5},
        {"id": "daily", "metric": "usd", "window": "day", "hard_limit": "100"},
    ]  # fmt: skip
    return made


async def scrape(app: Any) -> str:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://palyra"
    ) as http:
        page = await http.get("/metrics")  # no token needed
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain; version=0.0.4")
    return page.text


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_the_counters_match_the_ledger(up: Upstream) -> None:
    ledger = palyra.MemoryLedger()
    c = palyra.Palyra(config(up), ledger=ledger)
    app = create_app(c, metrics=True)
    up.enqueue(
        Reply(json=completion_json("one")),
        Reply(json=completion_json("two")),
        Reply(sse=STREAM),
        Reply(sse=STREAM, chunk_delay=0.02),
        error_reply(500, "boom"),
    )
    c.chat(HI, agent="a")
    await c.achat(HI, agent="b")
    with c.stream(HI) as s:
        for _ in s:
            pass
    s = await c.astream(HI)
    await s.__anext__()
    await s.aclose()  # closed early: cancelled
    with pytest.raises(palyra.InternalServerError):
        c.chat(HI)
    with pytest.raises(palyra.BudgetExceededError):
        c.chat(HI, agent="greedy")
    found = samples(await scrape(app))
    records = ledger.records()
    assert len(records) == 6
    by_outcome = Counter((r.provider, r.model, r.status) for r in records)
    for (provider, model, status), n in by_outcome.items():
        key = (("model", model), ("outcome", status), ("provider", provider))
        assert found[("palyra_calls_total", key)] == n
    assert sum(v for (name, _), v in found.items() if name == "palyra_calls_total") == 6
    where = (("model", "gpt-4o-mini"), ("provider", "up"))

    def tokens(kind: str) -> float:
        return found[("palyra_tokens_total", (("kind", kind), *where))]

    assert tokens("input") == sum(
        r.input_uncached + r.cache_read + r.cache_write for r in records
    )
    assert tokens("output") == sum(r.output for r in records)
    cost = found[("palyra_cost_total", (("currency", "USD"), *where))]
    spent = sum((r.cost_total or Decimal(0)) for r in records)
    assert cost == pytest.approx(float(spent), rel=1e-12)
    # Durations: one observation per call that ended; TTFT per stream.
    assert (
        found[
            (
                "palyra_call_duration_seconds_count",
                (*where[:1], ("outcome", "ok"), where[1]),
            )
        ]
        == 3
    )
    assert found[("palyra_time_to_first_token_seconds_count", where)] == 2
    # Budgets and breakers, read when scraped.
    daily = (
        ("budget", "daily"),
        ("metric", "usd"),
        ("scope", "global"),
        ("scope_value", "*"),
    )
    assert found[("palyra_budget_spent", daily)] == pytest.approx(float(spent))
    assert found[("palyra_budget_hard_limit", daily)] == 100.0
    assert found[("palyra_breaker_state", where)] == 0.0  # closed
    await c.aclose()


async def test_labels_are_bounded_and_no_key_shows(up: Upstream) -> None:
    c = palyra.Palyra(config(up), ledger=palyra.MemoryLedger())
    app = create_app(c, metrics=True)
    up.enqueue(Reply(json=completion_json("x")), error_reply(401, f"bad {FAKE_KEY}"))
    c.chat(HI, agent="a", session="s", tags={"team": "t"})
    with pytest.raises(palyra.AuthenticationError):
        c.chat(HI)
    page = await scrape(app)
    assert FAKE_KEY not in page
    assert 'agent="' not in page
    assert "session" not in page
    assert "team" not in page
    assert "say hi" not in page
    await c.aclose()


async def test_agent_labels_on_request() -> None:
    c = palyra.Palyra(ledger=False)
    metrics = c.observability.metrics(labels=("agent",))
    c.chat(HI, agent="docs")
    c.flush(5)
    page = metrics.render().decode()
    assert 'agent="docs"' in page
    with pytest.raises(palyra.ConfigError, match="unknown labels"):
        palyra.Palyra(ledger=False).observability.metrics(labels=("tags",))
    await c.aclose()


def test_an_apps_own_registry_takes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same series through prometheus-client (the metrics extra), in a
    registry of the app's; without the extra the error names it."""
    import sys

    from prometheus_client import CollectorRegistry, generate_latest

    c = palyra.Palyra(ledger=False)
    metrics = c.observability.metrics()
    c.chat(HI)
    with c.stream(HI) as s:
        for _ in s:
            pass
    c.flush(5)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    theirs = samples(generate_latest(registry).decode())
    ours = samples(metrics.render().decode())
    assert theirs == ours
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(palyra.ConfigError, match=r"palyra\[metrics\]"):
        list(metrics.collect())
    c.close()


async def test_without_metrics_there_is_no_page() -> None:
    c = palyra.Palyra(ledger=False)
    app = create_app(c)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://palyra"
    ) as http:
        assert (await http.get("/metrics")).status_code == 404
    await c.aclose()


def test_the_sample_dashboard_reads_only_metrics_palyra_writes() -> None:
    import json
    import re
    from pathlib import Path

    dashboard = json.loads(
        (Path(__file__).parents[2] / "docs/assets/grafana-dashboard.json").read_text()
    )
    priced = {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [
            {"id": "bot", "provider": "local", "pricing": {"input": "1", "output": "2"}}
        ],
    }
    c = palyra.Palyra(priced, ledger=False)
    metrics = c.observability.metrics()
    with c.stream(HI) as s:
        for _ in s:
            pass
    c.flush(5)
    written = {
        line.split("{")[0].split(" ")[0]
        for line in metrics.render().decode().splitlines()
        if line and not line.startswith("#")
    } | {"palyra_budget_remaining"}  # a budget's, with one configured
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    named = {m for e in exprs for m in re.findall(r"palyra_[a-z_]+", e)}
    assert named
    assert named <= written, named - written
    c.close()
