"""Schedules on real time zones through daylight saving time, in Europe and
America: a local time that does not exist is skipped, a repeated one fires
once (issue 14); and the real-time runners, a thread and an event loop, at
sub-second intervals, shut down cleanly."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import palyra

PRAGUE = ZoneInfo("Europe/Prague")
NEW_YORK = ZoneInfo("America/New_York")


def local(fires: list[datetime], zone: ZoneInfo) -> list[str]:
    return [f.astimezone(zone).strftime("%m-%d %H:%M %Z") for f in fires]


@pytest.mark.parametrize(
    ("zone", "spring", "autumn"),
    [
        (
            PRAGUE,
            datetime(2026, 3, 28, 12, tzinfo=UTC),
            datetime(2026, 10, 24, 12, tzinfo=UTC),
        ),
        (
            NEW_YORK,
            datetime(2026, 3, 7, 12, tzinfo=UTC),
            datetime(2026, 10, 31, 12, tzinfo=UTC),
        ),
    ],
)
def test_a_daily_job_in_the_skipped_and_the_repeated_hour(
    zone: ZoneInfo, spring: datetime, autumn: datetime
) -> None:
    s = palyra.Scheduler()
    # 02:30 does not exist on the spring night in either zone; 01:30
    # happens twice on the autumn night in both.
    s.add(lambda ctx: None, cron="30 2 * * *", tz=zone.key, id="gap")
    s.add(lambda ctx: None, cron="30 1 * * *", tz=zone.key, id="fold")
    gap = local(s.next_runs("gap", 3, after=spring), zone)
    assert [g[6:11] for g in gap] == ["02:30"] * 3
    assert len({g[:5] for g in gap}) == 3
    assert gap[1][:5] != (spring + timedelta(days=1)).strftime("%m-%d")  # skipped
    fold = s.next_runs("fold", 3, after=autumn)
    assert [f.astimezone(zone).strftime("%H:%M") for f in fold] == ["01:30"] * 3
    assert len({f.astimezone(zone).date() for f in fold}) == 3  # once a day
    # The first 01:30 of the repeated night is the earlier instant (fold=0).
    night = next(
        f for f in fold if f.astimezone(zone).dst() != fold[-1].astimezone(zone).dst()
    )
    assert night.astimezone(zone).fold == 0


def test_run_pending_through_the_autumn_night_runs_a_repeated_time_once() -> None:
    start = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 EDT; 01:00 comes twice
    s = palyra.Scheduler(clock=lambda: start)
    ran: list[datetime] = []
    s.add(
        lambda ctx: ran.append(ctx.scheduled_at),
        cron="30 1 * * *",
        tz="America/New_York",
        id="j",
    )
    for step in range(0, 4 * 60, 5):  # every five minutes until 03:00 EST
        s.run_pending(start + timedelta(minutes=step))
    assert ran == [datetime(2026, 11, 1, 5, 30, tzinfo=UTC)]  # 01:30 EDT, not 01:30 EST


def test_run_pending_through_the_spring_night_skips_the_missing_time() -> None:
    start = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # midnight: 02:00-03:00 is skipped
    s = palyra.Scheduler(clock=lambda: start)
    ran: list[datetime] = []
    s.add(
        lambda ctx: ran.append(ctx.scheduled_at),
        cron="30 2 * * *",
        tz="Europe/Prague",
        id="j",
    )
    for step in range(0, 30 * 60, 10):
        s.run_pending(start + timedelta(minutes=step))
    assert ran == [
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC)
    ]  # the next day's 02:30 CEST


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("palyra-")}


def test_the_background_thread_runs_jobs_and_stops_cleanly() -> None:
    before = _threads()
    s = palyra.Scheduler()
    sync_runs: list[int] = []
    async_runs: list[int] = []

    async def async_job(ctx: palyra.JobContext) -> None:
        await asyncio.sleep(0)
        async_runs.append(ctx.attempt)

    s.add(lambda ctx: sync_runs.append(ctx.attempt), every=0.1, id="sync")
    s.add(async_job, every=0.15, id="async")
    s.start()
    assert s.running
    deadline = time.monotonic() + 10
    while (len(sync_runs) < 4 or len(async_runs) < 3) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert s.stop(5)
    assert not s.running
    assert len(sync_runs) >= 4
    assert len(async_runs) >= 3
    assert _threads() <= before  # no thread of ours left behind
    assert {r.outcome for r in s.runs()} == {"ok"}


@pytest.mark.anyio
async def test_the_asyncio_runner_runs_jobs_and_cancels_cleanly() -> None:
    s = palyra.Scheduler()
    sync_runs: list[int] = []
    async_runs: list[int] = []

    async def async_job(ctx: palyra.JobContext) -> None:
        async_runs.append(ctx.attempt)

    s.add(lambda ctx: sync_runs.append(ctx.attempt), every=0.1, id="sync")
    s.add(async_job, every=0.1, id="async")
    runner = asyncio.ensure_future(s.run())
    deadline = time.monotonic() + 10
    while len(sync_runs) < 3 or len(async_runs) < 3:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert not s.running
    assert len(sync_runs) >= 3
    assert len(async_runs) >= 3
    assert s.stop(5)
    ours = [t for t in asyncio.all_tasks() if t.get_name().startswith("palyra-")]
    assert ours == []  # no task of ours left
    assert {r.outcome for r in s.runs()} <= {"ok", "cancelled"}
    s.start()
    with pytest.raises(palyra.SchedulerError):
        await s.run()  # driven already, by the thread
    assert s.stop(5)


def test_many_runs_record_at_once_into_the_ledger_file(tmp_path: object) -> None:
    """200 jobs due at once: 200 threads write their run records to SQLite
    together; every one is kept."""
    from pathlib import Path

    home = Path(str(tmp_path))
    start = datetime(2026, 6, 1, 12, tzinfo=UTC)
    with palyra.Palyra(home=home) as client:
        s = client.scheduler
        s.run_pending(start)
        for i in range(200):
            s.add(lambda ctx: None, id=f"j{i}", every=60)
        records = s.run_pending(start + timedelta(seconds=60), wait=30)
        assert len(records) == 200
        assert s.wait(10)
        kept = s.runs(limit=1000)
    assert len(kept) == 200
    assert {r.outcome for r in kept} == {"ok"}
    assert len({r.job_id for r in kept}) == 200


CHILD = """
import sys
from datetime import UTC, datetime, timedelta
import palyra

start = datetime(2026, 6, 1, 12, tzinfo=UTC)
with palyra.Palyra() as client:
    s = client.scheduler
    s.run_pending(start)
    for i in range(30):
        s.add(lambda ctx: None, id=f"{sys.argv[1]}-{i}", every=60)
    assert len(s.run_pending(start + timedelta(seconds=60), wait=30)) == 30
"""


def test_several_processes_share_the_run_records(tmp_path: object) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    home = Path(str(tmp_path))
    env = {**os.environ, "PALYRA_HOME": str(home)}
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, f"p{n}"], env=env)
        for n in range(3)
    ]
    assert [child.wait(60) for child in children] == [0, 0, 0]
    with palyra.Palyra(home=home) as client:
        kept = client.scheduler.runs(limit=1000)
    assert len(kept) == 90
    assert {r.job_id.split("-")[0] for r in kept} == {"p0", "p1", "p2"}
