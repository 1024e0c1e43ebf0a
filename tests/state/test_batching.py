"""Round trips shared by concurrent calls, on a real Redis: reserves that
arrive while another is on the wire go to Redis together (one pipeline),
each still decided on its own as if alone; settlements queued together go
in one round trip; a Redis that is down, or that forgot its scripts, is
handled for every caller of a batch."""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal
from typing import Any

import pytest

from palyra._governance import Budgets, Cost, NormalizedUsage
from palyra._state import RedisState, SharedBudgets, StateUnavailableError
from palyra._state.batch import AsyncBatcher, Batcher
from palyra._state.link import RedisLink, StateDown
from palyra._state.scripts import PEEK
from tests.servers import RedisServer

USAGE = NormalizedUsage(input_uncached=100, output=0)
COST = Cost(total=Decimal("0.0001"), unpriced=False)
CAP = {"id": "cap", "metric": "tokens", "window": "day", "hard_limit": 100 * 40}


class Caller:
    agent: str | None = "bot"
    session: str | None = None
    principal: str | None = None
    tags: dict[str, str] = {}  # noqa: RUF012 (read only)


def engine(url: str, *policies: dict[str, Any], **kw: Any) -> SharedBudgets:
    state = RedisState(url, retry_interval=0.05)
    return SharedBudgets(
        Budgets(list(policies)), state.link(), prefix=state.config.key_prefix,
        ledger=lambda: None, on_unavailable=kw.get("mode", "fail_closed"),
        local_fraction=0.1, margin=30.0, retry_interval=0.05,
    )  # fmt: skip


def reserve(e: SharedBudgets) -> Any:
    return e.reserve(Caller(), USAGE, COST, provider="p", model="m")


def test_threads_share_round_trips_and_admit_exactly_the_cap(redis_url: str) -> None:
    e = engine(redis_url, CAP)
    reserve(e)  # the window loaded, the scripts known
    kept: list[Any] = []
    refused: list[Exception] = []
    go = threading.Barrier(32)

    def call() -> None:
        go.wait()
        for _ in range(5):
            try:
                kept.append(reserve(e))
            except Exception as exc:
                refused.append(exc)

    threads = [threading.Thread(target=call) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # 40 fit; one was held before: 39 of the 160 tries get in, not one more.
    assert len(kept) == 39
    assert len(refused) == 121
    assert {type(x).__name__ for x in refused} == {"BudgetExceededError"}
    assert len({r.id for r in kept}) == 39
    # Each reservation answered its own caller, and fewer trips than calls.
    assert e.batch.round_trips < 100
    e.close()


def test_a_batch_is_decided_in_order_as_if_one_by_one(redis_url: str) -> None:
    link = RedisState(redis_url).link()
    batch = Batcher(link)
    e = engine(redis_url, CAP)
    reserve(e)
    [window] = reserve(e).held
    calls = [(PEEK, [window.key], [0, 0]) for _ in range(3)]
    answers = link.run_many(calls)
    assert answers[0] == answers[1] == answers[2]
    assert batch.run(PEEK, [window.key], [0, 0]) == answers[0]
    e.close()
    link.close()


def test_scripts_redis_forgot_are_loaded_again_within_the_batch(redis_url: str) -> None:
    import redis

    e = engine(redis_url, CAP)
    reserve(e)
    redis.Redis.from_url(redis_url).script_flush()
    [window] = reserve(e).held  # one alone: redis-py's own reload
    redis.Redis.from_url(redis_url).script_flush()
    answers = e.link.run_many([(PEEK, [window.key], [0, 0])] * 2)
    assert not any(isinstance(a, Exception) for a in answers)
    e.close()


def test_a_script_failing_alone_is_a_state_down_in_its_place(redis_url: str) -> None:
    link = RedisState(redis_url).link()
    bad = "return redis.call('INCR', KEYS[1], 'extra')"
    answers = link.run_many(
        [("return 1", [], []), (bad, ["k"], []), ("return 2", [], [])]
    )
    assert answers[0] == 1
    assert answers[2] == 2
    assert isinstance(answers[1], StateDown)
    assert not link.down  # Redis itself is fine
    link.close()


def test_every_caller_of_a_batch_hears_that_redis_is_down(
    redis_server: RedisServer, redis_url: str
) -> None:
    e = engine(redis_url, CAP)
    reserve(e)
    redis_server.stop()
    errors: list[Exception] = []
    go = threading.Barrier(8)

    def call() -> None:
        go.wait()
        try:
            reserve(e)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(errors) == 8
    assert all(isinstance(x, StateUnavailableError) for x in errors)
    assert len({id(x) for x in errors}) == 8
    e.close(0.1)
    redis_server.start()


def test_a_waiter_gives_up_within_its_bound() -> None:
    """A Redis that accepts and never answers: every caller ends, typed."""
    import socket

    quiet = socket.socket()
    quiet.bind(("127.0.0.1", 0))
    quiet.listen(64)
    port = quiet.getsockname()[1]
    link = RedisLink(f"redis://127.0.0.1:{port}/0", connect_timeout=0.2, timeout=0.2)
    batch = Batcher(link)
    ends: list[BaseException] = []

    def call() -> None:
        try:
            batch.run("return 1", [], [])
        except BaseException as exc:
            ends.append(exc)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)
    assert len(ends) == 6
    assert all(isinstance(x, StateDown) for x in ends)
    quiet.close()
    link.close()


@pytest.mark.anyio
async def test_tasks_share_round_trips_and_admit_exactly_the_cap(
    redis_url: str,
) -> None:
    e = engine(redis_url, CAP)
    await e.areserve(Caller(), USAGE, COST, provider="p", model="m")

    async def call() -> Any:
        return await e.areserve(Caller(), USAGE, COST, provider="p", model="m")

    results = await asyncio.gather(
        *(call() for _ in range(100)), return_exceptions=True
    )
    kept = [r for r in results if not isinstance(r, BaseException)]
    assert len(kept) == 39
    assert {type(r).__name__ for r in results if isinstance(r, BaseException)} == {
        "BudgetExceededError"
    }
    [batch] = e._abatches.values()
    assert batch.round_trips < 20  # 100 calls, a handful of pipelines
    e.close()
    await e.link.aclose()


@pytest.mark.anyio
async def test_a_cancelled_task_strands_no_other(redis_url: str) -> None:
    link = RedisState(redis_url).link()
    batch = AsyncBatcher(link)
    tasks = [asyncio.create_task(batch.run("return 7", [], [])) for _ in range(20)]
    await asyncio.sleep(0)
    tasks[0].cancel()  # the one on the wire alone
    tasks[5].cancel()  # one queued
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert [d for i, d in enumerate(done) if i not in (0, 5)] == [7] * 18
    assert isinstance(done[5], asyncio.CancelledError)
    await link.aclose()


def test_settlements_queued_together_go_in_one_round_trip(redis_url: str) -> None:
    e = engine(redis_url, CAP)
    held = [reserve(e) for _ in range(30)]
    for h in held:
        e.settle(h, NormalizedUsage(input_uncached=10, output=0), COST)
    assert e.settler.flush(5)
    assert e.settler.settled == 30
    [status] = e.status()
    assert status.spent == 300
    assert status.reserved == 0
    e.close()


def test_settlements_wait_out_a_stalled_redis_and_count_once(redis_url: str) -> None:
    """Redis stops answering (CLIENT PAUSE) with settlements on the wire:
    they time out, are kept, go again, and each counts once."""
    import redis

    state = RedisState(redis_url, timeout=0.2, retry_interval=0.05)
    e = SharedBudgets(
        Budgets([CAP]), state.link(), prefix="palyra:", ledger=lambda: None,
        on_unavailable="fail_closed", local_fraction=0.1, margin=30.0,
        retry_interval=0.05,
    )  # fmt: skip
    held = [reserve(e) for _ in range(10)]
    redis.Redis.from_url(redis_url).execute_command("CLIENT", "PAUSE", "800", "WRITE")
    for h in held:
        e.settle(h, NormalizedUsage(input_uncached=10, output=0), COST)
    assert not e.settler.flush(0.3)  # kept while Redis does not answer
    assert e.settler.flush(10)
    [status] = e.status()
    assert status.spent == 100
    assert status.reserved == 0
    e.close()


def test_one_call_failing_in_a_combined_run_fails_alone(redis_url: str) -> None:
    """Calls of one script run as one script on Redis; a call that fails
    there is an error in its place, and the calls after it still run."""
    link = RedisState(redis_url).link()
    add = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    answers = link.run_many(
        [(add, ["n"], ["1"]), (add, ["n"], ["x"]), (add, ["n"], ["2"])]
    )
    assert answers[0] == 1
    assert answers[2] == 3
    assert isinstance(answers[1], StateDown)
    assert "not an integer" in str(answers[1])
    link.close()


def test_combined_calls_keep_empty_args_and_separators(redis_url: str) -> None:
    link = RedisState(redis_url).link()
    echo = "return {#ARGV, ARGV[1] or false, ARGV[2] or false}"
    calls = [(echo, [], [""]), (echo, [], []), (echo, [], ["a", ""]), (echo, [], [7])]
    assert link.run_many(calls) == [
        [1, b"", None],
        [0, None, None],
        [2, b"a", b""],
        [1, b"7", None],
    ]
    # An argument holding the separator: the calls go by a pipeline instead.
    assert link.run_many([(echo, [], ["a\x1fb"]), (echo, [], ["c"])]) == [
        [1, b"a\x1fb", None],
        [1, b"c", None],
    ]
    link.close()


class Interrupted(Exception):
    """What a signal handler raises in the main thread (a timeout, say)."""


class Hurried(BaseException):
    """The same as a BaseException (as KeyboardInterrupt is)."""


def _slowed(link: RedisLink, seconds: float) -> None:
    run, run_many = link.run, link.run_many

    def slow_run(*a: Any, **k: Any) -> Any:
        time.sleep(seconds)
        return run(*a, **k)

    def slow_many(calls: Any) -> Any:
        answers = run_many(calls)
        time.sleep(seconds)  # the answers on their way back
        return answers

    link.run, link.run_many = slow_run, slow_many  # type: ignore[method-assign]


def test_a_waiter_interrupted_in_the_queue_holds_up_nobody(redis_url: str) -> None:
    import signal

    link = RedisState(redis_url).link()
    batch = Batcher(link)
    _slowed(link, 0.3)

    def alarm(*_: Any) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        leader = threading.Thread(target=batch.run, args=("return ARGV[1]", [], ["a"]))
        leader.start()
        time.sleep(0.05)
        signal.setitimer(signal.ITIMER_REAL, 0.1)  # this thread waits in the queue
        with pytest.raises(Interrupted):
            batch.run("return ARGV[1]", [], ["main"])
        leader.join(5)
    finally:
        signal.signal(signal.SIGALRM, previous)
    started = time.monotonic()
    assert batch.run("return ARGV[1]", [], ["later"]) == b"later"
    assert time.monotonic() - started < 1.0
    link.close()


@pytest.mark.parametrize("kind", [Interrupted, Hurried])
def test_a_leader_interrupted_on_the_wire_answers_its_batch(
    redis_url: str, kind: type[BaseException]
) -> None:
    """The main thread takes [main, T2, T3] to Redis and is interrupted
    while the answers come back: it alone raises; T2 and T3 hear at once
    that Redis was not reached (not the main thread's exception)."""
    import signal

    link = RedisState(redis_url).link()
    batch = Batcher(link)
    _slowed(link, 0.3)
    found: dict[str, Any] = {}

    def call(name: str) -> None:
        started = time.monotonic()
        try:
            found[name] = batch.run("return ARGV[1]", [], [name])
        except BaseException as exc:
            found[name] = (type(exc).__name__, time.monotonic() - started)

    def alarm(*_: Any) -> None:
        raise kind

    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        first = threading.Thread(target=call, args=("T1",))
        first.start()
        time.sleep(0.05)
        others = [threading.Thread(target=call, args=(n,)) for n in ("T2", "T3")]
        later = threading.Timer(0.02, lambda: [t.start() for t in others])
        later.start()
        signal.setitimer(signal.ITIMER_REAL, 0.5)  # while main's batch is out
        with pytest.raises(kind):
            batch.run("return ARGV[1]", [], ["main"])
        first.join(5)
        later.join(5)
        for t in others:
            t.join(5)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert found["T1"] == b"T1"
    for name in ("T2", "T3"):
        kind_name, waited = found[name]
        assert kind_name == "StateDown"
        assert waited < 1.5  # told at once, not after the wait's bound
    assert batch.run("return ARGV[1]", [], ["after"]) == b"after"
    link.close()


@pytest.mark.anyio
async def test_a_cancelled_waiter_leaves_nothing_unretrieved(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import gc

    link = RedisState(redis_url).link()
    batch = AsyncBatcher(link)
    tasks = [asyncio.create_task(batch.run("return 1", [], [])) for _ in range(5)]
    await asyncio.sleep(0)
    for t in tasks[1:]:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.05)
    gc.collect()
    assert "never retrieved" not in caplog.text
    await link.aclose()
