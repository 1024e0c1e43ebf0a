"""Benchmark 11: how many calls per second the budgets engine admits.

Issue 11's target: reserve + release with one applicable global USD budget
sustains at least 50,000 pairs per second in one process.

- Admissions: `Budgets.reserve` then `Budgets.release` of the same
  reservation, the pair timed as one admission, with 1 policy (a global USD
  budget with a hard limit) and with 3 (that, a per-agent token budget and a
  per-tag USD budget, all applying to every call), single-threaded and from
  8 threads sharing one engine (wall time of the whole run). The budgets are
  far from their limits, so every call is admitted; the ledger is None (the
  window opens once and is not read again).
- Reserve + settle, the same way, single-threaded: settle also counts the
  actual and checks the alert thresholds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bench._common import banner, median, table
from palyra._governance import Budgets, Cost, NormalizedUsage

TARGET_PER_S = 50_000
THREADS = 8
USAGE = NormalizedUsage(input_uncached=1200, output=800)
COST = Cost(total=Decimal("0.0156"), unpriced=False)
POLICIES = [
    {"id": "global-usd", "hard_limit": "1000000000"},
    {"id": "agent-tokens", "metric": "tokens", "scope": "agent", "hard_limit": 10**15},
    {"id": "team-usd", "scope": "tag:team", "window": "day", "hard_limit": 10**9},
]


@dataclass
class _Caller:
    agent: str | None = "bot"
    session: str | None = None
    principal: str | None = None
    tags: dict[str, str] = field(default_factory=lambda: {"team": "search"})


def _engine(policies: int) -> Budgets:
    return Budgets(POLICIES[:policies])


def _pairs(budgets: Budgets, n: int, settle: bool) -> None:
    party = _Caller()
    reserve, release, done = budgets.reserve, budgets.release, budgets.settle
    for _ in range(n):
        held = reserve(party, USAGE, COST, provider="p", model="m")
        assert held is not None
        if settle:
            done(held, USAGE, COST)
        else:
            release(held)


def _rate(policies: int, threads: int, n: int, settle: bool = False) -> float:
    """Pairs per second over one run of ``threads`` x ``n`` pairs."""
    budgets = _engine(policies)
    _pairs(budgets, 1000, settle)  # open the windows, warm the caches
    workers = [
        threading.Thread(target=_pairs, args=(budgets, n, settle))
        for _ in range(threads)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    assert all(s.reserved == 0 and s.in_flight == 0 for s in budgets._states.values())
    return threads * n / elapsed


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the table, return the JSON section."""
    rounds, n = (3, 20_000) if quick else (7, 100_000)
    banner(f"budgets: reserve + release pairs per second, median of {rounds} runs")
    cases = [
        ("1 policy, 1 thread", 1, 1, False),
        ("1 policy, 8 threads", 1, THREADS, False),
        ("3 policies, 1 thread", 3, 1, False),
        ("3 policies, 8 threads", 3, THREADS, False),
        ("1 policy, 1 thread, settle", 1, 1, True),
        ("3 policies, 1 thread, settle", 3, 1, True),
    ]
    rates: dict[str, float] = {}
    for name, policies, threads, settle in cases:
        per_thread = n // threads
        runs = [_rate(policies, threads, per_thread, settle) for _ in range(rounds)]
        rates[name] = median(runs)
    rows = []
    for name, rate in rates.items():
        rows.append([name, rate, 1e6 / rate])
    print(table(["case", "pairs/s", "us per pair"], rows))
    headline = rates["1 policy, 1 thread"]
    verdict = "PASS" if headline >= TARGET_PER_S else "FAIL"
    print(
        f"1 global USD policy, 1 thread: {headline:,.0f} pairs/s;"
        f" target >= {TARGET_PER_S:,}/s: {verdict}"
    )
    return {"pairs_per_s": rates, "target_per_s": TARGET_PER_S, "verdict": verdict}
