"""Every scheduler policy with a manual clock and `run_pending`: misfire,
concurrency, jitter, retries, max_runtime, pause and resume, and a job that
raises, hangs or returns garbage (issue 14)."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import palyra

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def at(minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def scheduler() -> palyra.Scheduler:
    return palyra.Scheduler(clock=lambda: T0)


class Calls:
    """A job function that records each context it is called with."""

    def __init__(self, fail: int = 0, block: threading.Event | None = None) -> None:
        self.contexts: list[palyra.JobContext] = []
        self.fail = fail
        self.block = block
        self.started = threading.Event()

    def __call__(self, ctx: palyra.JobContext) -> None:
        self.contexts.append(ctx)
        self.started.set()
        if self.block is not None:
            assert self.block.wait(10)
        if len(self.contexts) <= self.fail:
            raise RuntimeError(f"failure {len(self.contexts)}")

    @property
    def scheduled(self) -> list[datetime]:
        return [c.scheduled_at for c in self.contexts]


def outcomes(records: list[palyra.RunRecord]) -> list[tuple[str, str | None]]:
    return [(r.outcome, r.error_type) for r in records]


def test_an_interval_job_fires_on_its_ticks_and_only_then() -> None:
    s, job = scheduler(), Calls()
    s.add(job, every=60, id="tick")
    assert s.get("tick").next_run == at(1)
    assert s.run_pending(at(0, 59)) == []
    assert outcomes(s.run_pending(at(1))) == [("ok", None)]
    assert s.run_pending(at(1, 30)) == []
    s.run_pending(at(2))
    assert job.scheduled == [at(1), at(2)]
    assert [r.scheduled_at for r in s.runs("tick")] == [at(2), at(1)]  # newest first


def test_skip_runs_once_for_the_latest_missed_fire_and_records_the_rest() -> None:
    s, job = scheduler(), Calls()
    s.add(job, every=60, id="j")
    records = s.run_pending(at(10, 30))  # fires at 1..10 minutes were missed
    assert job.scheduled == [at(10)]
    assert outcomes(records) == [("skipped", "Misfire"), ("ok", None)]
    assert "9 missed fire(s)" in (records[0].error_message or "")
    assert s.get("j").next_run == at(11)  # past the backlog


def test_catch_up_replays_up_to_max_missed_fires_one_after_another() -> None:
    s, job = scheduler(), Calls()
    s.add(job, cron="*/5 * * * *", id="j", misfire=palyra.catch_up(max=3))
    s.run_pending(at(31))  # 12:05 ... 12:30 were due: six fires
    assert s.wait(5)
    assert job.scheduled == [at(20), at(25), at(30)]  # the latest three, in order
    skipped = [r for r in s.runs("j") if r.outcome == "skipped"]
    assert [r.error_type for r in skipped] == ["Misfire"]
    assert s.get("j").next_run == at(35)


def test_forbid_skips_and_records_a_fire_while_the_last_run_goes() -> None:
    gate = threading.Event()
    s, job = scheduler(), Calls(block=gate)
    s.add(job, every=60, id="j", concurrency="forbid")
    assert s.run_pending(at(1), wait=0) == []
    assert job.started.wait(5)
    assert outcomes(s.run_pending(at(2), wait=0)) == [("skipped", "ConcurrencyForbid")]
    gate.set()
    assert s.wait(5)
    assert job.scheduled == [at(1)]


def test_queue_holds_one_fire_and_skips_the_next() -> None:
    gate = threading.Event()
    s, job = scheduler(), Calls(block=gate)
    s.add(job, every=60, id="j", concurrency="queue")
    s.run_pending(at(1), wait=0)
    assert job.started.wait(5)
    assert s.run_pending(at(2), wait=0) == []  # waits
    assert outcomes(s.run_pending(at(3), wait=0)) == [("skipped", "QueueFull")]
    gate.set()
    assert s.wait(5)
    assert job.scheduled == [at(1), at(2)]  # the queued one ran once the first ended


def test_replace_cancels_the_running_one_then_starts_the_new_one() -> None:
    seen: list[str] = []
    started = threading.Event()

    async def job(ctx: palyra.JobContext) -> None:
        seen.append(f"start {ctx.scheduled_at:%M}")
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append(f"cancelled {ctx.scheduled_at:%M}")
            raise

    s = scheduler()
    s.add(job, every=60, id="j", concurrency="replace")
    s.run_pending(at(1), wait=0)
    assert started.wait(5)
    records = s.run_pending(at(2), wait=0)
    assert outcomes(records) == [("cancelled", "Cancelled")]
    for _ in range(200):
        if len(seen) == 3:
            break
        threading.Event().wait(0.01)
    assert seen == ["start 01", "cancelled 01", "start 02"]
    s.remove("j")  # cancels the second: nothing waits its 30 s
    assert s.stop(2)
    assert [r.outcome for r in s.runs("j")][-1] == "cancelled"


def test_jitter_is_deterministic_bounded_and_never_accumulates() -> None:
    a, b = scheduler(), scheduler()
    for s in (a, b):
        s.add(Calls(), every=600, id="spread", jitter=120)
    fires = a.next_runs("spread", 50)
    assert fires == b.next_runs("spread", 50)  # the same in every process
    ticks = [at(10 * (i + 1)) for i in range(50)]
    delays = [(f - t).total_seconds() for f, t in zip(fires, ticks, strict=True)]
    assert all(0 <= d <= 120 for d in delays)  # each fire stays near its tick
    assert len(set(delays)) > 40  # and each has its own
    other = scheduler()
    other.add(Calls(), every=600, id="another", jitter=120)
    assert other.next_runs("another", 5) != fires[:5]  # per job id
    with pytest.raises(palyra.ScheduleError) as caught:
        a.add(Calls(), every=60, id="x", jitter=60)
    assert caught.value.field == "jitter"


def test_a_jittered_job_runs_at_its_jittered_time() -> None:
    s, job = scheduler(), Calls()
    s.add(job, every=600, id="j", jitter=300)
    fire = s.get("j").next_run
    assert fire is not None
    assert at(10) <= fire <= at(15)
    assert s.run_pending(fire - timedelta(seconds=0.5)) == []
    s.run_pending(fire)
    assert job.scheduled == [at(10)]  # scheduled_at is the tick, not the jittered time


def test_retries_back_off_exponentially_up_to_the_cap() -> None:
    s, job = scheduler(), Calls(fail=4)
    s.add(job, every=3600, id="j", retries=palyra.Retry(times=4, base=10, cap=30))
    first = s.run_pending(at(60))
    assert outcomes(first) == [("error", "RuntimeError")]
    assert first[0].error_message == "failure 1"
    # Attempt 2 comes 10 s after the failure, 3 after 20 s more, 4 and 5 after 30.
    assert s.run_pending(at(60, 9.9)) == []
    for when in (at(60, 10), at(60, 30), at(60, 60), at(60, 90)):
        s.run_pending(when)
    assert [c.attempt for c in job.contexts] == [1, 2, 3, 4, 5]
    assert {c.scheduled_at for c in job.contexts} == {at(60)}
    assert s.runs("j")[0].outcome == "ok"
    assert s.run_pending(at(60, 200)) == []  # nothing more to retry


def test_max_runtime_cancels_an_async_run_and_records_timeout() -> None:
    cancelled, started = threading.Event(), threading.Event()

    async def slow(ctx: palyra.JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    s = scheduler()
    s.add(slow, every=3600, id="slow", max_runtime=5)
    s.run_pending(at(60), wait=0)
    assert started.wait(5)
    assert s.run_pending(at(60, 4)) == []
    assert outcomes(s.run_pending(at(60, 5))) == [("timeout", "Timeout")]
    assert cancelled.wait(5)
    assert s.stop(5)
    assert [r.outcome for r in s.runs("slow")] == ["timeout"]


def test_max_runtime_flags_a_sync_run_and_the_scheduler_goes_on() -> None:
    noticed = threading.Event()

    def stubborn(ctx: palyra.JobContext) -> None:
        if ctx.attempt == 1 and ctx.scheduled_at == at(60):
            assert ctx.cancelled.wait(10)  # told, cooperatively
            noticed.set()

    s = scheduler()
    s.add(stubborn, every=3600, id="j", max_runtime=5, concurrency="forbid")
    s.run_pending(at(60), wait=0)
    assert outcomes(s.run_pending(at(60, 5))) == [("timeout", "Timeout")]
    assert noticed.wait(5)
    s.run_pending(at(120))  # the abandoned run does not block the next fire
    assert s.wait(5)
    assert [r.outcome for r in s.runs("j")] == ["ok", "timeout"]


def test_pause_and_resume() -> None:
    s, job = scheduler(), Calls()
    s.add(job, every=60, id="j")
    s.pause("j")
    assert s.get("j").paused
    assert s.get("j").next_run is None
    assert s.run_pending(at(5)) == []
    s.resume("j")  # from now: what fell due while paused does not run
    assert s.get("j").next_run == at(6)
    assert s.run_pending(at(5, 30)) == []
    s.run_pending(at(6))
    assert job.scheduled == [at(6)]


def test_a_job_that_raises_hangs_or_returns_garbage_leaves_the_others_on_time() -> None:
    hang = threading.Event()

    class Garbage:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    def raises(ctx: palyra.JobContext) -> None:
        raise KeyError("sk-live-0123456789abcdefghij")  # a secret in the message

    s, steady = scheduler(), Calls()
    s.add(raises, every=60, id="raises")
    s.add(lambda ctx: hang.wait(30), every=60, id="hangs")
    s.add(lambda ctx: Garbage(), every=60, id="garbage")
    s.add(steady, every=60, id="steady")
    for minute in (1, 2, 3):
        s.run_pending(at(minute), wait=0.5)
    assert steady.scheduled == [at(1), at(2), at(3)]
    errors = s.runs("raises")
    assert [r.outcome for r in errors] == ["error"] * 3
    assert "sk-live" not in (errors[0].error_message or "")
    assert [r.outcome for r in s.runs("garbage")] == ["ok"] * 3
    assert [r.error_type for r in s.runs("hangs")] == ["ConcurrencyForbid"] * 2
    hang.set()
    assert s.stop(5)


def test_add_names_the_bad_argument() -> None:
    s = scheduler()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"cron": "@fortnightly"}, "cron"),
        ({"cron": "0 0 30 2 *"}, "cron"),  # 30 February: never
        ({"cron": "0 9 * * *", "tz": "Mars/Olympus"}, "tz"),
        ({"at": datetime(2026, 7, 1, 9, 0)}, "at"),  # noqa: DTZ001 - naive, refused
        ({"every": 0}, "every"),
        ({"every": -5}, "every"),
        ({}, "cron"),
        ({"cron": "* * * * *", "every": 5}, "cron"),
        ({"every": 60, "misfire": "later"}, "misfire"),
        ({"every": 60, "concurrency": "parallel"}, "concurrency"),
        ({"every": 60, "retries": -1}, "retries"),
        ({"every": 60, "max_runtime": 0}, "max_runtime"),
        ({"every": 60, "jitter": -1}, "jitter"),
        ({"every": 60, "id": ""}, "id"),
    ]
    for options, field in cases:
        with pytest.raises(palyra.ScheduleError) as caught:
            s.add(Calls(), **options)
        assert caught.value.field == field, options
        assert str(caught.value).startswith(f"{field}: ")
    with pytest.raises(palyra.ScheduleError) as caught:
        palyra.catch_up(max=0)
    assert caught.value.field == "misfire"
    s.add(Calls(), every=60, id="once")
    with pytest.raises(palyra.ScheduleError, match="exists already"):
        s.add(Calls(), every=60, id="once")
    with pytest.raises(palyra.JobNotFoundError):
        s.remove("nobody")
    assert s.list()[0].id == "once"


def test_a_one_shot_job_runs_once_even_when_due_already() -> None:
    s, job = scheduler(), Calls()
    s.add(job, at=at(-5), id="late")  # past when added: runs at the next tick
    s.run_pending(at(0))
    s.run_pending(at(10))
    assert job.scheduled == [at(-5)]
    assert s.get("late").next_run is None
    assert s.next_runs("late", 3) == []


def test_the_decorator_form_and_cron_forms() -> None:
    s = scheduler()

    @s.job(cron="0 9 * * MON-FRI", tz="Europe/Prague")
    def weekdays(ctx: palyra.JobContext) -> None: ...

    assert s.get(weekdays.__qualname__).schedule.startswith("cron '0 9 * * MON-FRI'")
    s.add(Calls(), cron="@hourly", id="hourly")
    s.add(Calls(), cron="*/10 * * * * 30", id="seconds")  # 6th field: seconds
    assert s.next_runs("hourly", 2) == [at(60), at(120)]
    assert s.next_runs("seconds", 2) == [at(0, 30), at(10, 30)]
    friday = datetime(2026, 6, 5, 9, 30, tzinfo=UTC)
    monday_9_prague = datetime(2026, 6, 8, 7, 0, tzinfo=UTC)
    assert s.next_runs(weekdays.__qualname__, 1, after=friday) == [monday_9_prague]
