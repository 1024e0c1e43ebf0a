"""The usage ledger: one contract for memory, SQLite and PostgreSQL, then what
only a file can get wrong (laziness, migrations, processes, SIGKILL, bad paths)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from palyra._governance import (
    LedgerError,
    MemoryLedger,
    Page,
    PostgresLedger,
    SQLiteLedger,
    UsageLedger,
    UsageRecord,
)
from palyra._governance.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CHILD = [sys.executable, "-m", "tests.governance.ledger_child"]


def rec(**fields: Any) -> UsageRecord:
    """A record with plain defaults, ``fields`` winning."""
    values: dict[str, Any] = {
        "started_at": T0,
        "finished_at": T0 + timedelta(seconds=1),
        "provider": "openai",
        "model": "gpt-x",
    }
    values.update(fields)
    return UsageRecord(**values)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UsageLedger]:
    made: UsageLedger
    if request.param == "memory":
        made = MemoryLedger()
    elif request.param == "sqlite":
        made = SQLiteLedger(tmp_path / "usage.sqlite3")
    else:  # only this param starts PostgreSQL (a fresh database per test)
        made = PostgresLedger(request.getfixturevalue("postgres_dsn"))
    yield made
    made.close()


# The contract


def test_round_trip_keeps_every_field_exactly(ledger: UsageLedger) -> None:
    full = rec(
        started_at=datetime(2026, 3, 1, 13, 0, 0, 123456, tzinfo=UTC),
        agent="bot",
        session="s1",
        principal="ann",
        tags={"team": "core", "env": "prod"},
        requested_model="fast",
        auth_profile="openai:work",
        input_uncached=10,
        cache_read=20,
        cache_write=30,
        output=40,
        reasoning=5,
        cost_total=Decimal("0.000012345678901234567"),
        estimated=True,
        currency="EUR",
        latency_ms=12.5,
        status="error",
        error_class="RateLimitError",
        attempts=3,
        routing="cheap",
    )
    bare = rec(started_at=T0 - timedelta(hours=1), unpriced=True)
    ledger.record(full)
    ledger.record(bare)
    got = ledger.records()
    assert got == [bare, full]  # oldest first
    assert str(got[1].cost_total) == "0.000012345678901234567"
    assert got[1].started_at.utcoffset() == timedelta(0)
    assert ledger.health().ok
    assert ledger.health().written == 2


def test_filters_and_ranges(ledger: UsageLedger) -> None:
    a = rec(agent="a", session="s", tags={"team": "x"}, started_at=T0)
    b = rec(agent="b", model="other", status="cancelled", started_at=T0 + timedelta(1))
    c = rec(principal="p", auth_profile="prof", tags={"team": "y", "k": "v"})
    for r in (a, b, c):
        ledger.record(r)
    assert ledger.records(agent="a") == [a]
    assert ledger.records(model="other") == [b]
    assert ledger.records(status="cancelled") == [b]
    assert ledger.records(principal="p", auth_profile="prof") == [c]
    assert ledger.records(provider="openai", session="s") == [a]
    assert ledger.records(tag=("team", "y")) == [c]
    assert ledger.records(tags={"team": "y", "k": "v"}) == [c]
    assert ledger.records(tags={"team": "y", "k": "w"}) == []
    # Half-open: since is in, until is out.
    assert ledger.records(since=T0 + timedelta(1)) == [b]
    assert ledger.records(until=T0 + timedelta(1)) in ([a, c], [c, a])
    with pytest.raises(TypeError, match="unknown usage filter"):
        ledger.records(colour="red")
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.records(since=datetime(2026, 1, 1))  # noqa: DTZ001


def test_records_are_paged_by_the_ledger(ledger: UsageLedger) -> None:
    made = [
        rec(
            id=f"r{i:02}",
            agent="a" if i % 2 else "b",
            started_at=T0 + timedelta(i // 2),
        )
        for i in range(11)
    ]  # pairs share a start time: ties go by id
    for r in reversed(made):
        ledger.record(r)
    assert ledger.records(page=Page()) == made
    assert ledger.records(page=Page(limit=3)) == made[:3]
    assert ledger.records(page=Page(limit=3, offset=9)) == made[9:]
    assert ledger.records(page=Page(limit=4, newest_first=True)) == made[::-1][:4]
    newest = ledger.records(page=Page(limit=4, offset=4, newest_first=True))
    assert newest == made[::-1][4:8]
    assert ledger.records(page=Page(offset=20)) == []
    assert ledger.records(page=Page(limit=0)) == []
    odd = [r for r in made if r.agent == "b"]
    since = T0 + timedelta(1)
    paged = ledger.records(since, page=Page(limit=2, newest_first=True), agent="b")
    assert paged == [r for r in odd if r.started_at >= since][::-1][:2]
    for bad in ({"limit": -1}, {"offset": True}, {"newest_first": "yes"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Page(**bad)  # type: ignore[arg-type]


def test_totals_by_each_key_and_tuples(ledger: UsageLedger) -> None:
    ledger.record(rec(agent="a", output=1, cost_total=Decimal("0.10"), tags={"t": "1"}))
    ledger.record(rec(agent="a", output=2, cost_total=Decimal("0.2"), model="m2"))
    ledger.record(rec(agent="b", output=4, unpriced=True, auth_profile="pr"))
    by_agent = ledger.totals("agent")
    assert [(t.key, t.calls, t.output) for t in by_agent] == [
        (("a",), 2, 3),
        (("b",), 1, 4),
    ]
    assert str(by_agent[0].cost_total) == "0.30"  # Decimal's own exponent
    assert by_agent[1].cost_total is None
    assert by_agent[1].unpriced_calls == 1
    assert by_agent[0]["agent"] == "a"
    for key in ("model", "provider", "session", "principal", "profile", "day"):
        groups = ledger.totals(key)
        assert sum(t.calls for t in groups) == 3, key
    assert [t.key for t in ledger.totals("tag:t")] == [(None,), ("1",)]
    assert [t.key for t in ledger.totals("profile")] == [(None,), ("pr",)]
    pairs = ledger.totals(("agent", "model"))
    assert [t.key for t in pairs] == [("a", "gpt-x"), ("a", "m2"), ("b", "gpt-x")]
    assert ledger.totals(("agent", "day"))[0].key == ("a", "2026-03-01")
    assert [t.key for t in ledger.totals("agent", model="m2")] == [("a",)]
    for bad in ("colour", "tag", "tag:", ()):
        with pytest.raises(ValueError, match="grouping"):
            ledger.totals(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="IANA"):
        ledger.totals("day", tz="Mars/Olympus")


def test_costs_are_summed_exactly(ledger: UsageLedger) -> None:
    costs = [Decimal("0.1")] * 3 + [Decimal("1E-15"), Decimal("12.000000000001")]
    for cost in costs:
        ledger.record(rec(cost_total=cost))
    for by in ("model", "day"):  # SQLite: by records, and by 15-minute slots
        [total] = ledger.totals(by)
        assert total.cost_total == sum(costs[1:], costs[0])
        assert str(total.cost_total) == str(sum(costs[1:], costs[0]))


def test_unpriced_only_groups_cost_none(ledger: UsageLedger) -> None:
    ledger.record(rec(unpriced=True))
    ledger.record(rec(unpriced=True))
    [total] = ledger.totals("provider")
    assert (total.cost_total, total.unpriced_calls, total.calls) == (None, 2, 2)


def test_day_buckets_follow_the_zone_across_dst(ledger: UsageLedger) -> None:
    """Europe/Prague: CET (+1) until 2026-03-29 01:00 UTC, CEST (+2) after,
    and back on 2026-10-25 01:00 UTC; local midnights move with it."""
    ms = timedelta(milliseconds=1)
    times = {
        datetime(2026, 3, 28, 23, 0, tzinfo=UTC) - ms: "2026-03-28",
        datetime(2026, 3, 28, 23, 0, tzinfo=UTC): "2026-03-29",
        datetime(2026, 3, 29, 22, 0, tzinfo=UTC) - ms: "2026-03-29",  # 23 h day
        datetime(2026, 3, 29, 22, 0, tzinfo=UTC): "2026-03-30",
        datetime(2026, 10, 24, 22, 0, tzinfo=UTC): "2026-10-25",
        datetime(2026, 10, 25, 23, 0, tzinfo=UTC) - ms: "2026-10-25",  # 25 h
        datetime(2026, 10, 25, 23, 0, tzinfo=UTC): "2026-10-26",
    }
    for moment in times:
        ledger.record(rec(started_at=moment, finished_at=moment))
    days = {t.key[0]: t.calls for t in ledger.totals("day", tz="Europe/Prague")}
    expected: dict[str, int] = {}
    for day in times.values():
        expected[day] = expected.get(day, 0) + 1
    assert days == expected
    utc = ledger.totals("day", tz="UTC")
    assert [t.key[0] for t in utc][:2] == ["2026-03-28", "2026-03-29"]
    ranged = ledger.totals(
        "day", since=datetime(2026, 3, 29, tzinfo=UTC), tz="Europe/Prague"
    )
    assert sum(t.calls for t in ranged) == 5


def test_eight_threads_lose_nothing(ledger: UsageLedger) -> None:
    def write(agent: str) -> None:
        for i in range(200):
            ledger.record(rec(agent=agent, output=i))

    threads = [threading.Thread(target=write, args=(f"t{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [t.calls for t in ledger.totals("agent")] == [200] * 8
    assert len({r.id for r in ledger.records()}) == 1600


# SQLite only


def test_no_file_until_first_use(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "usage.sqlite3"
    ledger = SQLiteLedger(path)
    assert ledger.health().ok
    repr(ledger)
    assert not path.parent.exists()
    ledger.record(rec())
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    ledger.close()


def test_checkpoints_run_off_the_call_path_and_stop_on_close(tmp_path: Path) -> None:
    path = tmp_path / "u.sqlite3"
    ledger = SQLiteLedger(path)
    for i in range(1001):
        ledger.record(rec(output=i))
    thread = ledger._checkpointer
    assert thread is not None
    assert thread.is_alive()
    ledger.close()
    assert not thread.is_alive()
    assert len(ledger.records()) == 1001  # and usable after: it reopens
    ledger.close()


def _old_database(path: Path, version: int) -> None:
    """A database as palyra left it at ``version``, with one record if the
    table exists (made with that version's columns only)."""
    conn = sqlite3.connect(path)
    for step in range(1, version + 1):
        for statement in MIGRATIONS[step]:
            conn.execute(statement)
    if version >= 1:
        conn.execute(
            "INSERT INTO usage (id, started_at, started_ms, finished_at,"
            " finished_ms, tags, provider, model, input_uncached, cache_read,"
            " cache_write, output, reasoning, cost_total, cost_e12, cost_exp,"
            " unpriced, estimated, currency, latency_ms, status, attempts)"
            " VALUES ('old', ?, ?, ?, ?, '{}', 'p', 'm', 1, 0, 0, 2, 0,"
            " '0.5', 500000000000, -1, 0, 0, 'USD', 3.0, 'ok', 1)",
            (T0.isoformat(), int(T0.timestamp() * 1000)) * 2,
        )
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("version", range(SCHEMA_VERSION))
def test_every_older_schema_is_migrated(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.sqlite3"
    _old_database(path, version)
    ledger = SQLiteLedger(path)
    found = ledger.records()
    if version >= 1:
        assert [(r.id, r.output, r.cost_total, r.routing) for r in found] == [
            ("old", 2, Decimal("0.5"), None)
        ]
    new = rec(routing="r")
    ledger.record(new)
    assert new in ledger.records()
    [day] = ledger.totals("day")  # old records are in the slots too
    assert (day.calls, day.output) == (2 if version >= 1 else 1, 2 if version else 0)
    ledger.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"usage_started", "usage_provider_model", "usage_agent"} <= names


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    _old_database(path, SCHEMA_VERSION)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    ledger = SQLiteLedger(path)
    with pytest.raises(LedgerError, match="newer"):
        ledger.records()
    ledger.close()


def _plan(ledger: SQLiteLedger, **query: Any) -> str:
    """The query plan of the GROUP BY that ``totals(**query)`` runs."""
    seen: list[str] = []
    assert ledger._reader is not None
    ledger._reader.set_trace_callback(seen.append)
    ledger.totals(**query)
    ledger._reader.set_trace_callback(None)
    [grouped] = [sql for sql in seen if "GROUP BY" in sql]
    with sqlite3.connect(ledger.path) as conn:
        return " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {grouped}"))


def test_totals_use_indexes(tmp_path: Path) -> None:
    """Day totals of everything read the 15-minute slots by their key; any
    other range reads the records by the time index."""
    ledger = SQLiteLedger(tmp_path / "u.sqlite3")
    for day in range(30):
        ledger.record(rec(started_at=T0 + timedelta(days=day, minutes=day)))
    ledger.records()  # opens the reader
    since = T0 + timedelta(days=10)
    plan = _plan(ledger, by="day", since=since, tz="Europe/Prague")
    assert "SEARCH usage_slots USING INTEGER PRIMARY KEY" in plan, plan
    plan = _plan(ledger, by="day", since=since + timedelta(seconds=1))
    assert "SEARCH usage USING INDEX usage_started" in plan, plan
    plan = _plan(ledger, by=("day", "agent"), since=since)
    assert "SEARCH usage_groups USING PRIMARY KEY" in plan, plan
    plan = _plan(ledger, by="model", since=since, status="ok")
    assert "SEARCH usage_groups USING PRIMARY KEY" in plan, plan
    plan = _plan(ledger, by=("day", "session"), since=since)
    assert "SEARCH usage USING INDEX usage_started" in plan, plan
    plan = _plan(ledger, by="model", since=since + timedelta(seconds=1))
    assert "SEARCH usage USING INDEX usage_started" in plan, plan
    # Slots and records agree, to the millisecond and the Decimal digit.
    for since in (None, T0 + timedelta(days=3), T0 + timedelta(days=3, seconds=1)):
        assert ledger.totals("day", since=since) == [
            replace(t, by=("day",), key=t.key[:1])
            for t in ledger.totals(("day", "currency"), since=since)
        ]
    ledger.close()


def test_the_grouped_sums_answer_as_the_records_do(tmp_path: Path) -> None:
    """Totals by provider, model, agent, status, currency and day over whole
    slots come from usage_groups: the same figures as the records give,
    and as a memory ledger gives; a prune takes both away together."""
    sqlite, memory = SQLiteLedger(tmp_path / "g.sqlite3"), MemoryLedger()
    rng = random.Random(18)
    for i in range(400):
        made = rec(
            started_at=T0 + timedelta(minutes=rng.randrange(60 * 24 * 6)),
            model=rng.choice(["a", "b", "c"]),
            provider=rng.choice(["openai", "anthropic"]),
            agent=rng.choice([None, "x", "y"]),
            status=rng.choice(["ok", "ok", "error"]),
            input_uncached=rng.randrange(1000),
            output=rng.randrange(300),
            cost_total=None if i % 9 == 0 else Decimal(rng.randrange(10**6)) / 10**8,
            unpriced=i % 9 == 0,
        )
        sqlite.record(made)
        memory.record(made)
    day = T0.replace(hour=0)
    queries: list[dict[str, Any]] = [
        {"by": "model"},
        {"by": ("agent", "status"), "since": day + timedelta(days=1)},
        {"by": ("day", "model"), "since": day, "until": day + timedelta(days=3)},
        {"by": "provider", "model": "a", "agent": "x"},
        {"by": "currency", "status": "error", "since": day + timedelta(hours=36)},
        {"by": ("day", "agent"), "tz": "America/New_York"},
    ]
    for query in queries:
        assert sqlite.totals(**query) == memory.totals(**query), query
    cut = T0 + timedelta(days=2)
    sqlite.prune(cut, keep_totals=True)
    memory.prune(cut, keep_totals=True)
    for query in queries:
        assert sqlite.totals(**query) == memory.totals(**query), query
    sqlite.close()


def test_a_page_of_records_reads_the_time_index(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "u.sqlite3")
    ledger.record(rec())
    ledger.records()  # opens the reader
    seen: list[str] = []
    assert ledger._reader is not None
    ledger._reader.set_trace_callback(seen.append)
    ledger.records(T0, page=Page(limit=50, offset=100, newest_first=True))
    ledger._reader.set_trace_callback(None)
    [paged] = [sql for sql in seen if "LIMIT" in sql]
    with sqlite3.connect(ledger.path) as conn:
        plan = " ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {paged}"))
    assert "USING INDEX usage_started" in plan, plan
    assert "TEMP B-TREE FOR ORDER BY" not in plan, plan  # ties only, if any
    ledger.close()


def test_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path, go = tmp_path / "shared.sqlite3", tmp_path / "go"
    children = [
        subprocess.Popen(
            [*CHILD, "write", str(path), "200", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    go.touch()
    outputs = [child.communicate(timeout=30) for child in children]
    for child, (out, err) in zip(children, outputs, strict=True):
        assert (child.returncode, out.strip(), err) == (0, "done", "")
    ledger = SQLiteLedger(path)
    totals = ledger.totals("agent")
    ledger.close()
    assert [t.calls for t in totals] == [200, 200, 200]


def test_sigkill_mid_burst_loses_no_acknowledged_record(tmp_path: Path) -> None:
    path = tmp_path / "burst.sqlite3"
    child = subprocess.Popen(
        [*CHILD, "burst", str(path), "1000000"], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acknowledged = []
    for line in child.stdout:
        acknowledged.append(line.strip())
        if len(acknowledged) == 300:
            os.kill(child.pid, signal.SIGKILL)
            break
    rest = child.stdout.read()  # printed before the kill: acknowledged too
    acknowledged += rest.split()
    child.stdout.close()
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert "done" not in acknowledged
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ledger = SQLiteLedger(path)
    kept = {r.id for r in ledger.records()}
    ledger.close()
    assert set(acknowledged) <= kept


@pytest.mark.parametrize("where", ["directory", "under a file", "read-only"])
def test_an_unwritable_ledger_is_a_typed_error_and_unhealthy(
    tmp_path: Path, where: str
) -> None:
    if where == "directory":
        path = tmp_path / "is-a-dir"
        path.mkdir()
    elif where == "under a file":
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / "usage.sqlite3"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes to read-only directories")
        (tmp_path / "ro").mkdir(mode=0o500)
        path = tmp_path / "ro" / "usage.sqlite3"
    ledger = SQLiteLedger(path, timeout=0.2)
    for _ in range(2):
        with pytest.raises(LedgerError, match=str(path)):
            ledger.record(rec())
    health = ledger.health()
    assert not health.ok
    assert health.failed_writes == 2
    assert health.last_error is not None
    assert str(path) in health.last_error
    assert health.path == str(path)
    ledger.close()


def test_group_commit_fails_every_record_of_a_failed_batch(tmp_path: Path) -> None:
    """Records written at once share a transaction: when it fails, every
    writer hears of it (none is told its record is kept), and the counts add up."""
    path = tmp_path / "is-a-dir"
    path.mkdir()
    ledger = SQLiteLedger(path, timeout=0.2)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def write() -> None:
        barrier.wait()
        try:
            ledger.record(rec())
        except LedgerError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(errors) == 6
    assert ledger.health().failed_writes == 6
    ledger.close()


def test_group_commit_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "usage.sqlite3")
    barrier = threading.Barrier(8)
    written: list[str] = []

    def write() -> None:
        barrier.wait()
        for _ in range(100):
            record = rec()
            ledger.record(record)
            written.append(record.id)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(r.id for r in ledger.records()) == sorted(written)
    assert ledger.health().written == 800
    ledger.close()


def _spooled(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        spool = conn.execute("SELECT COUNT(*) FROM usage_spool").fetchone()[0]
        kept = conn.execute("SELECT COUNT(*) FROM usage").fetchone()[0]
    return spool, kept


def test_the_spool_is_moved_into_the_table_by_any_reader(tmp_path: Path) -> None:
    path = tmp_path / "u.sqlite3"
    writer = SQLiteLedger(path)
    writer.record(rec())  # opens and migrates
    writer._stopping = True  # no background moves: the spool stays as written
    writer._wake.set()
    assert writer._checkpointer is not None
    writer._checkpointer.join(5)
    for i in range(5):
        writer.record(rec(output=i))
    spool, kept = _spooled(path)
    assert spool + kept == 6
    assert spool >= 5  # committed, not yet moved
    reader = SQLiteLedger(path)  # another process's ledger, say
    assert sorted(r.output for r in reader.records()) == [0, 0, 1, 2, 3, 4]
    assert _spooled(path) == (0, 6)
    reader.close()


def test_writers_and_readers_on_one_file_never_lose_a_spooled_record(
    tmp_path: Path,
) -> None:
    path = tmp_path / "u.sqlite3"
    SQLiteLedger(path).records()  # made and migrated once
    ledgers = [SQLiteLedger(path) for _ in range(4)]
    seen: list[int] = []

    def work(ledger: SQLiteLedger, n: int) -> None:
        for i in range(150):
            ledger.record(rec(output=n * 1000 + i))
            if i % 10 == 0:
                seen.append(len(ledger.records()))  # moves the spool too

    threads = [threading.Thread(target=work, args=(ledger, n)) for n, ledger in
               enumerate(ledgers)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    outputs = sorted(r.output for r in SQLiteLedger(path).records())
    assert outputs == sorted(n * 1000 + i for n in range(4) for i in range(150))
    assert max(seen) <= 600  # never more than written, never a duplicate
    for ledger in ledgers:
        ledger.close()
    assert _spooled(path) == (0, 600)
