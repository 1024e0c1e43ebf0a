"""Benchmark 14: what a tick of the scheduler costs when nothing is due.

Issue 14's target: with 1,000 jobs scheduled, ``run_pending`` with nothing
due takes at most 20 us; due jobs are found from a heap, not a scan.

- Idle tick: `Scheduler.run_pending(now)` with 10, 1,000 and 10,000 jobs
  (a mix of cron expressions in three zones and intervals, every next fire
  in the future), timed over many ticks; the median of rounds.
- Baseline in the same run: the same question answered by a scan (each
  job's next fire compared with now, as a scheduler without a heap must),
  over the same jobs.
- Due tick: 1,000 interval jobs all due at once, the tick that starts them
  (their runs are threads that return at once), per job.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench._common import banner, median, table
from palyra import Scheduler

TARGET_US = 20.0
START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ZONES = ("UTC", "Europe/Prague", "America/New_York")
CRONS = ("*/5 * * * *", "0 9 * * MON-FRI", "30 2 * * *", "15 */2 * * *")


def _noop(ctx: Any) -> None:
    return None


def _scheduler(jobs: int) -> Scheduler:
    s = Scheduler(clock=lambda: START)
    for i in range(jobs):
        if i % 2:
            s.add(_noop, id=f"cron-{i}", cron=CRONS[i % 4], tz=ZONES[i % 3])
        else:
            s.add(_noop, id=f"every-{i}", every=60 + i, jitter=i % 30)
    return s


def _idle_tick_us(s: Scheduler, ticks: int) -> float:
    now = START + timedelta(seconds=1)  # before every first fire
    run = s.run_pending
    started = time.perf_counter()
    for _ in range(ticks):
        run(now)
    return (time.perf_counter() - started) / ticks * 1e6


def _scan_us(s: Scheduler, ticks: int) -> float:
    nexts = [job.next_run for job in s.list()]
    now = START + timedelta(seconds=1)
    started = time.perf_counter()
    for _ in range(ticks):
        due = [n for n in nexts if n is not None and n <= now]
        assert not due
    return (time.perf_counter() - started) / ticks * 1e6


def _due_tick_us(jobs: int) -> float:
    s = Scheduler(clock=lambda: START)
    for i in range(jobs):
        s.add(_noop, id=f"j{i}", every=60)
    started = time.perf_counter()
    records = s.run_pending(START + timedelta(seconds=60), wait=30)
    elapsed = time.perf_counter() - started
    assert len(records) == jobs, len(records)
    s.stop(10)
    return elapsed / jobs * 1e6


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the table, return the JSON section."""
    rounds, ticks = (3, 2_000) if quick else (7, 20_000)
    banner(f"cron: run_pending with nothing due, median of {rounds} rounds")
    rows = []
    figures: dict[str, dict[str, float]] = {}
    for jobs in (10, 1_000, 10_000):
        s = _scheduler(jobs)
        tick = median([_idle_tick_us(s, ticks) for _ in range(rounds)])
        scan = median([_scan_us(s, max(ticks // 10, 100)) for _ in range(rounds)])
        figures[str(jobs)] = {"tick_us": tick, "scan_us": scan}
        rows.append([f"{jobs:,} jobs", tick, scan, scan / tick])
    print(table(["jobs", "tick us", "scan us", "scan / tick"], rows))
    due = median([_due_tick_us(200 if quick else 1_000) for _ in range(3)])
    print(f"a tick starting 1,000 due jobs: {due:.1f} us per job (thread each)")
    headline = figures["1000"]["tick_us"]
    verdict = "PASS" if headline <= TARGET_US else "FAIL"
    print(
        f"1,000 jobs, idle tick: {headline:.2f} us; target <= {TARGET_US} us: {verdict}"
    )
    return {
        "idle_tick": figures,
        "due_tick_us_per_job": due,
        "target_us": TARGET_US,
        "verdict": verdict,
    }
