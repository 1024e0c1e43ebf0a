"""Call events, exactly once per call and kind and in order: sync, async and
streams (finished, closed early, cut mid-way) on a real loopback upstream,
retries, failover, a budget block, a cancelled task; callbacks that raise
or sleep never touch a call; drops are counted; content only on opt-in; a
key never appears."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import chunk_json, completion_json, drain, upstream_config
from tests.upstream import Reply, Upstream, error_reply

pytestmark = pytest.mark.anyio
HI = [{"role": "user", "content": "say hi"}]
DRIVERS = ("sync", "async")


class Events:
    """An ``on_event`` callback that keeps what it is handed."""

    def __init__(self) -> None:
        self.seen: list[palyra.CallEvent] = []
        self.threads: set[str] = set()

    def __call__(self, event: palyra.CallEvent) -> None:
        self.threads.add(threading.current_thread().name)
        self.seen.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.seen]

    def by_call(self) -> dict[str, list[str]]:
        calls: dict[str, list[str]] = defaultdict(list)
        for e in self.seen:
            calls[e.call_id].append(e.kind)
        return dict(calls)


@pytest.fixture
def up(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    with Upstream(api_key=FAKE_KEY) as server:
        yield server


def client(config: Any, events: Events, **kw: Any) -> palyra.Palyra:
    return palyra.Palyra(config, on_event=events, ledger=palyra.MemoryLedger(), **kw)


async def chat(c: palyra.Palyra, driver: str, **kw: Any) -> Any:
    if driver == "sync":
        return c.chat(HI, **kw)
    return await c.achat(HI, **kw)


async def stream(c: palyra.Palyra, driver: str, **kw: Any) -> Any:
    if driver == "sync":
        return c.stream(HI, **kw)
    return await c.astream(HI, **kw)


STREAM = [chunk_json("Hel"), chunk_json("lo"), chunk_json(None, "stop"), "[DONE]"]


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_call_starts_and_ends_once(up: Upstream, driver: str) -> None:
    events = Events()
    c = client(upstream_config(up.base_url), events)
    up.enqueue(Reply(json=completion_json("hi")))
    reply = await chat(c, driver, agent="bot", session="s1", tags={"team": "x"})
    assert c.flush(5)
    start, end = events.seen
    assert (start.kind, end.kind) == ("start", "end")
    assert start.call_id == end.call_id
    assert (end.agent, end.session, end.tags) == ("bot", "s1", {"team": "x"})
    assert (end.provider, end.model, end.operation) == ("up", "gpt-4o-mini", "chat")
    assert end.attempts == 1
    assert end.usage == reply.palyra.usage
    assert end.cost == reply.palyra.cost
    assert end.latency_ms is not None
    assert 0 < end.latency_ms <= reply.palyra.latency_ms + 5
    assert start.at <= end.at
    assert end.input is None
    assert end.output is None  # content only on opt-in
    assert events.threads == {"palyra-events"}  # never the call's thread
    await c.aclose()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_stream_tells_its_first_token(up: Upstream, driver: str) -> None:
    events = Events()
    c = client(upstream_config(up.base_url), events)
    up.enqueue(Reply(sse=STREAM, chunk_delay=0.05))
    await drain(await stream(c, driver))
    assert c.flush(5)
    assert events.kinds() == ["start", "first_token", "end"]
    first, end = events.seen[1], events.seen[2]
    assert first.ttft_ms is not None
    assert end.latency_ms is not None
    assert first.ttft_ms == end.ttft_ms
    assert first.ttft_ms < end.latency_ms
    assert end.latency_ms >= 100  # two more chunks, 50 ms apart
    assert all(e.stream for e in events.seen)
    await c.aclose()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_stream_closed_early_is_cancelled_once(
    up: Upstream, driver: str
) -> None:
    events = Events()
    c = client(upstream_config(up.base_url), events)
    up.enqueue(Reply(sse=STREAM, chunk_delay=0.05))
    s = await stream(c, driver)
    if driver == "sync":
        next(iter(s))
        s.close()
        s.close()
    else:
        await s.__anext__()
        await s.aclose()
        await s.aclose()
    assert c.flush(5)
    assert events.kinds() == ["start", "first_token", "cancelled"]
    assert events.seen[-1].error_class is None
    assert events.seen[-1].usage is not None  # what was seen, estimated
    await c.aclose()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_stream_cut_mid_way_is_an_error(up: Upstream, driver: str) -> None:
    events = Events()
    c = client(upstream_config(up.base_url), events)
    up.enqueue(Reply(sse=STREAM, cut_after=2))
    with pytest.raises(palyra.APIConnectionError):
        await drain(await stream(c, driver))
    assert c.flush(5)
    assert events.kinds() == ["start", "first_token", "error"]
    assert events.seen[-1].error_class == "StreamInterruptedError"
    await c.aclose()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_retries_and_failover_are_one_call(up: Upstream, driver: str) -> None:
    config = upstream_config(up.base_url)
    config["providers"][0]["max_retries"] = 1
    config["providers"].append({**config["providers"][0], "id": "backup"})
    config["models"][0]["fallbacks"] = ["backup-mini"]
    config["models"].append({"id": "backup-mini", "provider": "backup"})
    events = Events()
    c = client(config, events, sleep=lambda s: None)
    up.enqueue(
        error_reply(500, "boom"),
        error_reply(500, "boom"),  # the retry fails too: failover
        Reply(json=completion_json("hi")),
    )
    await chat(c, driver)
    assert c.flush(5)
    assert events.kinds() == ["start", "end"]
    start, end = events.seen
    assert (start.provider, start.model) == ("up", "gpt-4o-mini")
    assert (end.provider, end.model) == ("backup", "backup-mini")
    assert end.attempts == 3
    await c.aclose()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_budget_block_is_an_error_with_nothing_sent(
    up: Upstream, driver: str
) -> None:
    config = {
        **upstream_config(up.base_url),
        "budgets": [
            {"id": "cap", "metric": "tokens", "window": "day", "hard_limit": 1}
        ],
    }
    events = Events()
    c = client(config, events)
    with pytest.raises(palyra.BudgetExceededError):
        await chat(c, driver)
    assert c.flush(5)
    assert events.kinds() == ["start", "error"]
    assert events.seen[-1].error_class == "BudgetExceededError"
    assert events.seen[-1].attempts == 0
    assert up.requests == []
    await c.aclose()


async def test_a_cancelled_task_is_cancelled_once(up: Upstream) -> None:
    events = Events()
    c = client(upstream_config(up.base_url), events)
    up.enqueue(Reply(json=completion_json("late"), delay=2))
    task = asyncio.create_task(c.achat(HI))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert c.flush(5)
    assert events.kinds() == ["start", "cancelled"]
    assert events.seen[-1].error_class == "CancelledError"
    await c.aclose()


def test_many_threads_each_call_exactly_once() -> None:
    events = Events()
    c = palyra.Palyra(on_event=events, ledger=False)
    go = threading.Barrier(16)

    def calls() -> None:
        go.wait()
        for _ in range(10):
            c.chat(HI)
            with c.stream(HI) as s:
                for _ in s:
                    pass

    threads = [threading.Thread(target=calls) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert c.flush(10)
    calls_seen = events.by_call()
    assert len(calls_seen) == 320
    assert sorted(map(tuple, calls_seen.values())) == sorted(
        [("start", "end")] * 160 + [("start", "first_token", "end")] * 160
    )
    stats = c.observability.stats()
    assert stats.emitted == stats.delivered == 800
    assert (stats.dropped, stats.callback_errors, stats.queued) == (0, 0, 0)
    c.close()


def test_a_raising_or_slow_callback_never_touches_a_call() -> None:
    def boom(event: palyra.CallEvent) -> None:
        raise RuntimeError("a callback's bug")

    def slow(event: palyra.CallEvent) -> None:
        time.sleep(1)

    quiet = palyra.Palyra(ledger=False)
    noisy = palyra.Palyra(on_event=[boom, slow], ledger=False)
    quiet.chat(HI)
    noisy.chat(HI)  # warm: the tokenizer, the thread
    took = {"quiet": [], "noisy": []}
    for _ in range(20):
        for name, c in (("quiet", quiet), ("noisy", noisy)):
            started = time.perf_counter()
            c.chat(HI)
            took[name].append(time.perf_counter() - started)
    median = {k: sorted(v)[10] for k, v in took.items()}
    assert median["noisy"] < median["quiet"] + 0.005  # not a second, nor 5 ms
    stats = noisy.observability.stats()
    assert stats.emitted == 42
    assert stats.queued > 0  # the slow one is still at it
    noisy.observability.flush(0.1)
    assert noisy.observability.stats().callback_errors >= 1
    quiet.close()
    noisy.observability.close(0.1)  # its slow callback is not waited for


def test_a_full_queue_drops_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    from palyra._observe import dispatcher

    gate = threading.Event()
    monkeypatch.setattr(dispatcher, "DEFAULT_QUEUE", 3)
    c = palyra.Palyra(on_event=lambda e: gate.wait(10), ledger=False)
    c.observability.observer.dispatcher._limit = 3  # type: ignore[union-attr]
    for _ in range(5):
        c.chat(HI)
    stats = c.observability.stats()
    # 10 events: the thread holds those it took, the queue 3 more at most.
    assert stats.dropped >= 1
    assert stats.emitted + stats.dropped == 10
    assert stats.emitted - stats.queued == 0  # nothing delivered: all held
    gate.set()
    assert c.flush(5)
    assert c.observability.stats().delivered + stats.dropped == 10
    c.close()


async def test_async_callbacks_run_on_palyras_own_loop() -> None:
    loops: list[Any] = []

    async def record(event: palyra.CallEvent) -> None:
        loops.append(asyncio.get_running_loop())

    c = palyra.Palyra(on_event=record, ledger=False)
    await c.achat(HI)
    assert c.flush(5)
    assert len(loops) == 2
    assert asyncio.get_running_loop() not in loops
    await c.aclose()


def test_content_only_on_opt_in() -> None:
    events = Events()
    c = palyra.Palyra(on_event=events, capture_content=True, ledger=False)
    reply = c.chat(HI)
    assert c.flush(5)
    start, end = events.seen
    assert start.input == HI
    assert end.output == reply.choices[0].message.content
    c.close()


def test_close_delivers_what_is_queued() -> None:
    gate = threading.Event()
    events = Events()

    def held(event: palyra.CallEvent) -> None:
        gate.wait(1)
        events(event)

    c = palyra.Palyra(on_event=held, ledger=False)
    c.chat(HI)
    threading.Timer(0.2, gate.set).start()
    c.close()
    assert events.kinds() == ["start", "end"]


def test_a_bad_on_event_is_refused() -> None:
    with pytest.raises(palyra.InvalidRequestError, match=r"on_event\[1\]"):
        palyra.Palyra(on_event=[print, "not a function"])


async def test_no_event_holds_a_key(up: Upstream) -> None:
    events = Events()
    c = client(upstream_config(up.base_url), events, capture_content=True)
    up.enqueue(
        Reply(json=completion_json("hi")), error_reply(401, f"bad key {FAKE_KEY}")
    )
    c.chat(HI)
    with pytest.raises(palyra.AuthenticationError):
        await c.achat(HI)
    assert c.flush(5)
    shown = " ".join(repr(e) + str(e.__getattribute__) for e in events.seen)
    shown += " ".join(str({f: getattr(e, f) for f in e.__slots__}) for e in events.seen)
    assert FAKE_KEY not in shown
    assert events.kinds() == ["start", "end", "start", "error"]
    await c.aclose()


async def test_one_log_line_per_call(
    up: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    config = {**upstream_config(up.base_url), "observability": {"log_calls": True}}
    c = palyra.Palyra(config, ledger=False)
    up.enqueue(Reply(json=completion_json("hi")), error_reply(500, f"no {FAKE_KEY}"))
    with caplog.at_level(logging.INFO, logger="palyra.calls"):
        c.chat(HI, agent="bot", tags={"team": "x"})
        with pytest.raises(palyra.InternalServerError):
            await c.achat(HI)
        assert c.flush(5)
    lines = [r for r in caplog.records if r.name == "palyra.calls"]
    assert [r.outcome for r in lines] == ["end", "error"]  # type: ignore[attr-defined]
    ok, failed = lines
    assert ok.levelname == "INFO"
    assert (ok.provider, ok.model, ok.agent) == ("up", "gpt-4o-mini", "bot")  # type: ignore[attr-defined]
    assert ok.tags == {"team": "x"}  # type: ignore[attr-defined]
    assert ok.input_tokens is not None  # type: ignore[attr-defined]
    assert "palyra call end chat up/gpt-4o-mini attempts=1" in ok.getMessage()
    assert failed.error_class == "InternalServerError"  # type: ignore[attr-defined]
    assert FAKE_KEY not in caplog.text
    assert "say hi" not in caplog.text  # no content
    await c.aclose()


def test_a_call_failing_before_its_start_was_noted_still_starts_and_ends() -> None:
    """A route hook ahead of the observer's raises: the call's failure hooks
    run with no start noted; the start is noted then, before the error."""
    events = Events()
    c = palyra.Palyra(on_event=events, ledger=False)

    def refuse(ctx: Any) -> None:
        raise palyra.InvalidRequestError("a routing hook refused")

    c._pipeline.hooks.route.insert(0, refuse)
    with pytest.raises(palyra.InvalidRequestError):
        c.chat(HI)
    assert c.flush(5)
    assert events.kinds() == ["start", "error"]
    assert events.seen[-1].error_class == "InvalidRequestError"
    c.close()


@pytest.mark.parametrize(
    "kind", [SystemExit, asyncio.CancelledError, KeyboardInterrupt]
)
def test_a_callback_raising_a_base_exception_stops_nothing(
    kind: type[BaseException],
) -> None:
    events = Events()

    def leave(event: palyra.CallEvent) -> None:
        raise kind

    c = palyra.Palyra(on_event=[leave, events], ledger=False)
    for _ in range(3):
        c.chat(HI)
    assert c.flush(5)
    assert events.kinds() == ["start", "end"] * 3
    assert c.observability.stats().callback_errors == 6
    c.close()


def test_a_stream_dropped_unread_ends_through_flush_and_close() -> None:
    import gc

    events = Events()
    c = palyra.Palyra(on_event=events, ledger=False)
    c.stream(HI)  # dropped at once, unread
    gc.collect()
    assert c.flush(5)
    assert events.kinds() == ["start", "first_token", "cancelled"]
    c.stream(HI)
    gc.collect()
    c.close()  # reports it before it stops the events' thread
    assert events.kinds()[3:] == ["start", "first_token", "cancelled"]
    assert c.observability.stats().dropped == 0


def test_a_forked_child_tells_its_own_calls() -> None:
    import os

    events = Events()
    c = palyra.Palyra(on_event=events, ledger=False)
    c.chat(HI)
    assert c.flush(5)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own thread, none of the parent's queue
        try:
            c.chat(HI)
            ok = c.flush(5) and events.kinds() == ["start", "end"] * 2
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(read)
    c.close()


def test_a_thread_that_cannot_start_never_fails_a_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    events = Events()
    c = palyra.Palyra(on_event=events, ledger=False)
    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert c.chat(HI).choices  # the call is answered
    assert c.observability.stats().dropped >= 1
    monkeypatch.undo()
    c.chat(HI)  # a thread starts with the next event
    assert c.flush(5)
    assert events.kinds()[-2:] == ["start", "end"]
    c.close()


def test_nothing_of_a_delivered_call_is_kept() -> None:
    import gc
    import weakref

    c = palyra.Palyra(on_event=lambda event: None, ledger=False)
    kept = [weakref.ref(c.chat(HI)) for _ in range(20)]
    assert c.flush(5)
    time.sleep(0.1)  # the thread waits for more, holding nothing
    gc.collect()
    assert sum(r() is not None for r in kept) == 0
    c.close()


def test_flush_and_close_from_a_callback_return_at_once() -> None:
    took: list[float] = []
    holder: list[palyra.Palyra] = []

    def inside(event: palyra.CallEvent) -> None:
        started = time.monotonic()
        holder[0].flush(5)
        took.append(time.monotonic() - started)

    c = palyra.Palyra(on_event=inside, ledger=False)
    holder.append(c)
    c.chat(HI)
    assert c.flush(5)
    assert len(took) == 2
    assert max(took) < 0.5
    c.close()


def test_close_keeps_to_its_timeout_with_a_stuck_callback() -> None:
    gate = threading.Event()
    c = palyra.Palyra(on_event=lambda event: gate.wait(10), ledger=False)
    c.chat(HI)
    started = time.monotonic()
    assert not c.observability.close(0.3)
    assert time.monotonic() - started < 0.8
    gate.set()
    c.close()


def test_an_async_callable_object_is_awaited() -> None:
    seen: list[str] = []

    class Sink:
        async def __call__(self, event: palyra.CallEvent) -> None:
            seen.append(event.kind)

    c = palyra.Palyra(on_event=Sink(), ledger=False)
    c.chat(HI)
    assert c.flush(5)
    assert seen == ["start", "end"]
    c.close()


def test_content_of_an_embedding_on_opt_in() -> None:
    events = Events()
    c = palyra.Palyra(on_event=events, capture_content=True, ledger=False)
    c.embed(["one text", "another"])
    assert c.flush(5)
    assert events.seen[0].input == ["one text", "another"]
    c.close()


def test_a_script_that_never_flushes_still_tells_its_last_call(tmp_path: Any) -> None:
    import subprocess
    import sys

    out = tmp_path / "events.txt"
    code = (
        "import palyra\n"
        f"out = open({str(out)!r}, 'a')\n"
        "c = palyra.Palyra(on_event=lambda e: print(e.kind, file=out, flush=True),"
        " ledger=False)\n"
        "c.chat([{'role': 'user', 'content': 'hi'}])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert out.read_text().split() == ["start", "end"]
