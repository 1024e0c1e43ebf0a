"""Budgets on a real Redis, in one process: clients standing for separate
processes share every window; Redis down fails closed (nothing sent) or
bounds each process locally; windows are rebuilt from the ledger; settles
count once; alerts are sent once across clients; secrets never show."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

import palyra
from palyra._state import RedisState, StateUnavailableError
from palyra._state.scripts import SETTLE
from tests.servers import RedisServer, free_port

USER = [{"role": "user", "content": "three words here"}]


def config(*budgets: dict[str, Any]) -> dict[str, Any]:
    """The deterministic provider, model ``bot`` at $1 / $2 per 1M tokens."""
    return {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [
            {
                "id": "bot",
                "provider": "local",
                "max_output_tokens": 20,
                "pricing": {"input": "1", "output": "2"},
            }
        ],
        "budgets": list(budgets),
    }


def client(url: str, *budgets: dict[str, Any], **kw: Any) -> palyra.Palyra:
    state = kw.pop("state", None) or RedisState(url, retry_interval=0.05)
    ledger = kw.pop("ledger") if "ledger" in kw else palyra.MemoryLedger()
    return palyra.Palyra(config(*budgets), state=state, ledger=ledger, **kw)


def settled(*clients: palyra.Palyra) -> None:
    for each in clients:
        assert each._shared is not None
        assert each._shared.settler.flush(5)


def spent(c: palyra.Palyra, policy: str = "tok") -> Decimal:
    return {s.policy: s for s in c.budgets.status()}[policy].spent


TOKENS = {"id": "tok", "metric": "tokens", "window": "day", "hard_limit": 10_000}


@pytest.mark.anyio
async def test_two_clients_sync_and_async_count_in_one_window(redis_url: str) -> None:
    a, b = client(redis_url, TOKENS), client(redis_url, TOKENS)
    one = a.chat(USER, max_tokens=5)
    two = await b.achat(USER, max_tokens=5)
    settled(a, b)
    assert one.palyra is not None
    assert two.palyra is not None
    used = [r.palyra.usage for r in (one, two) if r.palyra and r.palyra.usage]
    total = sum(u.input_uncached + u.output for u in used)
    assert spent(a) == spent(b) == total
    # The async call reserved through the asyncio client of this loop.
    assert b._shared is not None
    assert asyncio.get_running_loop() in b._shared.link._async
    a.close()
    await b.aclose()


@pytest.mark.anyio
async def test_threads_and_tasks_of_two_clients_never_pass_a_hard_cap(
    redis_url: str,
) -> None:
    cap = {**TOKENS, "hard_limit": 700}
    a, b = client(redis_url, cap), client(redis_url, cap)
    outcomes: list[str] = []

    def call() -> None:
        try:
            a.chat(USER, max_tokens=20)
            outcomes.append("ok")
        except palyra.BudgetExceededError:
            outcomes.append("refused")

    async def task() -> None:
        try:
            await b.achat(USER, max_tokens=20)
            outcomes.append("ok")
        except palyra.BudgetExceededError:
            outcomes.append("refused")

    threads = [threading.Thread(target=call) for _ in range(30)]
    for t in threads:
        t.start()
    await asyncio.gather(*(task() for _ in range(30)))
    for t in threads:
        await asyncio.to_thread(t.join, 60)
    settled(a, b)
    assert len(outcomes) == 60
    assert "refused" in outcomes
    assert "ok" in outcomes
    [status] = a.budgets.status()
    assert status.spent <= 700
    assert status.reserved == 0
    ledgers = [c.usage.totals(by="status", status="ok") for c in (a, b)]
    total = sum(r.input_uncached + r.output for rows in ledgers for r in rows)
    assert total == status.spent  # every settled token, counted once
    a.close()
    await b.aclose()


def test_a_window_redis_lacks_is_rebuilt_from_the_ledger(redis_url: str) -> None:
    ledger = palyra.MemoryLedger()
    now = datetime.now(UTC)
    ledger.record(
        palyra.UsageRecord(
            started_at=now - timedelta(seconds=1), finished_at=now,
            provider="local", model="bot", input_uncached=400, output=100,
        )
    )  # fmt: skip
    c = client(redis_url, TOKENS, ledger=ledger)
    assert spent(c) == 500  # read from the ledger when the window opened
    c.chat(USER, max_tokens=5)
    settled(c)
    assert spent(c) > 500
    c.close()


def test_fail_closed_sends_nothing_and_names_redis_without_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    usd = {"id": "usd", "window": "day", "hard_limit": "1"}
    state = RedisState(f"redis://127.0.0.1:{free_port()}/0", password="pw-SECRET-9")
    c = client("", usd, state=state)
    assert c._shared is not None
    assert c._shared.fail_mode == "fail_closed"
    with pytest.raises(StateUnavailableError) as info:
        c.chat(USER, max_tokens=5)
    err = info.value
    assert (err.backend, err.operation) == ("redis", "reserve")
    assert err.target.startswith("127.0.0.1:")
    assert "nothing was sent" in str(err)
    [record] = c.usage.records()
    assert (record.status, record.error_class) == ("error", "StateUnavailableError")
    assert record.output == 0
    assert record.cost_total == 0
    shown = [str(err), repr(err), repr(state), repr(c._shared), caplog.text]
    assert not any("pw-SECRET-9" in text for text in shown)
    c.close()


def test_local_bound_caps_this_process_then_settles_to_redis(redis_url: str) -> None:
    import redis

    cap = {**TOKENS, "hard_limit": 400}
    state = RedisState(redis_url, on_unavailable="local_bound", local_fraction=0.5,
                       timeout=0.2, retry_interval=2.0)  # fmt: skip
    c = client(redis_url, cap, state=state, ledger=False)
    c.chat(USER, max_tokens=20)
    settled(c)
    before = spent(c)
    # Redis keeps its data but answers nothing (a partition, or a stall).
    redis.Redis.from_url(redis_url).execute_command("CLIENT", "PAUSE", 1500, "ALL")
    ok = 0
    for _ in range(50):
        try:
            c.chat(USER, max_tokens=20)
        except palyra.BudgetExceededError:
            break  # this process's own share of the cap is used up
        ok += 1
    else:
        raise AssertionError("local_bound never refused")
    assert ok > 0
    assert c._shared is not None
    assert c._shared.admitted_locally == ok
    local = c._shared._fallback.status()[0]
    assert 0 < local.spent <= 200
    assert local.hard_limit == 200
    settled(c)  # the settler retries until Redis answers again
    assert spent(c) == before + local.spent  # Redis learns what was spent
    c.close()


def test_after_a_restart_local_spending_is_counted_once_from_the_ledger(
    redis_server: RedisServer, redis_url: str
) -> None:
    cap = {**TOKENS, "hard_limit": 400}
    state = RedisState(redis_url, on_unavailable="local_bound", local_fraction=0.5,
                       retry_interval=0.05)  # fmt: skip
    c = client(redis_url, cap, state=state)  # a ledger: the source of truth
    redis_server.stop()
    try:
        for _ in range(3):
            c.chat(USER, max_tokens=20)
    finally:
        redis_server.start()  # empty: it kept nothing
    settled(c)
    [row] = c.usage.totals(by="status", status="ok")
    assert spent(c) == row.input_uncached + row.output  # not twice
    c.close()


def test_a_settlement_retried_after_a_lost_answer_counts_once(redis_url: str) -> None:
    c = client(redis_url, TOKENS)
    c.chat(USER, max_tokens=5)  # opens the window
    settled(c)
    before = spent(c)
    assert c._shared is not None
    link = c._shared.link
    [window] = [s for s in c.budgets.status()]
    key = f"palyra:b:tok:1:*:{int(window.window_start.timestamp() * 1000)}"  # type: ignore[union-attr]
    args = [int(datetime.now(UTC).timestamp() * 1000), "rid-1", 7, 0, 0, ""]
    for _ in range(2):
        link.run(SETTLE, [key, "palyra:done"], args)
    assert spent(c) == before + 7
    c.close()


def test_each_alert_is_sent_once_across_clients(redis_url: str) -> None:
    got: list[palyra.BudgetAlert] = []
    soft = {**TOKENS, "hard_limit": 100_000, "alert_at": [0.0001, 0.5]}
    a = client(redis_url, soft, on_budget_alert=got.append)
    b = client(redis_url, soft, on_budget_alert=got.append)
    for c in (a, b, a, b):
        c.chat(USER, max_tokens=5)
        settled(c)
    assert [x.threshold for x in got] == [Decimal("0.0001")]
    assert got[0].spent > 0
    # the one that sent it keeps it in its log; the other has none
    assert a.budgets.alerts() + b.budgets.alerts() == got
    a.close()
    b.close()


def test_without_the_extra_the_error_names_it(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    c = client(redis_url, TOKENS)
    with pytest.raises(palyra.ConfigError, match=r"palyra\[redis\]"):
        c.chat(USER, max_tokens=5)
    c.close()


def test_the_state_table_chooses_redis_and_refuses_a_password_in_its_url(
    redis_url: str,
) -> None:
    cfg = {**config(TOKENS), "state": {"backend": "redis", "url": redis_url}}
    with palyra.Palyra(cfg, ledger=False) as c:
        assert c._shared is not None
        assert c._shared.link.url == redis_url
        c.chat(USER, max_tokens=5)
    with palyra.Palyra(cfg, state="memory") as c:
        assert c._shared is None
    bad = {**cfg, "state": {"backend": "redis", "url": "redis://:pw-SECRET-7@h:1/0"}}
    with pytest.raises(palyra.ConfigError) as info:
        palyra.Palyra(bad)
    assert "state.url" in str(info.value)
    assert "pw-SECRET-7" not in str(info.value)
    # redis-py would take a password from the query too: refused the same.
    for query in ("password=pw-SECRET-7", "db=0&PassWord=pw-SECRET-7"):
        bad = {**cfg, "state": {"backend": "redis", "url": f"redis://h:1/0?{query}"}}
        with pytest.raises(palyra.ConfigError) as info:
            palyra.Palyra(bad)
        assert "state.url" in str(info.value)
        assert "pw-SECRET-7" not in str(info.value)
    with pytest.raises(palyra.ConfigError) as info:
        RedisState("redis://h:1/0?password=pw-SECRET-7")
    assert "pw-SECRET-7" not in str(info.value)


@pytest.mark.anyio
async def test_v1_answers_503_with_retry_after_when_state_is_down() -> None:
    import httpx

    from palyra.asgi import create_app

    usd = {"id": "usd", "window": "day", "hard_limit": "1"}
    state = RedisState(f"redis://127.0.0.1:{free_port()}/0")
    c = client("", usd, state=state)
    app = create_app(c, require_auth=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        answer = await http.post(
            "/v1/chat/completions", json={"model": "bot", "messages": USER}
        )
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["error"]["code"] == "state_unavailable"
    await c.aclose()
