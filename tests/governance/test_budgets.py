"""The budgets engine: reserve, settle, release, refusals, alerts, windows,
spent-to-date from the ledger, and what a failing ledger does."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from palyra._config import BudgetConfig
from palyra._exceptions import (
    BudgetExceededError,
    ConfigError,
    InvalidRequestError,
    LedgerError,
)
from palyra._governance import (
    BudgetAlert,
    BudgetPolicy,
    Budgets,
    MemoryLedger,
    NormalizedUsage,
    SQLiteLedger,
)

from .budget_helpers import (
    START,
    USAGE,
    Caller,
    Clock,
    record,
    reserve,
    spend,
    tokens,
    usd,
)

D = Decimal


def _budgets(*tables: dict[str, Any], **kw: Any) -> Budgets:
    kw.setdefault("now", Clock())
    return Budgets([BudgetPolicy.from_config(BudgetConfig(**t)) for t in tables], **kw)


def _status(budgets: Budgets, policy: str, value: str = "*") -> Any:
    (found,) = [
        s for s in budgets.status() if (s.policy, s.scope_value) == (policy, value)
    ]
    return found


# -- applying --------------------------------------------------------------


def test_no_budget_no_reservation() -> None:
    budgets = Budgets()
    assert not budgets.active
    assert reserve(budgets, "100") is None


def test_a_policy_applies_only_to_its_scope_value() -> None:
    budgets = _budgets(
        {"id": "bot", "scope": "agent", "value": "bot", "hard_limit": 1},
        {"id": "team", "scope": "tag:team", "hard_limit": 1},
        {"id": "sess", "scope": "session", "hard_limit": 1},
    )
    assert budgets.active
    assert reserve(budgets, "5", Caller(agent="other")) is None  # no value matches
    assert reserve(budgets, "5", Caller(agent=None, tags={"x": "y"})) is None
    with pytest.raises(BudgetExceededError) as caught:
        reserve(budgets, "5", Caller(agent="z", tags={"team": "search"}))
    assert (caught.value.policy, caught.value.scope_value) == ("team", "search")


def test_per_value_scopes_have_their_own_limit() -> None:
    budgets = _budgets({"id": "a", "scope": "agent", "hard_limit": 10})
    spend(budgets, "9", Caller(agent="one"))
    spend(budgets, "9", Caller(agent="two"))  # not held back by "one"
    with pytest.raises(BudgetExceededError):
        reserve(budgets, "2", Caller(agent="one"))
    values = [(s.scope_value, s.spent) for s in budgets.status()]
    assert values == [("one", D(9)), ("two", D(9))]


# -- arithmetic ------------------------------------------------------------


def test_reserve_settle_release_arithmetic() -> None:
    budgets = _budgets({"id": "g", "hard_limit": 10, "soft_limit": 8})
    first = reserve(budgets, "3")
    second = reserve(budgets, "2.5")
    assert first is not None
    assert second is not None
    status = _status(budgets, "g")
    assert (status.spent, status.reserved, status.in_flight) == (0, D("5.5"), 2)
    assert status.remaining == D("4.5")
    assert status.state == "ok"
    budgets.settle(first, USAGE, usd("1.25"))  # actual below the worst case
    budgets.release(second)
    status = _status(budgets, "g")
    assert (status.spent, status.reserved, status.in_flight) == (D("1.25"), 0, 0)
    assert status.remaining == D("8.75")
    assert (status.soft_limit, status.hard_limit) == (D(8), D(10))
    assert status.window == "lifetime"
    assert status.window_start is None


def test_settle_and_release_are_idempotent() -> None:
    budgets = _budgets({"id": "g", "hard_limit": 10})
    held = reserve(budgets, "4")
    assert held is not None
    budgets.settle(held, USAGE, usd("4"))
    budgets.settle(held, USAGE, usd("4"))
    budgets.release(held)
    other = reserve(budgets, "1")
    assert other is not None
    budgets.release(other)
    budgets.release(other)
    budgets.settle(other, USAGE, usd("1"))
    status = _status(budgets, "g")
    assert (status.spent, status.reserved, status.in_flight) == (D(4), 0, 0)


def test_the_limit_itself_may_be_reached() -> None:
    budgets = _budgets({"id": "g", "hard_limit": 1})
    spend(budgets, "0.6")
    spend(budgets, "0.4")  # exactly 1: allowed
    with pytest.raises(BudgetExceededError):
        reserve(budgets, "0.0000000001")
    assert _status(budgets, "g").state == "hard_limit"
    assert _status(budgets, "g").remaining == 0


def test_a_refusal_names_everything_and_reserves_nothing() -> None:
    clock = Clock(datetime(2026, 12, 2, 15, tzinfo=UTC))
    budgets = _budgets(
        {
            "id": "daily",
            "scope": "agent",
            "window": "day",
            "tz": "Europe/Paris",
            "hard_limit": 5,
        },
        now=clock,
    )
    spend(budgets, "4.20")
    held = reserve(budgets, "0.30")
    with pytest.raises(BudgetExceededError) as caught:
        reserve(budgets, "0.60")
    err = caught.value
    assert (err.policy, err.metric, err.scope, err.scope_value) == (
        "daily",
        "usd",
        "agent",
        "bot",
    )
    assert (err.spent, err.reserved, err.requested, err.limit) == (
        D("4.20"),
        D("0.30"),
        D("0.60"),
        D(5),
    )
    assert err.reason == "hard_limit"
    assert err.resets_at == datetime(2026, 12, 2, 23, tzinfo=UTC)
    assert (err.provider, err.model, err.attempts) == ("prov", "mod", [])
    assert str(err) == (
        "budget 'daily' (usd per agent='bot', day in Europe/Paris): spent 4.20"
        " + reserved 0.30 + this call's worst case 0.60 would pass the hard limit"
        " 5.00; resets at 2026-12-03T00:00:00+01:00 (provider=prov, model=mod)"
    )
    assert held is not None
    status = _status(budgets, "daily", "bot")
    assert (status.reserved, status.in_flight) == (D("0.30"), 1)


def test_all_or_nothing_across_policies() -> None:
    budgets = _budgets(
        {"id": "a-wide", "hard_limit": 100},
        {"id": "b-agent", "scope": "agent", "hard_limit": 100},
        {"id": "c-narrow", "scope": "tag:team", "hard_limit": 1},
    )
    party = Caller(tags={"team": "x"})
    with pytest.raises(BudgetExceededError) as caught:
        reserve(budgets, "2", party)
    assert caught.value.policy == "c-narrow"
    assert all(s.reserved == 0 and s.in_flight == 0 for s in budgets.status())
    held = reserve(budgets, "1", party)
    assert held is not None
    assert [s.reserved for s in budgets.status()] == [D(1), D(1), D(1)]
    budgets.settle(held, USAGE, usd("0.5"))
    assert [s.spent for s in budgets.status()] == [D("0.5")] * 3


def test_soft_limit_does_not_block() -> None:
    budgets = _budgets({"id": "g", "soft_limit": 1})
    spend(budgets, "5")
    spend(budgets, "5")
    status = _status(budgets, "g")
    assert status.state == "soft_limit"
    assert status.remaining is None


# -- unpriced and tokens ---------------------------------------------------


def test_unpriced_block() -> None:
    budgets = _budgets({"id": "g", "hard_limit": 5})  # usd + hard: blocks
    with pytest.raises(BudgetExceededError) as caught:
        reserve(budgets, None)
    assert caught.value.reason == "unpriced"
    assert caught.value.requested is None
    assert "no price" in str(caught.value)
    assert _status(budgets, "g").in_flight == 0


def test_unpriced_allow_counts_nothing() -> None:
    budgets = _budgets({"id": "g", "hard_limit": 5, "unpriced": "allow"})
    held = reserve(budgets, None)
    assert held is not None
    budgets.settle(held, USAGE, usd(None))
    assert _status(budgets, "g").spent == 0


def test_unpriced_estimate_prices_with_the_policy() -> None:
    budgets = _budgets(
        {
            "id": "g",
            "hard_limit": 5,
            "unpriced": "estimate",
            "estimate_price": {"input": "10", "output": "20"},
        }
    )
    usage = tokens(prompt=100_000, output=50_000)  # $1 + $1
    held = reserve(budgets, None, usage=usage)
    assert held is not None
    assert _status(budgets, "g").reserved == D(2)
    budgets.settle(held, tokens(prompt=100_000, output=0), usd(None))
    assert _status(budgets, "g").spent == D(1)
    with pytest.raises(BudgetExceededError):
        reserve(budgets, None, usage=tokens(prompt=500_000, output=0))


def test_priced_calls_ignore_the_estimate() -> None:
    budgets = _budgets(
        {
            "id": "g",
            "hard_limit": 5,
            "unpriced": "estimate",
            "estimate_price": {"input": "1000", "output": "1000"},
        }
    )
    spend(budgets, "0.01")
    assert _status(budgets, "g").spent == D("0.01")


def test_tokens_metric() -> None:
    budgets = _budgets({"id": "t", "metric": "tokens", "hard_limit": 1000})
    usage = NormalizedUsage(
        input_uncached=100, cache_read=200, cache_write=50, output=150
    )
    held = budgets.reserve(Caller(), usage, usd(None), provider="p", model="m")
    assert held is not None  # tokens ignore prices: unpriced is fine
    assert _status(budgets, "t").reserved == 500
    budgets.settle(held, tokens(prompt=300, output=100), usd("9"))
    assert _status(budgets, "t").spent == 400
    with pytest.raises(BudgetExceededError) as caught:
        budgets.reserve(Caller(), tokens(550, 51), usd("0"), provider="p", model="m")
    assert (caught.value.metric, caught.value.requested) == ("tokens", D(601))
    assert "spent 400 + reserved 0 + this call's worst case 601" in str(caught.value)


# -- alerts ----------------------------------------------------------------


def test_alerts_once_per_threshold(caplog: pytest.LogCaptureFixture) -> None:
    alerts: list[BudgetAlert] = []
    budgets = _budgets({"id": "g", "hard_limit": 10}, on_alert=alerts.append)
    spend(budgets, "4")
    assert alerts == []
    with caplog.at_level(logging.WARNING, logger="palyra"):
        spend(budgets, "1")  # 50%
    assert [a.threshold for a in alerts] == [D("0.5")]
    assert "passed 50% of its limit 10" in caplog.text
    spend(budgets, "0.5")
    assert len(alerts) == 1
    spend(budgets, "4.5")  # 100%: 80% and 100% at once
    assert [a.threshold for a in alerts] == [D("0.5"), D("0.8"), D(1)]
    spend(budgets, "0")
    assert len(alerts) == 3
    last = alerts[-1]
    assert (last.policy, last.metric, last.scope, last.scope_value) == (
        "g",
        "usd",
        "global",
        "*",
    )
    assert (last.limit, last.spent, last.at) == (D(10), D(10), START)


def test_custom_thresholds_of_the_soft_limit() -> None:
    alerts: list[BudgetAlert] = []
    budgets = _budgets(
        {"id": "g", "soft_limit": 4, "hard_limit": 10, "alert_at": [0.25, 1]},
        on_alert=alerts.append,
    )
    spend(budgets, "1")
    spend(budgets, "2.9")
    spend(budgets, "0.1")
    assert [(a.threshold, a.limit, a.spent) for a in alerts] == [
        (D("0.25"), D(4), D(1)),
        (D(1), D(4), D(4)),
    ]


def test_alerts_again_in_the_next_window() -> None:
    clock = Clock()
    alerts: list[BudgetAlert] = []
    budgets = _budgets(
        {"id": "g", "window": "day", "hard_limit": 10, "alert_at": [0.5]},
        on_alert=alerts.append,
        now=clock,
    )
    spend(budgets, "6")
    spend(budgets, "1")
    clock.advance(days=1)
    spend(budgets, "6")
    assert [a.window_start for a in alerts] == [
        datetime(2026, 12, 2, tzinfo=UTC),
        datetime(2026, 12, 3, tzinfo=UTC),
    ]
    assert alerts[1].resets_at == datetime(2026, 12, 4, tzinfo=UTC)


def test_a_raising_callback_is_logged_and_swallowed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(alert: BudgetAlert) -> None:
        raise RuntimeError("callback broke")

    budgets = _budgets({"id": "g", "hard_limit": 10}, on_alert=boom)
    with caplog.at_level(logging.WARNING, logger="palyra"):
        spend(budgets, "9")
    assert "callback broke" in caplog.text
    assert _status(budgets, "g").spent == 9


def test_spending_loaded_past_thresholds_alerts_on_first_settle() -> None:
    ledger = MemoryLedger()
    ledger.record(record(START - timedelta(hours=1), "8.5"))
    alerts: list[BudgetAlert] = []
    budgets = _budgets(
        {"id": "g", "window": "day", "hard_limit": 10},
        ledger=lambda: ledger,
        on_alert=alerts.append,
    )
    spend(budgets, "0.1")
    assert [a.threshold for a in alerts] == [D("0.5"), D("0.8")]


# -- windows by the clock --------------------------------------------------


def test_window_rollover_settles_in_the_window_reserved_in() -> None:
    clock = Clock(datetime(2026, 12, 2, 23, 59, tzinfo=UTC))
    budgets = _budgets({"id": "g", "window": "day", "hard_limit": 10}, now=clock)
    spend(budgets, "7")
    held = reserve(budgets, "3")
    with pytest.raises(BudgetExceededError):
        reserve(budgets, "1")
    clock.advance(minutes=2)  # a new day
    fresh = _status(budgets, "g")
    assert (fresh.spent, fresh.reserved) == (0, 0)
    assert fresh.window_start == datetime(2026, 12, 3, tzinfo=UTC)
    assert held is not None
    budgets.settle(held, USAGE, usd("3"))
    assert _status(budgets, "g").spent == 0  # counted in yesterday's window
    spend(budgets, "10")


def test_rolling_window_ages_out() -> None:
    clock = Clock()
    budgets = _budgets({"id": "r", "window": "1h", "hard_limit": 10}, now=clock)
    spend(budgets, "6")
    clock.advance(minutes=30)
    spend(budgets, "4")
    status = _status(budgets, "r")
    assert status.resets_at == START + timedelta(hours=1)
    assert status.window_start == clock.now - timedelta(hours=1)
    with pytest.raises(BudgetExceededError) as caught:
        reserve(budgets, "1")
    assert caught.value.resets_at == START + timedelta(hours=1)
    clock.advance(minutes=30)  # the first call is exactly an hour old: still in
    with pytest.raises(BudgetExceededError):
        reserve(budgets, "1")
    clock.advance(microseconds=1)
    assert _status(budgets, "r").spent == 4
    spend(budgets, "6")
    clock.advance(hours=2)
    assert _status(budgets, "r").spent == 0


def test_rolling_alerts_rearm_once_spending_ages_out() -> None:
    clock = Clock()
    alerts: list[BudgetAlert] = []
    budgets = _budgets(
        {"id": "r", "window": "1h", "hard_limit": 10, "alert_at": [0.5]},
        now=clock,
        on_alert=alerts.append,
    )
    spend(budgets, "6")
    spend(budgets, "1")
    clock.advance(hours=2)
    spend(budgets, "1")  # back under: re-armed
    spend(budgets, "5")
    assert len(alerts) == 2


# -- spent-to-date from the ledger -----------------------------------------


def _fill(ledger: Any) -> None:
    day = datetime(2026, 12, 2, tzinfo=UTC)
    ledger.record(record(day - timedelta(microseconds=1000), "100"))  # yesterday
    ledger.record(record(day, "2", agent="bot", tags={"team": "x"}))
    ledger.record(record(day + timedelta(hours=3), "1.5", agent="bot"))
    ledger.record(record(day + timedelta(hours=4), "7", agent="other"))
    ledger.record(record(day + timedelta(hours=5), None, agent="bot"))  # unpriced
    ledger.record(record(START - timedelta(minutes=30), "0.25", agent="bot"))


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_spent_to_date_comes_from_the_ledger(kind: str, tmp_path: Path) -> None:
    ledger = (
        MemoryLedger() if kind == "memory" else SQLiteLedger(tmp_path / "u.sqlite3")
    )
    _fill(ledger)
    budgets = _budgets(
        {"id": "day-all", "window": "day", "soft_limit": 1000},
        {"id": "day-bot", "scope": "agent", "window": "day", "hard_limit": 1000},
        {"id": "ever", "soft_limit": 1000},
        {"id": "hour-bot", "scope": "agent", "window": "1h", "soft_limit": 1000},
        {"id": "team", "scope": "tag:team", "window": "week", "soft_limit": 1000},
        {"id": "toks", "metric": "tokens", "scope": "agent", "soft_limit": 10**6},
        ledger=lambda: ledger,
    )
    assert reserve(budgets, "0", Caller(tags={"team": "x"})) is not None
    spent = {(s.policy, s.scope_value): s.spent for s in budgets.status()}
    assert spent == {
        ("day-all", "*"): D("10.75"),
        ("day-bot", "bot"): D("3.75"),
        ("ever", "*"): D("110.75"),
        ("hour-bot", "bot"): D("0.25"),
        ("team", "x"): D(2),
        ("toks", "bot"): D(4 * 150),
    }
    ledger.close()


class _BrokenLedger(MemoryLedger):
    def __init__(self) -> None:
        super().__init__()
        self.queries = 0
        self.broken = True

    def _fail(self) -> None:
        self.queries += 1
        if self.broken:
            raise LedgerError("cannot read the usage ledger /tmp/u.sqlite3: disk I/O")

    def records(self, *args: Any, **kw: Any) -> Any:
        self._fail()
        return super().records(*args, **kw)

    def totals(self, *args: Any, **kw: Any) -> Any:
        self._fail()
        return super().totals(*args, **kw)


def test_an_unreadable_ledger_blocks_strict_budgets_and_retries() -> None:
    ledger = _BrokenLedger()
    ledger.record(record(START, "4"))
    budgets = _budgets(
        {"id": "g", "window": "day", "hard_limit": 5}, ledger=lambda: ledger
    )
    with pytest.raises(BudgetExceededError) as caught:
        reserve(budgets, "1")
    assert caught.value.reason == "ledger_unavailable"
    assert "/tmp/u.sqlite3" in str(caught.value)
    assert isinstance(caught.value.__cause__, LedgerError)
    with pytest.raises(BudgetExceededError):
        reserve(budgets, "1")
    assert ledger.queries == 2  # not cached: tried again
    with pytest.raises(LedgerError):
        budgets.status()
    ledger.broken = False
    with pytest.raises(BudgetExceededError) as caught:
        reserve(budgets, "1.5")  # loaded now: 4 spent
    assert caught.value.reason == "hard_limit"
    assert caught.value.spent == 4


def test_an_unreadable_ledger_starts_lenient_budgets_at_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = _BrokenLedger()
    budgets = _budgets(
        {"id": "g", "hard_limit": 5, "on_ledger_error": "allow"},
        {"id": "r", "window": "1h", "metric": "tokens", "soft_limit": 5},
        ledger=lambda: ledger,
    )
    with caplog.at_level(logging.WARNING, logger="palyra"):
        held = reserve(budgets, "1")
    assert held is not None
    assert "starts at 0" in caplog.text
    assert [s.spent for s in budgets.status()] == [0, 0]


def test_a_failing_ledger_write_blocks_until_it_recovers() -> None:
    budgets = _budgets(
        {"id": "strict", "hard_limit": 5},
        {"id": "tokens", "metric": "tokens", "hard_limit": 10**6},
    )
    assert reserve(budgets, "1") is not None
    budgets.ledger_failed("cannot write the usage ledger /var/u.sqlite3: disk full")
    with pytest.raises(BudgetExceededError) as caught:
        reserve(budgets, "1")
    assert caught.value.reason == "ledger_unavailable"
    assert "disk full" in str(caught.value)
    assert "/var/u.sqlite3" in str(caught.value)
    assert caught.value.spent == 0
    assert caught.value.reserved == 1
    assert caught.value.requested == 1
    lenient = _budgets({"id": "tokens", "metric": "tokens", "hard_limit": 10**6})
    lenient.ledger_failed("disk full")
    assert reserve(lenient, "1") is not None  # allow: not blocked
    budgets.ledger_failed(None)
    assert reserve(budgets, "1") is not None


# -- managing policies -----------------------------------------------------


def test_add_remove_and_list() -> None:
    budgets = Budgets(now=Clock())
    made = budgets.add({"id": "b", "hard_limit": "1"})
    budgets.add(BudgetConfig(id="a", soft_limit=1))
    budgets.add(made.__class__.from_config(BudgetConfig(id="c", soft_limit=1)))
    assert [p.id for p in budgets.policies()] == ["a", "b", "c"]
    assert made.hard_limit == 1
    assert made.unpriced == "block"
    with pytest.raises(ConfigError) as caught:
        budgets.add({"id": "b", "soft_limit": 1})
    assert caught.value.errors == [("budget.id", "duplicate budget id 'b'")]
    with pytest.raises(ConfigError) as caught:
        budgets.add({"id": "d", "scope": "team", "hard_limit": -1})
    assert [p for p, _ in caught.value.errors] == ["budget.scope", "budget.hard_limit"]
    spend(budgets, "0.5")
    budgets.remove("b")
    assert [p.id for p in budgets.policies()] == ["a", "c"]
    with pytest.raises(InvalidRequestError, match="'b'"):
        budgets.remove("b")
    assert reserve(budgets, "100") is not None  # b's hard limit is gone


def test_status_of_a_fixed_value_budget_before_any_call() -> None:
    budgets = _budgets({"id": "bot", "scope": "agent", "value": "bot", "soft_limit": 3})
    (status,) = budgets.status()
    assert (status.scope_value, status.spent, status.state) == ("bot", D(0), "ok")


def test_many_values_stay_bounded() -> None:
    clock = Clock()
    budgets = _budgets(
        {"id": "s", "scope": "session", "window": "day", "soft_limit": 9}, now=clock
    )
    for i in range(1500):
        spend(budgets, "1", Caller(session=f"s{i}"))
    clock.advance(days=1)
    for i in range(1500):
        spend(budgets, "1", Caller(session=f"t{i}"))
    assert len(budgets._states) < 2000
    assert len(budgets.status()) == 1500


def test_the_errors_place_in_the_tree() -> None:
    from palyra import _exceptions
    from palyra._governance import records

    assert records.LedgerError is LedgerError is _exceptions.LedgerError
    assert issubclass(LedgerError, _exceptions.PalyraError)
    assert issubclass(BudgetExceededError, _exceptions._CallContextError)
    assert not issubclass(BudgetExceededError, _exceptions.APIError)
    assert "BudgetExceededError" in (_exceptions.__doc__ or "")
    budgets = _budgets({"id": "g", "window": "7d", "hard_limit": 1})
    with pytest.raises(BudgetExceededError) as caught:
        reserve(budgets, "1.5")
    assert caught.value.window == "rolling 7d"
    assert caught.value.resets_at is None  # nothing spent yet to age out
    assert str(caught.value).endswith("resets at never (provider=prov, model=mod)")
