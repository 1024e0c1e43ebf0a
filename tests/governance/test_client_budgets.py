"""Budgets through a real client (issue 11): a hard limit refuses a call
before anything is sent, never retried nor failed over; reservations settle
to the actual cost or are released; alerts; scopes; metrics; unpriced
models; a ledger that cannot be written; restarts; runtime changes; and
calendar windows rolling over across a DST change."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import (
    DRIVERS,
    chat,
    close,
    drain,
    loopback_transports,
    start_stream,
)
from tests.upstream import Reply, Upstream, error_reply

pytestmark = [pytest.mark.anyio]

USER = [{"role": "user", "content": "three words here"}]
M = Decimal(1_000_000)
# gpt-4o-mini in the shipped table: $0.15 in, $0.60 out per 1M; the loopback
# upstream bills the words: 3 in, 3 out for USER.
LOOP_COST = (3 * Decimal("0.15") + 3 * Decimal("0.60")) / M


def local_config(*budgets: dict[str, Any], priced: bool = True) -> dict[str, Any]:
    """The offline deterministic provider, model ``bot`` ($1 / $2 per 1M)."""
    model: dict[str, Any] = {"id": "bot", "provider": "local", "max_output_tokens": 50}
    if priced:
        model["pricing"] = {"input": "1", "output": "2"}
    return {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [model],
        "budgets": list(budgets),
    }


def loop_config(base_url: str, *budgets: dict[str, Any]) -> dict[str, Any]:
    """gpt-4o-mini on one loopback provider, failing over to ``backup`` on a
    second provider (the same server), both with retries."""
    common = {
        "kind": "openai",
        "base_url": base_url,
        "api_key_env": "UP_KEY",
        "timeout": 2,
        "max_retries": 2,
    }
    return {
        "providers": [{"id": "up", **common}, {"id": "up2", **common}],
        "models": [
            {
                "id": "gpt-4o-mini",
                "provider": "up",
                "context_window": 128000,
                "fallbacks": ["backup"],
            },
            {
                "id": "backup",
                "provider": "up2",
                "upstream_model": "gpt-4o-mini",
                "context_window": 128000,
                "fallbacks": [],
            },
        ],
        "budgets": list(budgets),
    }


async def finish(client: palyra.Palyra, driver: str) -> None:
    if driver == "async":
        await client.aclose()
    else:
        client.close()


@pytest.fixture(name="loop")
def loop_fixture(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Build loopback clients: ``loop(*budgets, **config)``."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    made: list[palyra.Palyra] = []

    def build(*budgets: dict[str, Any], **kw: Any) -> palyra.Palyra:
        config = loop_config(upstream.base_url, *budgets)
        for provider in config["providers"]:
            provider.update(kw)
        client = palyra.Palyra(
            config, ledger=palyra.MemoryLedger(), **loopback_transports()
        )
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


def only(client: palyra.Palyra, policy: str | None = None) -> palyra.BudgetStatus:
    found = [s for s in client.budgets.status() if policy in (None, s.policy)]
    assert len(found) == 1, found
    return found[0]


def cost_of(reply: palyra.ChatCompletion) -> Decimal:
    assert reply.palyra is not None
    assert reply.palyra.cost is not None
    assert reply.palyra.cost.total is not None
    return reply.palyra.cost.total


def next_midnight(now: datetime) -> datetime:
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


# -- the hard limit --------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_hard_limit_refuses_before_anything_is_sent(
    loop: Any, upstream: Upstream, driver: str
) -> None:
    budget = {"id": "daily", "window": "day", "hard_limit": "0.00001"}
    client = loop(budget)
    spent = Decimal(0)
    admitted = 0
    err = None
    for _ in range(20):
        try:
            reply = await chat(client, driver, USER, max_tokens=5)
        except palyra.BudgetExceededError as exc:
            err = exc
            break
        spent += cost_of(reply)
        admitted += 1
    assert err is not None
    assert admitted == 3  # 3 x LOOP_COST spent + a ~$4e-6 worst case > $1e-5
    assert spent == admitted * LOOP_COST
    assert len(upstream.requests) == admitted  # the refused call sent nothing
    assert (err.policy, err.metric, err.scope, err.scope_value) == (
        "daily",
        "usd",
        "global",
        "*",
    )
    assert (err.window, err.reason) == ("day in UTC", "hard_limit")
    assert (err.spent, err.reserved, err.limit) == (spent, 0, Decimal("0.00001"))
    assert (err.provider, err.model) == ("up", "gpt-4o-mini")
    # The worst case: the prompt estimate at $0.15 plus 5 output at $0.60.
    assert err.requested is not None
    assert err.requested >= 5 * Decimal("0.60") / M
    assert spent + err.requested > err.limit  # why it was refused ...
    assert spent - LOOP_COST + err.requested <= err.limit  # ... and not before
    assert err.resets_at == next_midnight(datetime.now(UTC))
    assert "daily" in str(err)
    assert "hard limit" in str(err)
    status = only(client)
    assert (status.spent, status.reserved, status.in_flight) == (spent, 0, 0)
    last = client.usage.records()[-1]
    assert (last.status, last.error_class, last.attempts) == (
        "error",
        "BudgetExceededError",
        0,
    )
    assert last.cost_total == 0
    await finish(client, driver)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_refused_call_is_never_retried_nor_failed_over(
    loop: Any, upstream: Upstream, driver: str
) -> None:
    client = loop({"id": "none", "hard_limit": "0"}, max_retries=3)
    for model in (None, "backup"):
        with pytest.raises(palyra.BudgetExceededError) as caught:
            await chat(client, driver, USER, model)
        assert caught.value.provider == ("up2" if model else "up")
    assert upstream.requests == []  # neither provider saw anything
    assert [(r.status, r.attempts) for r in client.usage.records()] == [
        ("error", 0),
        ("error", 0),
    ]
    # The same client fails over when a budget is not what stops it.
    client.budgets.remove("none")
    upstream.enqueue(error_reply(500, "boom"), *[error_reply(500, "boom")] * 3)
    reply = await chat(client, driver, USER)
    assert reply.model == "gpt-4o-mini"
    assert {r.path for r in upstream.requests} == {"/v1/chat/completions"}
    assert len(upstream.requests) == 5  # 4 attempts on up, 1 on up2
    await finish(client, driver)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_budget_on_the_primary_only_blocks_before_any_fallback(
    loop: Any, upstream: Upstream, driver: str
) -> None:
    # A budget refusing the first candidate stops the call there: the fallback
    # (which this budget would not even cover) is not tried.
    client = loop({"id": "none", "hard_limit": "0", "scope": "agent", "value": "a"})
    with pytest.raises(palyra.BudgetExceededError):
        await chat(client, driver, USER, agent="a")
    assert upstream.requests == []
    await chat(client, driver, USER, agent="b")
    assert len(upstream.requests) == 1
    await finish(client, driver)


# -- settling and releasing ------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
async def test_reservations_settle_to_the_actual_cost(driver: str) -> None:
    client = palyra.Palyra(
        local_config({"id": "cap", "hard_limit": "1"}), ledger=palyra.MemoryLedger()
    )
    costs = [cost_of(await chat(client, driver, USER)) for _ in range(7)]
    costs += [
        cost_of(await chat(client, driver, [{"role": "user", "content": "a " * n}]))
        for n in (1, 20, 40)
    ]
    assert len(set(costs)) > 1
    status = only(client)
    assert status.spent == sum(costs)
    assert (status.reserved, status.in_flight) == (0, 0)
    assert status.remaining == 1 - sum(costs)
    assert sum(r.cost_total or 0 for r in client.usage.records()) == sum(costs)
    await finish(client, driver)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_failed_call_releases_its_reservation(
    loop: Any, upstream: Upstream, driver: str
) -> None:
    client = loop({"id": "cap", "hard_limit": "1"}, max_retries=0)
    client.budgets.add(id="tok", metric="tokens", hard_limit=10_000)
    first = cost_of(await chat(client, driver, USER, "backup", max_tokens=5))
    upstream.enqueue(error_reply(500, "boom"), error_reply(500, "boom"))
    with pytest.raises(palyra.APIError):
        await chat(client, driver, USER, max_tokens=5)  # up, then up2: both fail
    assert len(upstream.requests) == 3
    for status in client.budgets.status():
        assert (status.reserved, status.in_flight) == (0, 0)
    assert only(client, "cap").spent == first
    assert only(client, "tok").spent == 6
    assert client.usage.records()[-1].error_class in (
        "InternalServerError",
        "NoProviderAvailableError",
    )
    await finish(client, driver)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_stream_reserves_at_dispatch_and_settles_at_its_end(
    loop: Any, driver: str
) -> None:
    client = loop({"id": "cap", "hard_limit": "1"})
    stream = await start_stream(client, driver, USER, max_tokens=100)
    held = only(client)
    assert held.in_flight == 1
    assert held.reserved >= 100 * Decimal("0.60") / M  # the worst case
    assert held.spent == 0
    await drain(stream)
    done = only(client)
    assert stream.palyra.cost is not None
    assert (done.spent, done.reserved, done.in_flight) == (
        stream.palyra.cost.total,
        0,
        0,
    )
    assert done.spent == LOOP_COST
    await finish(client, driver)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_stream_closed_early_settles_to_its_estimated_usage(
    loop: Any, driver: str
) -> None:
    client = loop({"id": "cap", "hard_limit": "1"})
    words = [{"role": "user", "content": " ".join(["word"] * 50)}]
    stream = await start_stream(client, driver, words, max_tokens=200)
    assert only(client).in_flight == 1
    await close(stream)
    status = only(client)
    assert (status.reserved, status.in_flight) == (0, 0)
    [record] = client.usage.records()
    assert (record.status, record.estimated) == ("cancelled", True)
    assert record.cost_total is not None
    assert record.cost_total > 0
    assert status.spent == record.cost_total
    await finish(client, driver)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_stream_cut_mid_way_settles_what_it_was_billed(
    loop: Any, upstream: Upstream, driver: str
) -> None:
    client = loop({"id": "cap", "hard_limit": "1"}, max_retries=0)
    client.budgets.add(id="tok", metric="tokens", hard_limit=100_000)
    chunk = (
        '{"id":"c","object":"chat.completion.chunk","created":1,'
        '"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"%s"},'
        '"finish_reason":null}]}'
    )
    upstream.enqueue(Reply(sse=[chunk % f"w{i} " for i in range(10)], cut_after=4))
    stream = await start_stream(client, driver, USER, max_tokens=500)
    with pytest.raises(palyra.PalyraError):
        await drain(stream)
    tokens, usd = only(client, "tok"), only(client, "cap")
    for status in (tokens, usd):
        assert (status.reserved, status.in_flight) == (0, 0)
    record = client.usage.records()[-1]
    assert record.estimated
    assert record.output > 0  # what was seen was billed
    assert tokens.spent == record.input_uncached + record.output
    assert tokens.spent < 500  # the actual, not the worst case
    assert usd.spent == record.cost_total
    await finish(client, driver)


# -- alerts ----------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
async def test_soft_alerts_fire_once_per_threshold_in_order(driver: str) -> None:
    alerts: list[palyra.BudgetAlert] = []
    budget = {"id": "soft", "scope": "agent", "window": "day", "soft_limit": "0.0001"}
    client = palyra.Palyra(
        local_config(budget),
        ledger=palyra.MemoryLedger(),
        on_budget_alert=alerts.append,
    )
    spent = Decimal(0)
    seen: list[tuple[Decimal, Decimal]] = []  # (spent before, after) per call
    for _ in range(12):  # passes 100% (no hard limit: never refused)
        before = spent
        spent += cost_of(await chat(client, driver, USER, agent="a"))
        seen.append((before, spent))
    assert spent > Decimal("0.0001")
    assert [a.threshold for a in alerts] == [Decimal("0.5"), Decimal("0.8"), 1]
    for alert in alerts:
        mark = alert.threshold * Decimal("0.0001")
        # Sent by the call that crossed it, with the spending then.
        assert any(b < mark <= a == alert.spent for b, a in seen)
        assert (alert.policy, alert.metric, alert.scope, alert.scope_value) == (
            "soft",
            "usd",
            "agent",
            "a",
        )
        assert alert.limit == Decimal("0.0001")
        assert alert.resets_at == next_midnight(alert.at)
        assert alert.window_start == alert.resets_at - timedelta(days=1)
    # Another agent has thresholds of its own.
    await chat(client, driver, USER, agent="b")
    assert len(alerts) == 3
    # client.budgets.alerts(): the same alerts, newest first
    assert client.budgets.alerts() == alerts[::-1]
    assert client.budgets.alerts(limit=1) == [alerts[-1]]
    assert client.budgets.alerts(limit=0) == []
    await finish(client, driver)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_custom_alert_thresholds_and_a_raising_callback(
    driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    alerts: list[Decimal] = []

    def callback(alert: palyra.BudgetAlert) -> None:
        alerts.append(alert.threshold)
        raise RuntimeError("the pager is down")

    budget = {"id": "h", "hard_limit": "0.001", "alert_at": ["0.01", "0.05"]}
    client = palyra.Palyra(
        local_config(budget), ledger=palyra.MemoryLedger(), on_budget_alert=callback
    )
    replies = [await chat(client, driver, USER) for _ in range(5)]  # ~8% of 0.001
    assert all(r.choices[0].message.content for r in replies)
    assert alerts == [Decimal("0.01"), Decimal("0.05")]  # of the hard limit
    assert sum(1 for r in caplog.records if "alert callback failed" in r.message) == 2
    # kept even though the app's callback failed
    assert [a.threshold for a in client.budgets.alerts()] == alerts[::-1]
    assert all(r.status == "ok" for r in client.usage.records())
    await finish(client, driver)


# -- scopes and metrics ----------------------------------------------------------------


def per_call_cost() -> Decimal:
    """What one USER call to ``bot`` costs."""
    probe = palyra.Palyra(local_config(), ledger=False)
    return cost_of(probe.chat(USER))


def worst_case() -> Decimal:
    """What one USER call to ``bot`` reserves (the prompt estimate plus the
    model's 50 output tokens, priced)."""
    probe = palyra.Palyra(local_config({"id": "none", "hard_limit": 0}), ledger=False)
    with pytest.raises(palyra.BudgetExceededError) as caught:
        probe.chat(USER)
    assert caught.value.requested is not None
    return caught.value.requested


def room_for(calls: int) -> str:
    """A hard limit admitting exactly ``calls`` USER calls in a row: the last
    one needs the others' actual cost plus its own worst case."""
    one, worst = per_call_cost(), worst_case()
    assert worst > one
    return str((calls - 1) * one + worst)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("scope", "who"),
    [
        ("agent", lambda v: {"agent": v}),
        ("session", lambda v: {"session": v}),
        ("principal", lambda v: {"principal": v}),
        ("tag:team", lambda v: {"tags": {"team": v}}),
    ],
)
async def test_each_scope_value_has_a_limit_of_its_own(
    driver: str, scope: str, who: Any
) -> None:
    one = per_call_cost()
    budget = {"id": "each", "scope": scope, "hard_limit": room_for(2)}
    client = palyra.Palyra(local_config(budget), ledger=palyra.MemoryLedger())
    for value in ("x", "y"):
        for _ in range(2):
            await chat(client, driver, USER, **who(value))
        with pytest.raises(palyra.BudgetExceededError) as caught:
            await chat(client, driver, USER, **who(value))
        assert (caught.value.scope, caught.value.scope_value) == (scope, value)
        assert caught.value.spent == 2 * one
    # A call without the scope's value is not counted against it.
    for _ in range(3):
        await chat(client, driver, USER)
    states = client.budgets.status()
    assert [(s.scope_value, s.spent) for s in states] == [
        ("x", 2 * one),
        ("y", 2 * one),
    ]
    await finish(client, driver)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_policy_with_a_value_limits_only_that_value(driver: str) -> None:
    one = per_call_cost()
    budget = {"id": "x", "scope": "agent", "value": "x", "hard_limit": room_for(1)}
    client = palyra.Palyra(local_config(budget), ledger=palyra.MemoryLedger())
    await chat(client, driver, USER, agent="x")
    with pytest.raises(palyra.BudgetExceededError) as caught:
        await chat(client, driver, USER, agent="x")
    assert caught.value.scope_value == "x"
    bound = client.bind(agent="y")
    for _ in range(3):
        await chat(bound, driver, USER)
    [status] = client.budgets.status()
    assert (status.scope_value, status.spent) == ("x", one)
    await finish(client, driver)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_tokens_budget_caps_tokens(driver: str) -> None:
    client = palyra.Palyra(
        local_config({"id": "tok", "metric": "tokens", "hard_limit": 300}),
        ledger=palyra.MemoryLedger(),
    )
    used = 0
    err = None
    for _ in range(100):
        try:
            reply = await chat(client, driver, USER)
        except palyra.BudgetExceededError as exc:
            err = exc
            break
        assert reply.palyra is not None
        assert reply.palyra.usage is not None
        used += reply.palyra.usage.input_total + reply.palyra.usage.output
    assert err is not None
    assert (err.metric, err.reason, err.limit, err.spent) == (
        "tokens",
        "hard_limit",
        300,
        used,
    )
    # The worst case is the prompt estimate plus the model's 50 output tokens.
    assert err.requested is not None
    assert err.requested >= 50
    assert used + err.requested > 300 >= used
    assert only(client).spent == used
    await finish(client, driver)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_the_worst_case_is_the_requested_maximum(driver: str) -> None:
    client = palyra.Palyra(
        local_config({"id": "none", "metric": "tokens", "hard_limit": 0}),
        ledger=False,
    )
    asked = {}
    for max_tokens in (None, 7, 900):
        options = {} if max_tokens is None else {"max_tokens": max_tokens}
        with pytest.raises(palyra.BudgetExceededError) as caught:
            await chat(client, driver, USER, **options)
        assert caught.value.requested is not None
        asked[max_tokens] = caught.value.requested
    prompt = asked[7] - 7
    assert prompt > 0
    assert asked[None] == prompt + 50  # the model's max_output_tokens
    assert asked[900] == prompt + 900
    await finish(client, driver)


# -- unpriced models -------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
async def test_unpriced_models_under_a_usd_hard_limit(driver: str) -> None:
    block = palyra.Palyra(
        local_config({"id": "usd", "hard_limit": "10"}, priced=False), ledger=False
    )
    with pytest.raises(palyra.BudgetExceededError) as caught:
        await chat(block, driver, USER)
    assert (caught.value.reason, caught.value.requested) == ("unpriced", None)

    allow = palyra.Palyra(
        local_config(
            {"id": "usd", "hard_limit": "10", "unpriced": "allow"}, priced=False
        ),
        ledger=False,
    )
    for _ in range(3):
        reply = await chat(allow, driver, USER)
        assert reply.palyra is not None
        assert reply.palyra.cost is not None
        assert reply.palyra.cost.unpriced
    assert only(allow).spent == 0

    budget = {
        "id": "usd",
        "hard_limit": "10",
        "unpriced": "estimate",
        "estimate_price": {"input": "3", "output": "5"},
    }
    estimate = palyra.Palyra(local_config(budget, priced=False), ledger=False)
    total = Decimal(0)
    for _ in range(3):
        reply = await chat(estimate, driver, USER)
        assert reply.palyra is not None
        assert reply.palyra.usage is not None
        usage = reply.palyra.usage
        total += (usage.input_total * 3 + usage.output * 5) / M
    assert total > 0
    assert only(estimate).spent == total
    # A soft-only (or tokens) budget lets unpriced calls through by default.
    soft = palyra.Palyra(
        local_config({"id": "s", "soft_limit": "1"}, priced=False), ledger=False
    )
    await chat(soft, driver, USER)
    for client in (block, allow, estimate, soft):
        await finish(client, driver)


# -- a ledger that cannot be written ---------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_broken_ledger_blocks_strict_budgets_until_it_works(
    tmp_path: Path, driver: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the ledger's directory should be")
    ledger = palyra.SQLiteLedger(blocker / "usage.sqlite3")
    strict = {"id": "strict", "hard_limit": "1", "scope": "agent", "value": "s"}
    lenient = {
        "id": "lenient",
        "hard_limit": "1",
        "scope": "agent",
        "value": "l",
        "on_ledger_error": "allow",
    }
    client = palyra.Palyra(local_config(strict, lenient), ledger=ledger)
    await chat(client, driver, USER)  # no budget applies: it fails a write
    assert not client.usage.health().ok
    with pytest.raises(palyra.BudgetExceededError) as caught:
        await chat(client, driver, USER, agent="s")
    assert (caught.value.policy, caught.value.reason) == (
        "strict",
        "ledger_unavailable",
    )
    assert str(blocker) in str(caught.value)
    for _ in range(2):
        await chat(client, driver, USER, agent="l")
    blocker.unlink()  # the disk is fixed
    await chat(client, driver, USER)  # a write that works
    assert client.usage.health().ok
    reply = await chat(client, driver, USER, agent="s")
    assert reply.choices[0].message.content
    await finish(client, driver)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_calls_go_through_again_once_the_ledger_is_fixed(
    tmp_path: Path, driver: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    client = palyra.Palyra(
        local_config({"id": "strict", "hard_limit": "1"}),
        ledger=palyra.SQLiteLedger(blocker / "usage.sqlite3"),
    )
    for _ in range(2):
        with pytest.raises(palyra.BudgetExceededError) as caught:
            await chat(client, driver, USER)
        assert caught.value.reason == "ledger_unavailable"
    blocker.unlink()
    # The budget learns that the ledger works again from the next write that
    # works. Today that is the record of the call it refuses next (on the
    # stale failure of the last write): at most that one more refusal, then
    # calls go through.
    stale: list[str] = []
    try:
        await chat(client, driver, USER)
    except palyra.BudgetExceededError as exc:
        stale.append(exc.reason)
    assert stale in ([], ["ledger_unavailable"])
    assert client.usage.health().ok
    for _ in range(2):
        reply = await chat(client, driver, USER)
        assert reply.choices[0].message.content
    statuses = [r.status for r in client.usage.records()]
    assert statuses[-2:] == ["ok", "ok"]
    assert len(statuses) <= 3
    await finish(client, driver)


# -- restarts --------------------------------------------------------------------------


def test_spent_to_date_survives_a_restart(tmp_path: Path) -> None:
    one = per_call_cost()
    budget = {"id": "daily", "window": "day", "tz": "Europe/Paris"}
    first = palyra.Palyra(
        local_config({**budget, "hard_limit": room_for(5)}), home=tmp_path
    )
    for _ in range(3):
        first.chat(USER)
    first.close()
    second = palyra.Palyra(
        local_config({**budget, "hard_limit": room_for(5)}), home=tmp_path
    )
    assert only(second).spent == 3 * one
    second.chat(USER)
    second.chat(USER)
    with pytest.raises(palyra.BudgetExceededError) as caught:
        second.chat(USER)
    assert caught.value.spent == 5 * one
    second.close()
    third = palyra.Palyra(
        local_config({**budget, "hard_limit": room_for(5)}), home=tmp_path
    )
    with pytest.raises(palyra.BudgetExceededError):
        third.chat(USER)
    third.close()


# -- runtime changes and bad input -----------------------------------------------------


def test_budgets_are_added_and_removed_at_runtime() -> None:
    per_call_cost()
    client = palyra.Palyra(local_config(), ledger=palyra.MemoryLedger())
    client.chat(USER)
    assert client.budgets.policies() == []
    added = client.budgets.add(id="kw", hard_limit=room_for(2))
    assert added.id == "kw"
    client.budgets.add({"id": "map", "metric": "tokens", "hard_limit": 10_000})
    client.budgets.add(palyra.BudgetConfig(id="cfg", soft_limit="1"))
    assert [p.id for p in client.budgets.policies()] == ["cfg", "kw", "map"]
    assert "kw" in repr(client.budgets)
    client.chat(USER)  # the window opens with the call made before, from the ledger
    with pytest.raises(palyra.BudgetExceededError) as caught:
        client.chat(USER)
    assert caught.value.policy == "kw"
    client.budgets.remove("kw")
    client.chat(USER)
    assert [s.policy for s in client.budgets.status()] == ["cfg", "map"]
    with pytest.raises(palyra.InvalidRequestError, match="kw"):
        client.budgets.remove("kw")
    with pytest.raises(palyra.ConfigError, match="duplicate"):
        client.budgets.add(id="map", hard_limit=1)
    with pytest.raises(palyra.ConfigError, match=r"budget\.hard_limit"):
        client.budgets.add(id="neg", hard_limit=-1)
    with pytest.raises(palyra.ConfigError, match=r"budget\.scope"):
        client.budgets.add({"id": "bad", "scope": "team", "hard_limit": 1})
    with pytest.raises(palyra.ConfigError, match=r"budget\.tz"):
        client.budgets.add(id="bad", window="day", tz="Mars/Olympus", hard_limit=1)
    with pytest.raises(TypeError):
        client.budgets.add({"id": "both"}, hard_limit=1)
    assert [p.id for p in client.budgets.policies()] == ["cfg", "map"]


async def test_astatus_matches_status() -> None:
    client = palyra.Palyra(
        local_config({"id": "a", "hard_limit": "1"}), ledger=palyra.MemoryLedger()
    )
    await client.achat(USER)
    assert await client.budgets.astatus() == client.budgets.status()
    await client.aclose()


@pytest.mark.parametrize(
    ("budget", "field"),
    [
        ({"id": "a", "scope": "team", "hard_limit": 1}, "scope"),
        ({"id": "a", "hard_limit": -1}, "hard_limit"),
        ({"id": "a", "hard_limit": 1, "soft_limit": 2}, "soft_limit"),
        ({"id": "a", "window": "day", "tz": "Nowhere/Land", "hard_limit": 1}, "tz"),
        ({"id": "a", "window": "fortnight", "hard_limit": 1}, "window"),
        ({"id": "a", "hard_limit": 1, "unpriced": "estimate"}, "estimate_price"),
    ],
)
def test_budget_config_errors_name_the_field(
    budget: dict[str, Any], field: str
) -> None:
    config = local_config({"id": "ok", "hard_limit": 1}, budget)
    with pytest.raises(palyra.ConfigError) as caught:
        palyra.Palyra(config)
    assert f"budgets[1].{field}" in str(caught.value)


def test_duplicate_budget_ids_in_the_config_are_an_error() -> None:
    config = local_config({"id": "a", "hard_limit": 1}, {"id": "a", "hard_limit": 2})
    with pytest.raises(palyra.ConfigError, match="duplicate"):
        palyra.Palyra(config)


# -- calendar windows roll over by the clock -------------------------------------------


class FakeNow:
    """A UTC clock the test moves: the engine's and the metering's."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def fake_clock(
    monkeypatch: pytest.MonkeyPatch, client: palyra.Palyra, at: datetime
) -> FakeNow:
    """Move ``client``'s budgets and the ledger's timestamps to a test clock.

    `Palyra` takes no budget clock, so the test sets the engine's ``_now``
    (`Budgets(now=)`), and the metering module's ``datetime`` so that records
    are stamped on the same clock and reload into the right windows.
    """
    clock = FakeNow(at)
    monkeypatch.setattr(client.budgets._engine, "_now", clock)

    class Dated(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return clock.now if tz is None else clock.now.astimezone(tz)

    import palyra._metering

    monkeypatch.setattr(palyra._metering, "datetime", Dated)
    return clock


@pytest.mark.parametrize(
    ("midnight", "length"),
    [
        # Paris midnight after the autumn change (a 25-hour day, 25 Oct 2026).
        (datetime(2026, 10, 25, 23, tzinfo=UTC), timedelta(hours=25)),
        # After the spring change (a 23-hour day, 29 Mar 2026).
        (datetime(2026, 3, 29, 22, tzinfo=UTC), timedelta(hours=23)),
    ],
)
def test_a_paris_day_rolls_over_at_local_midnight_across_dst(
    monkeypatch: pytest.MonkeyPatch, midnight: datetime, length: timedelta
) -> None:
    one = per_call_cost()
    ledger = palyra.MemoryLedger()
    budget = {
        "id": "day",
        "window": "day",
        "tz": "Europe/Paris",
        "hard_limit": room_for(2),
    }
    client = palyra.Palyra(local_config(budget), ledger=ledger)
    clock = fake_clock(monkeypatch, client, midnight - length + timedelta(minutes=1))
    client.chat(USER)  # early in the day
    clock.now = midnight - timedelta(minutes=1)
    client.chat(USER)  # late the same day
    status = only(client)
    assert (status.window_start, status.resets_at) == (midnight - length, midnight)
    assert status.spent == 2 * one
    with pytest.raises(palyra.BudgetExceededError) as caught:
        client.chat(USER)
    assert caught.value.resets_at == midnight
    assert "T00:00:00+01:00" in str(caught.value) or "T00:00:00+02:00" in str(
        caught.value
    )
    clock.now = midnight - timedelta(microseconds=1)
    with pytest.raises(palyra.BudgetExceededError):
        client.chat(USER)
    clock.now = midnight  # local midnight: a new day
    after = only(client)
    assert (after.spent, after.window_start) == (0, midnight)
    clock.now = midnight + timedelta(minutes=1)  # records start a bit earlier
    client.chat(USER)
    client.chat(USER)
    with pytest.raises(palyra.BudgetExceededError):
        client.chat(USER)
    # A client started on the same ledger the next day reads that day only.
    again = palyra.Palyra(local_config(budget), ledger=ledger)
    monkeypatch.setattr(again.budgets._engine, "_now", clock)
    assert only(again).spent == 2 * one
    assert len([r for r in ledger.records() if r.status == "ok"]) == 4
