"""The usage ledger's figures: ``python bench/ledger.py [--records N]``.

Issue 11's targets: ``totals(by="day")`` over 100k records in at most 50 ms,
and at least 5,000 durable records per second from 8 threads. Both on a
`SQLiteLedger` in a temporary directory (on disk, WAL, ``synchronous=NORMAL``).
Part of ``bench/run.py`` (``--only ledger``).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from palyra._governance import SQLiteLedger, UsageRecord  # noqa: E402
from palyra._governance.sqlite_schema import INSERT, to_row  # noqa: E402

TOTALS_TARGET_MS = 50.0
WRITES_TARGET = 5000.0


def _record(i: int, start: datetime) -> UsageRecord:
    moment = start + timedelta(seconds=i * 26)  # 100k over about 30 days
    return UsageRecord(
        started_at=moment,
        finished_at=moment + timedelta(milliseconds=800),
        provider=random.choice(["openai", "anthropic"]),
        model=random.choice(["gpt-x", "gpt-y", "claude-z"]),
        agent=f"agent{i % 7}",
        session=f"s{i % 300}",
        input_uncached=random.randrange(2000),
        output=random.randrange(500),
        cost_total=None if i % 50 == 0 else Decimal(random.randrange(10**6)) / 10**9,
        unpriced=i % 50 == 0,
    )


def totals_by_day(path: Path, count: int, repeats: int) -> list[float]:
    """Fill ``path`` with ``count`` records (one transaction: setup only),
    then time ``totals("day")`` in a fresh ledger, ``repeats`` times."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    SQLiteLedger(path).records(until=start)  # creates and migrates
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(INSERT, (to_row(_record(i, start)) for i in range(count)))
    conn.close()
    ledger = SQLiteLedger(path)
    ledger.totals("model")  # opens the connections: not part of the figure
    times = []
    for _ in range(repeats):
        for tz in ("UTC", "Europe/Prague"):
            began = time.perf_counter()
            days = ledger.totals("day", tz=tz)
            times.append((time.perf_counter() - began) * 1000)
    assert sum(t.calls for t in days) == count
    ledger.close()
    return times


def threaded_writes(path: Path, threads: int, each: int) -> float:
    """Durable records per second from ``threads`` threads, each writing
    ``each`` records through `SQLiteLedger.record`."""
    ledger = SQLiteLedger(path)
    start = datetime.now(UTC)
    ledger.record(_record(0, start))  # open and migrate outside the timing
    records = [[_record(i, start) for i in range(each)] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def write(batch: list[UsageRecord]) -> None:
        barrier.wait()
        for rec in batch:
            ledger.record(rec)

    workers = [threading.Thread(target=write, args=(b,)) for b in records]
    for worker in workers:
        worker.start()
    barrier.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    assert len(ledger.records()) == threads * each + 1
    ledger.close()
    return threads * each / elapsed


def run(quick: bool) -> dict[str, Any]:
    """For ``bench/run.py``: measure, print, return the JSON section."""
    records, writes = (20_000, 300) if quick else (100_000, 1000)
    random.seed(11)
    print(
        f"\n== ledger: totals(by='day') over {records:,} records; durable writes"
        f" from 8 threads x {writes} records =="
    )
    workdir = Path(tempfile.mkdtemp(prefix="palyra-bench-ledger-"))
    try:
        times = sorted(totals_by_day(workdir / "q.sqlite3", records, 10))
        rate = threaded_writes(workdir / "w.sqlite3", 8, writes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    median, worst = times[len(times) // 2], times[-1]
    ok_q = "PASS" if median <= TOTALS_TARGET_MS else "FAIL"
    ok_w = "PASS" if rate >= WRITES_TARGET else "FAIL"
    print(
        f"totals(by='day') over {records:,} records: median {median:.1f} ms,"
        f" worst {worst:.1f} ms (target <= {TOTALS_TARGET_MS:.0f} ms) {ok_q}"
    )
    print(
        f"durable writes from 8 threads: {rate:,.0f} records/s"
        f" (target >= {WRITES_TARGET:,.0f}) {ok_w}"
    )
    return {
        "records": records,
        "totals_by_day_median_ms": median,
        "totals_by_day_worst_ms": worst,
        "totals_verdict": ok_q,
        "writes_per_second_8_threads": rate,
        "writes_verdict": ok_w,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the figures and whether they meet the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=1000, help="per thread")
    args = parser.parse_args(argv)
    random.seed(11)
    workdir = Path(tempfile.mkdtemp(prefix="palyra-bench-ledger-"))
    try:
        times = sorted(totals_by_day(workdir / "q.sqlite3", args.records, 10))
        median, worst = times[len(times) // 2], times[-1]
        rate = threaded_writes(workdir / "w.sqlite3", 8, args.writes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ok_q = "PASS" if median <= TOTALS_TARGET_MS else "FAIL"
    ok_w = "PASS" if rate >= WRITES_TARGET else "FAIL"
    print(
        f"totals(by='day') over {args.records} records: median {median:.1f} ms,"
        f" worst {worst:.1f} ms (target <= {TOTALS_TARGET_MS:.0f} ms) {ok_q}"
    )
    print(
        f"durable writes from 8 threads: {rate:,.0f} records/s"
        f" (target >= {WRITES_TARGET:,.0f}) {ok_w}"
    )
    return 0 if ok_q == ok_w == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
