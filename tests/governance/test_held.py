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
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    with palyra.Palyra(home=tmp_path, ledger=ledger) as client:
        beat = asyncio.ensure_future(ticker())
        started = time.monotonic()
        await client.achat(HELLO)
        took = time.monotonic() - started
        beat.cancel()
    assert took >= 0.3  # the call waited for its record
    assert ticks >= 15  # and the loop served others meanwhile
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
    original = writer._to_thread

    async def counted(func: Any, *args: Any) -> Any:
        calls.append(func)
        return await original(func, *args)

    writer._to_thread = counted


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
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    with palyra.Palyra(home=tmp_path) as client:
        await client.achat(HELLO, agent="first")
        path = client.usage.health().path
        assert path is not None
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another writer holds SQLite's lock
        threading.Timer(0.3, other.execute, args=("COMMIT",)).start()
        beat = asyncio.ensure_future(ticker())
        started = time.monotonic()
        await client.achat(HELLO, agent="waited")
        took = time.monotonic() - started
        beat.cancel()
        found = [r.agent for r in client.usage.records()]
        other.close()
    assert took >= 0.25  # the call waited for the lock, and its commit
    assert ticks >= 12  # while the loop served others
    assert len(handoffs) == 2
    assert found == ["first", "waited"]
