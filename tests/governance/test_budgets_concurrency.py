"""N concurrent calls cannot overspend: 8 threads reserving and settling
against USD and token caps, alerts sent once, no deadlock across policies."""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from palyra._exceptions import BudgetExceededError
from palyra._governance import BudgetAlert, Budgets, NormalizedUsage

from .budget_helpers import Caller, usd

THREADS = 8


@pytest.fixture(autouse=True)
def _switch_often() -> Iterator[None]:
    # Switch threads every few bytecodes, so that races have a chance to show.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _hammer(work: Callable[[int], None], threads: int = THREADS) -> None:
    """Run ``work(thread_index)`` in ``threads`` threads started together."""
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not any(w.is_alive() for w in workers), "deadlock"
    assert errors == []


def _clean(budgets: Budgets) -> None:
    assert all(s.reserved == 0 and s.in_flight == 0 for s in budgets.status())


def test_a_usd_cap_admits_exactly_what_it_allows() -> None:
    budgets = Budgets([{"id": "cap", "hard_limit": "2.5"}])
    admitted = [0] * THREADS
    cost = usd("0.01")
    usage = NormalizedUsage(input_uncached=10, output=10)

    def work(i: int) -> None:
        for _ in range(100):
            try:
                held = budgets.reserve(Caller(), usage, cost, provider="p", model="m")
            except BudgetExceededError:
                continue
            assert held is not None
            admitted[i] += 1
            budgets.settle(held, usage, cost)

    _hammer(work)
    assert sum(admitted) == 250  # 800 tries, room for exactly 250
    (status,) = budgets.status()
    assert status.spent == Decimal("2.5")
    _clean(budgets)


def test_a_token_cap_with_actuals_below_the_worst_case() -> None:
    cap, worst = 30_000, 150
    budgets = Budgets([{"id": "tok", "metric": "tokens", "hard_limit": cap}])
    party = Caller()
    admitted = [0] * THREADS
    peak = [0]

    def call(rng: random.Random) -> bool:
        usage = NormalizedUsage(input_uncached=100, output=50)  # worst: 150
        try:
            held = budgets.reserve(party, usage, usd("0"), provider="p", model="m")
        except BudgetExceededError:
            return False
        assert held is not None
        (status,) = budgets.status()
        peak[0] = max(peak[0], int(status.spent + status.reserved))
        actual = NormalizedUsage(input_uncached=100, output=rng.randint(0, 50))
        budgets.settle(held, actual, usd("0"))
        return True

    def work(i: int) -> None:
        rng = random.Random(i)
        for _ in range(40):
            admitted[i] += call(rng)

    _hammer(work)
    rng = random.Random(99)
    while call(rng):  # alone now: fill what the threads left
        pass
    (status,) = budgets.status()
    assert cap - worst < status.spent <= cap  # within one call's spread
    assert peak[0] <= cap  # reservations never passed the cap either
    assert cap // worst <= sum(admitted) <= cap // 100
    _clean(budgets)


def test_usd_and_token_caps_together_stay_all_or_nothing() -> None:
    budgets = Budgets(
        [
            {"id": "a-usd", "hard_limit": "1"},  # 100 calls of $0.01
            {"id": "b-tok", "metric": "tokens", "scope": "agent", "hard_limit": 1200},
        ]
    )
    usage = NormalizedUsage(input_uncached=5, output=5)  # 10 tokens: 120 calls
    admitted = [0] * THREADS
    refused: set[str] = set()

    def work(i: int) -> None:
        for _ in range(40):
            try:
                held = budgets.reserve(
                    Caller(), usage, usd("0.01"), provider="p", model="m"
                )
            except BudgetExceededError as exc:
                refused.add(exc.policy)
                continue
            assert held is not None
            admitted[i] += 1
            budgets.settle(held, usage, usd("0.01"))

    _hammer(work)
    assert refused == {"a-usd"}  # the USD cap is the tighter
    assert sum(admitted) == 100
    spent = {s.policy: s.spent for s in budgets.status()}
    assert spent == {"a-usd": Decimal(1), "b-tok": Decimal(1000)}
    _clean(budgets)


def test_overlapping_policy_sets_do_not_deadlock() -> None:
    budgets = Budgets(
        [
            {"id": "a", "soft_limit": 10**9},
            {"id": "b", "scope": "agent", "soft_limit": 10**9},
            {"id": "c", "scope": "tag:team", "soft_limit": 10**9},
            {"id": "d", "scope": "session", "hard_limit": 10**9},
        ]
    )
    usage = NormalizedUsage(input_uncached=1, output=1)

    def work(i: int) -> None:
        rng = random.Random(i)
        for _ in range(300):
            party = Caller(
                agent=rng.choice(["x", "y", None]),
                session=rng.choice(["s", None]),
                tags=rng.choice([{}, {"team": "t"}]),
            )
            held = budgets.reserve(party, usage, usd("1"), provider="p", model="m")
            if held is not None and rng.random() < 0.5:
                budgets.release(held)
            elif held is not None:
                budgets.settle(held, usage, usd("1"))

    _hammer(work)
    _clean(budgets)
    (total,) = [s for s in budgets.status() if s.policy == "a"]
    assert 0 < total.spent < THREADS * 300


def test_each_alert_is_sent_once_under_concurrency() -> None:
    alerts: list[BudgetAlert] = []
    lock = threading.Lock()

    def keep(alert: BudgetAlert) -> None:
        with lock:
            alerts.append(alert)

    budgets = Budgets([{"id": "g", "soft_limit": 100}], on_alert=keep)
    usage = NormalizedUsage(input_uncached=1, output=1)

    def work(i: int) -> None:
        for _ in range(25):
            held = budgets.reserve(Caller(), usage, usd("1"), provider="p", model="m")
            assert held is not None
            budgets.settle(held, usage, usd("1"))
            budgets.settle(held, usage, usd("1"))  # a second settle: no-op

    _hammer(work)
    assert sorted(a.threshold for a in alerts) == [
        Decimal("0.5"),
        Decimal("0.8"),
        Decimal(1),
    ]
    (status,) = budgets.status()
    assert status.spent == 200


def test_headroom_checks_racing_on_a_rolling_window_lose_no_spending() -> None:
    """`Budgets.refuses` (routing's check) ages a rolling window out under the
    scope's lock: threads asking at once neither drop live spending nor trip
    over each other's expiry."""
    from .budget_helpers import Clock, spend

    clock = Clock()
    budgets = Budgets(
        [{"id": "hour", "window": "1h", "hard_limit": "1000000"}], now=clock
    )
    for _ in range(20_000):
        spend(budgets, "0.001")
    clock.advance(hours=2)  # every entry so far has expired, none aged out yet
    (state,) = budgets._states.values()
    state.add(Decimal(5), clock.now)  # live spending, as a settle counts it
    usage = NormalizedUsage(input_uncached=1, output=1)

    def ask(i: int) -> None:
        for _ in range(200):
            assert (
                budgets.refuses(Caller(), usage, usd("1"), provider="prov", model="mod")
                is None
            )

    _hammer(ask)
    (status,) = budgets.status()
    assert status.spent == Decimal("5")
