"""Async calls write their ledger records off the event loop
(`palyra._governance.held`): committed before the call returns, never
blocking the loop while the ledger waits (another process's lock, a slow
disk), batched across the loop's concurrent calls, and written for a caller
cancelled mid-write too."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import palyra

pytestmark = [pytest.mark.anyio]
HELLO = [{"role": "user", "content": "hi"}]


class Beats:
    """Counts the event loop's turns every 10 ms: a loop stalled by a
    ledger wait stops counting."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1


class SlowLedger(palyra.MemoryLedger):
    """A ledger whose every write takes ``delay`` seconds (a held lock)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.batches: list[int] = []
        self.threads: set[int] = set()

    def record(self, rec: palyra.UsageRecord) -> None:
        self.threads.add(threading.get_ident())
        time.sleep(self.delay)
        super().record(rec)

    def record_many(self, recs: list[palyra.UsageRecord]) -> None:
        self.batches.append(len(recs))
        super().record_many(recs)  # one record() each


async def test_a_record_is_committed_when_the_call_returns(tmp_path: Path) -> None:
    with palyra.Palyra(home=tmp_path) as client:  # the default SQLite ledger
        reply = await client.achat(HELLO, agent="a1")
        found = client.usage.records()
        assert [r.agent for r in found] == ["a1"]
        assert reply.palyra is not None


async def test_the_loop_keeps_running_while_the_ledger_waits(tmp_path: Path) -> None:
    ledger = SlowLedger(delay=0.3)
    beats = Beats()

    with palyra.Palyra(home=tmp_path, ledger=ledger) as client:
        beat = asyncio.ensure_future(beats.run())
        started = time.monotonic()
        await client.achat(HELLO)
        took = time.monotonic() - started
        beat.cancel()
    assert took >= 0.3  # the call waited for its record
    assert beats.ticks >= 15  # and the loop served others meanwhile
    assert threading.get_ident() not in ledger.threads
    assert len(ledger.records()) == 1


async def test_concurrent_calls_share_writes(tmp_path: Path) -> None:
    ledger = SlowLedger(delay=0.01)
    with palyra.Palyra(home=tmp_path, ledger=ledger) as client:
        await asyncio.gather(*(client.achat(HELLO, agent=f"a{i}") for i in range(40)))
    assert sum(ledger.batches) == 40
    assert len(ledger.batches) < 40  # batched: fewer writes than calls
    assert {r.agent for r in ledger.records()} == {f"a{i}" for i in range(40)}


async def test_a_caller_cancelled_while_its_record_is_written_still_gets_it(
    tmp_path: Path,
) -> None:
    ledger = SlowLedger(delay=0.3)
    with palyra.Palyra(home=tmp_path, ledger=ledger) as client:
        call = asyncio.ensure_future(client.achat(HELLO, agent="gone"))
        await asyncio.sleep(0.1)  # the answer is in; its record is being written
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        for _ in range(100):
            if ledger.records():
                break
            await asyncio.sleep(0.02)
    assert [r.agent for r in ledger.records()] == ["gone"]


async def test_a_failing_ledger_does_not_fail_the_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(palyra.MemoryLedger):
        def record_many(self, recs: list[Any]) -> None:
            raise OSError("disk full")

    with palyra.Palyra(home=tmp_path, ledger=Broken()) as client:
        reply = await client.achat(HELLO)
        assert reply.choices[0].message.content == "hi"
    assert "disk full" in caplog.text  # logged, once per outage


def test_sync_calls_write_in_place(tmp_path: Path) -> None:
    ledger = SlowLedger(delay=0.0)
    with palyra.Palyra(home=tmp_path, ledger=ledger) as client:
        client.chat(HELLO)
    assert ledger.threads == {threading.get_ident()}


def test_sqlite_record_many_is_one_transaction_of_all_or_none(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from tests.governance.budget_helpers import record

    ledger = palyra.SQLiteLedger(tmp_path / "usage.sqlite3")
    now = datetime.now(UTC)
    batch = [record(now, agent=f"a{i}") for i in range(50)]
    ledger.record_many(batch)
    assert len(ledger.records()) == 50
    with pytest.raises(TypeError):
        ledger.record_many([record(now), "not a record"])  # type: ignore[list-item]
    assert len(ledger.records()) == 50  # the good one was not written either
    threads = [
        threading.Thread(
            target=ledger.record_many, args=([record(now) for _ in range(20)],)
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(ledger.records()) == 50 + 160
    assert ledger.health().written == 210
    ledger.close()


def _count_threads(calls: list[Any]) -> None:
    """Count the record writer's worker-thread handoffs on this loop."""
    from palyra._governance.held import writer_for

    writer = writer_for(asyncio.get_running_loop())
    original = writer._drain

    def counted() -> None:
        calls.append(original)
        original()

    writer._drain = counted  # type: ignore[method-assign]


async def test_an_uncontended_sqlite_commit_needs_no_thread(tmp_path: Path) -> None:
    handoffs: list[Any] = []
    _count_threads(handoffs)
    with palyra.Palyra(home=tmp_path) as client:
        await client.achat(HELLO, agent="first")  # opens the file: in a thread
        assert len(handoffs) == 1
        for i in range(5):
            await client.achat(HELLO, agent=f"a{i}")
        assert len(handoffs) == 1  # committed on the loop, lock free
        found = {r.agent for r in client.usage.records()}
    assert found == {"first", "a0", "a1", "a2", "a3", "a4"}


async def test_a_file_locked_by_another_process_is_waited_for_off_the_loop(
    tmp_path: Path,
) -> None:
    import sqlite3

    handoffs: list[Any] = []
    _count_threads(handoffs)
    beats = Beats()

    with palyra.Palyra(home=tmp_path) as client:
        await client.achat(HELLO, agent="first")
        path = client.usage.health().path
        assert path is not None
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another writer holds SQLite's lock
        threading.Timer(0.3, other.execute, args=("COMMIT",)).start()
        beat = asyncio.ensure_future(beats.run())
        started = time.monotonic()
        await client.achat(HELLO, agent="waited")
        took = time.monotonic() - started
        beat.cancel()
        found = [r.agent for r in client.usage.records()]
        other.close()
    assert took >= 0.25  # the call waited for the lock, and its commit
    assert beats.ticks >= 12  # while the loop served others
    assert len(handoffs) == 2
    assert found == ["first", "waited"]


def _lock_for(path: str, seconds: float) -> Any:
    """Another connection holding SQLite's write lock for ``seconds``."""
    import sqlite3

    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(seconds, other.execute, args=("COMMIT",)).start()
    return other


def test_records_queued_when_the_loop_shuts_down_are_kept(tmp_path: Path) -> None:
    """asyncio.run cancels every task left when main returns: the records
    queued for the worker thread are written all the same."""
    client = palyra.Palyra(home=tmp_path)

    async def main() -> str | None:
        await client.achat(HELLO, agent="first")
        path = client.usage.health().path
        assert path is not None
        _lock_for(path, 0.5)
        left = [asyncio.ensure_future(client.achat(HELLO, agent="one"))]
        await asyncio.sleep(0.05)
        for i in range(3):
            left.append(asyncio.ensure_future(client.achat(HELLO, agent=f"then-{i}")))
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in left)  # still waiting: cancelled
        return path

    try:
        asyncio.run(main())
        agents = sorted(r.agent or "" for r in client.usage.records())
    finally:
        client.close()
    assert agents == ["first", "one", "then-0", "then-1", "then-2"]


async def test_a_stream_s_record_waits_off_the_loop(tmp_path: Path) -> None:
    beats = Beats()

    with palyra.Palyra(home=tmp_path) as client:
        await client.achat(HELLO, agent="first")
        path = client.usage.health().path
        assert path is not None
        other = _lock_for(path, 0.3)
        beat = asyncio.ensure_future(beats.run())
        started = time.monotonic()
        async with await client.astream(HELLO, agent="streamed") as stream:
            async for _ in stream:
                pass
        took = time.monotonic() - started
        beat.cancel()
        found = [r.agent for r in client.usage.records()]
        other.close()
        await client.aclose()
    assert took >= 0.25  # the stream's end waited for its record
    assert beats.ticks >= 12  # while the loop served others
    assert found == ["first", "streamed"]


def test_a_write_after_the_call_released_its_records_is_kept(tmp_path: Path) -> None:
    """A context copied during a held call (a callback scheduled from a
    finalizer) may write after the call released: written in place."""
    import contextvars
    from datetime import UTC, datetime

    from palyra._governance import hold, release
    from tests.governance.budget_helpers import record

    ledger = palyra.MemoryLedger()
    with palyra.Palyra(home=tmp_path, ledger=ledger) as client:
        slot = client._ledger
        token = hold()
        copied = contextvars.copy_context()
        assert release(token) == []
        assert copied.run(slot.write, record(datetime.now(UTC), agent="late"))
    assert [r.agent for r in ledger.records()] == ["late"]
