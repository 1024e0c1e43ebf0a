"""What goes wrong around a shared Redis, on a real one: calls that cost
nothing, a restart seen late by a process with a long retry_interval, an
outage longer than a call's lease, settlements dropped in a long outage,
a script error that is not an outage, routing's view of a window, the
period's values of a per-value budget, and a slow Redis under /v1."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from decimal import Decimal
from typing import Any

import pytest

import palyra
from palyra._core import NOBODY
from palyra._governance import Budgets, Cost, NormalizedUsage
from palyra._state import RedisState, SharedBudgets, StateUnavailableError
from palyra._state import settler as settler_module
from palyra._state.link import ScriptError
from tests.servers import RedisServer

FREE = NormalizedUsage(input_uncached=13, output=0)
NOTHING = Cost(total=Decimal(0), unpriced=False)
TOKENS = {"id": "tok", "metric": "tokens", "window": "day", "hard_limit": 100}
KW: dict[str, Any] = {"provider": "local", "model": "bot"}


_MADE: list[SharedBudgets] = []


@pytest.fixture(autouse=True)
def _close_engines() -> Any:
    """Every engine a test made is closed after it, failed or not: a live
    one would go on renewing its holds into the next test's Redis."""
    yield
    while _MADE:
        _MADE.pop().close(0.5)


def engine(url: str, *policies: dict[str, Any], **kw: Any) -> SharedBudgets:
    kw.setdefault("retry_interval", 0.05)
    kw.setdefault("on_unavailable", "fail_closed")
    state = RedisState(url, **kw)
    made = state.budgets(Budgets(list(policies)), lambda: None, None)
    _MADE.append(made)
    return made


def status(e: SharedBudgets, policy: str = "tok") -> Any:
    return {s.policy: s for s in e.status()}[policy]


def test_a_call_that_cost_nothing_settles_every_window(redis_url: str) -> None:
    usd = {"id": "a-usd", "metric": "usd", "window": "day", "hard_limit": "5"}
    e = engine(redis_url, usd, TOKENS)
    for _ in range(3):
        held = e.reserve(NOBODY, FREE, NOTHING, **KW)
        assert held is not None
        e.settle(held, FREE, NOTHING)
        assert e.settler.flush(5)
    assert not e.link.down
    assert e.settler.dropped == 0
    assert status(e).spent == 39
    assert status(e).reserved == 0
    assert status(e, "a-usd").reserved == 0
    e.close()


def test_a_script_error_is_not_an_outage(redis_url: str) -> None:
    e = engine(redis_url, TOKENS)
    with pytest.raises(ScriptError):
        e.link.run("return redis.call('INCRBY', KEYS[1], 'x')", ["n"], [])
    assert not e.link.down
    assert e.reserve(NOBODY, FREE, NOTHING, **KW) is not None
    e.close()


def test_a_restart_is_heard_from_a_process_with_a_long_retry_interval(
    redis_server: RedisServer, redis_url: str
) -> None:
    """B (retry_interval 5 s) holds 80 of 100; Redis restarts empty; B's
    settler still ticks once a second, so it re-asserts within the quiet
    period and A is never admitted past the limit."""
    a = engine(redis_url, TOKENS)
    b = engine(redis_url, TOKENS, retry_interval=5.0)
    eighty = NormalizedUsage(input_uncached=80)
    held_b = b.reserve(NOBODY, eighty, NOTHING, **KW)
    assert held_b is not None
    with pytest.raises(palyra.BudgetExceededError):
        a.reserve(NOBODY, eighty, NOTHING, **KW)
    redis_server.stop()
    time.sleep(1.5)  # B's tick fails: its link is marked down for 5 s
    redis_server.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            a.reserve(NOBODY, eighty, NOTHING, **KW)
        except StateUnavailableError:
            time.sleep(0.1)  # the quiet period
            continue
        except palyra.BudgetExceededError:
            break
        pytest.fail("admitted past the limit after the restart")
    assert b.reasserted >= 1
    b.release(held_b)
    a.close()
    b.close()


def test_an_outage_longer_than_a_lease_gets_the_hold_back(redis_url: str) -> None:
    """A 2 s stall against a 1 s lease: Redis lets B's hold go, and B's next
    renewal puts it back (and nothing else counts it twice)."""
    import redis

    a = engine(redis_url, TOKENS, reservation_margin=1.0)
    b = engine(redis_url, TOKENS, reservation_margin=1.0, timeout=0.2)
    eighty = NormalizedUsage(input_uncached=80)
    held_b = b.reserve(NOBODY, eighty, NOTHING, **KW)
    assert held_b is not None
    redis.Redis.from_url(redis_url).execute_command("CLIENT", "PAUSE", "2000", "WRITE")
    time.sleep(2.3)
    # Right after the stall a purge may free B's hold until B renews (within
    # a second): then it is back, and A is refused.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if status(a).reserved == 80:
            break
        time.sleep(0.1)
    assert status(a).reserved == 80
    with pytest.raises(palyra.BudgetExceededError):
        a.reserve(NOBODY, eighty, NOTHING, **KW)
    b.settle(held_b, eighty, NOTHING)
    assert b.settler.flush(5)
    assert status(a).spent == 80
    assert status(a).reserved == 0
    a.close()
    b.close()


@pytest.mark.parametrize("ledger", ["sqlite", "memory"])
def test_windows_whose_settlements_were_dropped_are_rebuilt_from_the_ledger(
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Any,
    ledger: str,
) -> None:
    """Settlements dropped in a long outage: with a ledger every process
    writes, their windows are rebuilt from it; with a memory ledger (this
    process's calls only) nothing is wiped, and the loss is said."""
    import redis

    monkeypatch.setattr(settler_module, "MAX_PENDING", 2)
    config = {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [{"id": "bot", "provider": "local", "max_output_tokens": 5}],
        "budgets": [{**TOKENS, "hard_limit": 100_000}],
    }
    state = RedisState(redis_url, timeout=0.2, retry_interval=0.05)
    kept = (
        palyra.SQLiteLedger(tmp_path / "usage.sqlite3")
        if ledger == "sqlite"
        else palyra.MemoryLedger()
    )
    client = palyra.Palyra(config, state=state, ledger=kept)
    user = [{"role": "user", "content": "three words here"}]
    answer = client.chat(user, max_tokens=5)
    assert answer.palyra is not None
    assert answer.palyra.usage is not None
    used = answer.palyra.usage.input_uncached + answer.palyra.usage.output
    shared = client._shared
    assert shared is not None
    assert shared.settler.flush(5)
    redis.Redis.from_url(redis_url).execute_command("CLIENT", "PAUSE", "1500", "WRITE")
    # Settlements pile up while Redis does not answer: 2 queued at most, the
    # oldest dropped (these count 1 each, and are in no ledger).
    for _ in range(5):
        shared.settler.submit(_fake_settlement(shared))
    dropped = shared.settler.dropped
    assert dropped >= 1
    with caplog.at_level(logging.WARNING, logger="palyra"):
        assert shared.settler.flush(10)
        deadline = time.monotonic() + 5
        while shared.settler.stale and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not shared.settler.stale
    if ledger == "sqlite":
        assert "rebuilt from the ledger" in caplog.text
        assert status(shared).spent == used  # the one real call only
    else:
        assert "are lost from the budgets" in caplog.text
        assert status(shared).spent == used + 5 - dropped  # nothing wiped
    client.close()


def test_a_load_read_before_an_unload_is_made_again(redis_url: str) -> None:
    """Process X read the ledger, then another process's UNLOAD came, then
    X's LOAD: it is refused (it would miss a settle counted meanwhile), and
    a settle waiting for the load stays counted."""
    import redis

    from palyra._state.scripts import LOAD, SETTLE, UNLOAD

    link = RedisState(redis_url).link()
    conn = redis.Redis.from_url(redis_url)
    k, values, done = "p:b:tok:1:*:all", "p:v:tok:all", "p:done"
    read = int(time.time() * 1000)
    link.run(SETTLE, [k, done], [read + 5, "rid-b", 7, 0, 0, ""])  # after X's read
    link.run(UNLOAD, [k], [read + 10])
    assert link.run(LOAD, [k, values], [0, 0, "*", read, 0]) == -1
    assert link.run(LOAD, [k, values], [0, 0, "*", read + 20, 0]) == 1
    assert conn.hget(k, "spent") == b"0"  # a read after the settle counts it
    # Settles waiting for a load stay through an UNLOAD: one after the
    # load's read counts, one before it is the ledger's to count.
    conn.flushall()
    link.run(SETTLE, [k, done], [read, "rid-a", 3, 0, 0, ""])
    link.run(UNLOAD, [k], [read + 10])
    link.run(SETTLE, [k, done], [read + 15, "rid-c", 7, 0, 0, ""])
    assert link.run(LOAD, [k, values], [0, 0, "*", read + 12, 0]) == 1
    assert conn.hget(k, "spent") == b"7"
    link.close()


def test_a_rolling_per_value_budget_keeps_its_values_while_they_spend(
    redis_url: str,
) -> None:
    import redis

    rolling = {
        "id": "per-session",
        "metric": "tokens",
        "window": "2h",
        "scope": "session",
        "hard_limit": 1000,
    }
    e = engine(redis_url, rolling)
    conn = redis.Redis.from_url(redis_url)

    class Party:
        agent = principal = None
        tags: dict[str, str] = {}  # noqa: RUF012

        def __init__(self, session: str) -> None:
            self.session = session

    def call(name: str) -> None:
        held = e.reserve(Party(name), FREE, NOTHING, **KW)
        assert held is not None
        e.settle(held, FREE, NOTHING)
        assert e.settler.flush(5)

    call("s1")
    call("s2")
    [values] = conn.keys(f"{e.prefix}v:*")
    assert conn.pttl(values) == -1  # a rolling window's values: no expiry
    # s2's window expires (unused for 2 h and an hour): it leaves the set.
    for key in conn.keys(f"{e.prefix}b:per-session:2:s2:*"):
        conn.delete(key)
    call("s1")
    assert [(s.scope_value, s.spent) for s in e.status()] == [("s1", 26)]
    assert conn.smembers(values) == {b"s1"}


def _fake_settlement(shared: SharedBudgets) -> Any:
    from palyra._state.settler import Settlement

    [window] = shared.plan(NOBODY, FREE, NOTHING, ("local", "bot"), shared.now())
    args = [int(time.time() * 1000), f"fake-{time.monotonic_ns()}", 1, 0, 0, ""]
    return Settlement([window.key, f"{shared.prefix}done"], args, None)


def test_routing_trusts_a_refusal_for_a_second_only(redis_url: str) -> None:
    e = engine(redis_url, TOKENS)
    eighty = NormalizedUsage(input_uncached=80)
    first = e.reserve(NOBODY, eighty, NOTHING, **KW)
    assert first is not None
    with pytest.raises(palyra.BudgetExceededError):
        e.reserve(NOBODY, eighty, NOTHING, **KW)
    assert e.refuses(NOBODY, eighty, NOTHING, **KW) == "hard_limit"
    e.release(first)
    assert e.settler.flush(5)
    time.sleep(1.1)
    assert e.refuses(NOBODY, eighty, NOTHING, **KW) is None
    again = e.reserve(NOBODY, eighty, NOTHING, **KW)  # and its answer is the view
    assert again is not None
    assert e.refuses(NOBODY, eighty, NOTHING, **KW) == "hard_limit"
    e.close()


def test_settled_ids_are_kept_an_hour(redis_url: str) -> None:
    import redis

    e = engine(redis_url, TOKENS)
    held = e.reserve(NOBODY, FREE, NOTHING, **KW)
    assert held is not None
    e.release(held)
    assert e.settler.flush(5)
    ttl = redis.Redis.from_url(redis_url).pttl(f"{e.prefix}done")
    assert 3_500_000 < ttl <= 3_600_000
    e.close()


def test_a_per_value_budget_lists_only_this_periods_values(redis_url: str) -> None:
    import redis

    per_session = {
        "id": "per-session",
        "metric": "tokens",
        "window": "day",
        "scope": "session",
        "hard_limit": 1000,
    }
    e = engine(redis_url, per_session)

    class Party:
        agent = principal = None
        tags: dict[str, str] = {}  # noqa: RUF012

        def __init__(self, session: str) -> None:
            self.session = session

    for name in ("s1", "s2"):
        held = e.reserve(Party(name), FREE, NOTHING, **KW)
        assert held is not None
        e.release(held)
    assert e.settler.flush(5)
    assert sorted(s.scope_value for s in e.status()) == ["s1", "s2"]
    conn = redis.Redis.from_url(redis_url)
    [values] = [k for k in conn.keys(f"{e.prefix}v:*")]
    assert 0 < conn.pttl(values) <= 25 * 3_600_000  # the day's windows and an hour
    e.close()


def test_an_allow_budget_that_cannot_read_the_ledger_says_so(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    broken = palyra.MemoryLedger()

    def fail(*_: Any, **__: Any) -> Any:
        raise palyra.LedgerError("the ledger is unreachable")

    broken.totals = fail  # type: ignore[method-assign]
    broken.window_entries = fail  # type: ignore[attr-defined]
    state = RedisState(redis_url, retry_interval=0.05)
    e = state.budgets(
        Budgets([{**TOKENS, "on_ledger_error": "allow"}]), lambda: broken, None
    )
    with caplog.at_level(logging.WARNING, logger="palyra"):
        held = e.reserve(NOBODY, FREE, NOTHING, **KW)
    assert held is not None
    assert "starts its window at 0" in caplog.text
    e.close()


@pytest.mark.anyio
async def test_a_stalled_redis_never_stalls_the_v1_loop(
    redis_url: str, tmp_path: Any
) -> None:
    """/v1 requests of a rate-limited token wait for Redis on the loop's
    asyncio client: a 10 ms heartbeat keeps beating while Redis stalls."""
    import httpx
    import redis

    from palyra.asgi import create_app

    config = {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [{"id": "bot", "provider": "local"}],
    }
    state = RedisState(redis_url, timeout=0.5, retry_interval=30)
    client = palyra.Palyra(config, state=state, home=tmp_path, ledger=False)
    _, secret = client.tokens.create("t", scopes=["chat"], rate_limit=1000)
    app = create_app(client, require_auth=True)
    beats: list[float] = []

    async def heartbeat() -> None:
        while True:
            beats.append(time.monotonic())
            await asyncio.sleep(0.01)

    beating = asyncio.create_task(heartbeat())
    headers = {"authorization": f"Bearer {secret}"}
    body = {"model": "bot", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://palyra"
    ) as http:
        assert (
            await http.post("/v1/chat/completions", json=body, headers=headers)
        ).status_code == 200
        redis.Redis.from_url(redis_url).execute_command(
            "CLIENT", "PAUSE", "1500", "ALL"
        )
        for _ in range(2):
            answer = await http.post("/v1/chat/completions", json=body, headers=headers)
            assert answer.status_code == 200  # counted locally while Redis stalls
    beating.cancel()
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert max(gaps) < 0.25
    await client.aclose()
