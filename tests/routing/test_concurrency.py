"""Routing under concurrency (issue 12): many threads and many tasks route
and call at once under a hard budget; routing's headroom check reserves
nothing, so budgets hold exactly as without routing, and every decision is
the one a lone call would get."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import pytest

import palyra
from tests.routing.registry import REASONING, SHORT, registry

pytestmark = [pytest.mark.anyio]

LIMIT = Decimal("0.02")


def budgeted() -> palyra.Palyra:
    config = registry(mode="enforced")
    config["budgets"] = [{"id": "cap", "metric": "usd", "hard_limit": str(LIMIT)}]
    return palyra.Palyra(config, ledger=palyra.MemoryLedger())


def outcome(c: palyra.Palyra, messages: list[dict[str, str]]) -> str:
    try:
        reply = c.chat(messages)
    except palyra.BudgetExceededError:
        return "refused"
    assert reply.palyra is not None
    assert reply.palyra.routing is not None
    return reply.palyra.model


def test_many_threads_route_and_spend_within_the_budget() -> None:
    c = budgeted()
    lone = c.route(SHORT)
    results: list[str] = []
    decisions: list[palyra.RoutingDecision] = []
    start = threading.Barrier(16)

    def work() -> None:
        start.wait()
        for i in range(15):
            decisions.append(c.route(SHORT))
            results.append(outcome(c, SHORT if i % 3 else REASONING))

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 240
    (status,) = c.budgets.status()
    assert status.reserved == 0
    assert status.in_flight == 0
    assert status.spent <= LIMIT
    assert "refused" in results  # the budget ran out along the way
    assert {d.chosen for d in decisions} <= {"small", "mid"}
    assert lone.chosen == "small"


async def test_many_tasks_route_and_spend_within_the_budget() -> None:
    c = budgeted()

    async def one(i: int) -> str:
        messages = SHORT if i % 3 else REASONING
        await c.aroute(messages)
        try:
            reply = await c.achat(messages)
        except palyra.BudgetExceededError:
            return "refused"
        assert reply.palyra is not None
        return reply.palyra.model

    results = await asyncio.gather(*(one(i) for i in range(200)))
    (status,) = c.budgets.status()
    assert status.reserved == 0
    assert status.in_flight == 0
    assert status.spent <= LIMIT
    assert "refused" in results
    await c.aclose()


def test_routing_beside_calls_under_a_rolling_budget_loses_no_spending() -> None:
    # Routing's headroom checks beside real calls: what the budget counts is
    # exactly what the ledger recorded, and nothing stays reserved. (The race
    # of checks on an aging rolling window is pinned in
    # tests/governance/test_budgets_concurrency.py.)
    config = registry(mode="enforced")
    config["budgets"] = [
        {"id": "hour", "metric": "usd", "window": "1h", "hard_limit": "1000"}
    ]
    ledger = palyra.MemoryLedger()
    c = palyra.Palyra(config, ledger=ledger)
    errors: list[BaseException] = []
    start = threading.Barrier(12)

    def route() -> None:
        start.wait()
        try:
            for _ in range(200):
                c.route(SHORT)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def call() -> None:
        start.wait()
        for _ in range(40):
            c.chat(SHORT)

    threads = [threading.Thread(target=route) for _ in range(6)]
    threads += [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    (status,) = c.budgets.status()
    paid = sum(r.cost_total or Decimal(0) for r in ledger.records())
    assert status.spent == paid
    assert status.reserved == 0
