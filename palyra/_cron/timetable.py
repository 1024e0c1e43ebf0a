"""The scheduler's pure core: which runs start, which are cancelled, which
fires are skipped, at a given time. No threads, no clock, no I/O: the edges
(`palyra._cron.scheduler`) hold a lock around it, give it the time, and carry
out the actions it returns.

Due work is found from one heap of (time, sequence, entry): a job's next
fire, a retry, a run's ``max_runtime`` deadline. Entries are never removed
from the middle; a paused, removed or rescheduled job bumps its generation
and its stale entries are dropped when they surface. So a tick with nothing
due looks at one heap entry, whatever the number of jobs.
"""

from __future__ import annotations

import heapq
import itertools
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .policies import Concurrency, Misfire, Retry, jitter_of
from .runs import Outcome, RunRecord, error_fields
from .schedules import AtSchedule, CronSchedule, EverySchedule, Schedule

__all__ = ["Cancel", "JobSpec", "Record", "Run", "RunElsewhere", "Start", "Timetable"]

# Missed cron ticks are counted one by one (croniter: ~100 us each), under
# the lock: past this many the count says "N+", and the latest ticks the
# policy runs are found walking back from now.
_MAX_COUNTED = 100


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a job is: its function, schedule and policies."""

    id: str
    func: Callable[..., Any]
    schedule: Schedule
    misfire: Misfire
    concurrency: Concurrency
    jitter: float
    retry: Retry
    max_runtime: float | None
    agent: str | None
    auth_profile: str | None
    is_async: bool


@dataclass(eq=False, slots=True)
class Run:
    """A run in progress (the edges attach how to cancel it)."""

    run_id: str
    job: JobSpec
    scheduled_at: datetime
    attempt: int
    started_at: datetime
    cancelled: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    record: RunRecord | None = None
    # Set by the runner: cancels an async run's task (None for a thread).
    cancel_task: Callable[[], None] | None = None
    # Why it was cancelled, once it was ("timeout" or "cancelled").
    cancelled_as: Outcome | None = None


_MESSAGE_KINDS = {
    "timeout": "Timeout",
    "cancelled": "Cancelled",
    "skipped": "Elsewhere",
}


class RunElsewhere(Exception):
    """What a run "raises" when another process claimed its fire (the
    scheduler's fire claims, with shared state): recorded as skipped."""


@dataclass(frozen=True, slots=True)
class Start:
    run: Run


@dataclass(frozen=True, slots=True)
class Cancel:
    run: Run
    record: RunRecord


@dataclass(frozen=True, slots=True)
class Record:
    record: RunRecord


Action = Start | Cancel | Record


@dataclass(eq=False, slots=True)
class _Job:
    spec: JobSpec
    tick: datetime | None  # the schedule's next tick (before jitter)
    paused: bool = False
    generation: int = 0
    active: dict[str, Run] = field(default_factory=dict)
    queued: tuple[datetime, int] | None = None  # the fire the queue holds
    backlog: deque[datetime] = field(default_factory=deque)  # catch-up fires
    retry_token: int = 0  # the pending retry's, 0 for none

    @property
    def busy(self) -> bool:
        return bool(self.active) or self.retry_token != 0

    def fire_at(self) -> datetime | None:
        if self.tick is None:
            return None
        return self.tick + timedelta(
            seconds=jitter_of(self.spec.id, self.tick, self.spec.jitter)
        )


class Timetable:
    """Jobs, their next fires and their runs in progress."""

    def __init__(self, secrets: Callable[[], tuple[str, ...]] = tuple) -> None:
        self._secrets = secrets  # known keys, redacted from error messages
        self._jobs: dict[str, _Job] = {}
        self._heap: list[tuple[float, int, str, str, int, Any]] = []
        self._seq = itertools.count()
        self._tokens = itertools.count(1)
        # Generations are unique across jobs: a job removed and added again
        # under its id never revives the entries of the one before.
        self._generations = itertools.count(1)

    # -- jobs ----------------------------------------------------------------

    def add(self, spec: JobSpec, now: datetime) -> None:
        """Schedule ``spec`` (its id is new) from ``now``."""
        schedule = spec.schedule
        tick = (
            schedule.first()
            if isinstance(schedule, AtSchedule)
            else schedule.next_after(now)
        )
        job = self._jobs[spec.id] = _Job(spec, tick, generation=next(self._generations))
        self._push_fire(job)

    def remove(self, job_id: str, now: datetime) -> list[Action]:
        """Forget the job; its runs in progress are cancelled."""
        job = self._jobs.pop(job_id)
        job.generation = next(self._generations)
        return [
            self._cancel(job, run, "cancelled", now)
            for run in list(job.active.values())
        ]

    def cancel_all(self, now: datetime) -> list[Action]:
        """Cancel every run in progress (the scheduler stops)."""
        return [
            self._cancel(job, run, "cancelled", now)
            for job in self._jobs.values()
            for run in list(job.active.values())
        ]

    def has(self, job_id: str) -> bool:
        return job_id in self._jobs

    def spec(self, job_id: str) -> JobSpec:
        return self._jobs[job_id].spec

    def ids(self) -> list[str]:
        return list(self._jobs)

    def state(self, job_id: str) -> tuple[datetime | None, bool, int]:
        """The job's next fire (jitter included), whether it is paused, and
        how many of its runs are in progress."""
        job = self._jobs[job_id]
        return (None if job.paused else job.fire_at()), job.paused, len(job.active)

    def trigger(self, job_id: str, now: datetime) -> list[Action]:
        """A fire of the job now, by hand: its schedule is left as it is, and
        the concurrency policy applies as to any fire."""
        actions: list[Action] = []
        self._offer(self._jobs[job_id], now, now, actions)
        return actions

    def expire(self, job_id: str, now: datetime) -> list[Action]:
        """Cancel the job's runs past their ``max_runtime`` by ``now`` (their
        heap entries go stale): for a wait that no driver's tick serves."""
        job = self._jobs.get(job_id)
        runtime = None if job is None else job.spec.max_runtime
        if job is None or runtime is None:
            return []
        actions: list[Action] = []
        for run in list(job.active.values()):
            if (now - run.started_at).total_seconds() >= runtime:
                actions.append(self._cancel(job, run, "timeout", now))
                self._after_end(job, now, actions)
        return actions

    def pause(self, job_id: str) -> None:
        job = self._jobs[job_id]
        job.paused = True
        job.generation = next(self._generations)  # its fire is dropped when it surfaces
        job.retry_token = 0
        job.queued = None
        job.backlog.clear()

    def resume(self, job_id: str, now: datetime) -> None:
        """Fire again from ``now``: what fell due while paused does not run."""
        job = self._jobs[job_id]
        if not job.paused:
            return
        job.paused = False
        job.generation = next(self._generations)
        if job.tick is not None and job.tick <= now:
            job.tick = job.spec.schedule.next_after(now)
        self._push_fire(job)

    def preview(self, job_id: str, n: int, after: datetime) -> list[datetime]:
        """The next ``n`` fire times after ``after`` (jitter included)."""
        spec = self._jobs[job_id].spec
        found: list[datetime] = []
        tick = spec.schedule.next_after(after)
        while tick is not None and len(found) < n:
            found.append(
                tick + timedelta(seconds=jitter_of(spec.id, tick, spec.jitter))
            )
            tick = spec.schedule.next_after(tick)
        return found

    def active_runs(self) -> list[Run]:
        return [run for job in self._jobs.values() for run in job.active.values()]

    # -- time ----------------------------------------------------------------

    def next_wake(self) -> float | None:
        """When something may fall due (epoch seconds), None for never."""
        while self._heap and self._stale(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def due(self, now: datetime) -> list[Action]:
        """What to do at ``now``: every entry due by then, in time order."""
        actions: list[Action] = []
        stamp = now.timestamp()
        heap = self._heap
        while heap and heap[0][0] <= stamp:
            entry = heapq.heappop(heap)
            if self._stale(entry):
                continue
            kind, job = entry[2], self._jobs[entry[3]]
            if kind == "fire":
                self._fire(job, now, actions)
            elif kind == "retry":
                job.retry_token = 0
                scheduled, attempt = entry[5]
                self._start(job, scheduled, attempt, now, actions)
            else:  # a run's max_runtime has passed
                run = job.active.get(entry[5])
                if run is not None:
                    actions.append(self._cancel(job, run, "timeout", now))
                    self._after_end(job, now, actions)
        return actions

    def ended(
        self, run: Run, error: BaseException | None, now: datetime
    ) -> list[Action]:
        """``run`` returned (``error`` None) or raised: its record, a retry
        or the next queued run. Nothing for a run already cancelled (its
        record was written when it was)."""
        job = self._jobs.get(run.job.id)
        if job is None or job.active.pop(run.run_id, None) is None:
            return []
        outcome: Outcome = "ok" if error is None else "error"
        aio = sys.modules.get("asyncio")  # loaded if a task was cancelled
        if aio is not None and isinstance(error, aio.CancelledError):
            outcome, error = "cancelled", None  # by someone else: the loop closing
        if isinstance(error, RunElsewhere):
            run.record = self._record(run, "skipped", now, None, str(error))
            actions: list[Action] = [Record(run.record)]
            self._after_end(job, now, actions)  # no retry: it ran elsewhere
            return actions
        run.record = self._record(run, outcome, now, error)
        actions = [Record(run.record)]
        delay = None if error is None else run.job.retry.delay(run.attempt)
        if delay is not None and not job.paused:
            job.retry_token = next(self._tokens)
            when = now + timedelta(seconds=delay)
            self._push(
                when, "retry", job, (run.scheduled_at, run.attempt + 1), job.retry_token
            )
        else:
            self._after_end(job, now, actions)
        return actions

    # -- inside --------------------------------------------------------------

    def _fire(self, job: _Job, now: datetime, actions: list[Action]) -> None:
        """The job's fire came: its due ticks run by the misfire policy, each
        offered to the concurrency policy; then its next fire is pushed."""
        assert job.tick is not None
        if job.tick > now:  # not due after all (cannot happen): fire later
            self._push_fire(job)
            return
        oldest = job.tick
        count, exact, latest = self._missed(job, now)
        running = min(len(latest), job.spec.misfire.runs(count))
        if count > running:
            dropped = f"{count - running}{'' if exact else '+'}"
            why = f"{dropped} missed fire(s) dropped by the {job.spec.misfire} policy"
            actions.append(Record(self._skipped(job, oldest, now, "Misfire", why)))
        fires = latest[-running:]
        job.tick = job.spec.schedule.next_after(now)
        self._push_fire(job)
        self._offer(job, fires[0], now, actions)
        job.backlog.extend(fires[1:])

    def _missed(self, job: _Job, now: datetime) -> tuple[int, bool, list[datetime]]:
        """How many ticks are due by ``now`` (and whether that count is
        exact, or a floor), and the latest of them, oldest first (as many as
        the misfire policy may run)."""
        assert job.tick is not None
        schedule, keep = job.spec.schedule, max(1, job.spec.misfire.catch_up)
        if isinstance(schedule, EverySchedule):
            step = schedule.seconds
            count = max(1, int((now - job.tick).total_seconds() // step) + 1)
            first = max(0, count - keep)
            ticks = [
                job.tick + timedelta(seconds=step * i) for i in range(first, count)
            ]
            return count, True, ticks
        ticks, tick = [job.tick], job.tick
        cap = max(keep, _MAX_COUNTED)
        while len(ticks) <= cap:
            following = schedule.next_after(tick)
            if following is None or following > now:
                return len(ticks), True, ticks[-keep:]
            ticks.append(following)
            tick = following
        if isinstance(schedule, CronSchedule):  # a long backlog: from now back
            return len(ticks), False, schedule.latest(now, keep, job.tick)
        return len(ticks), False, ticks[-keep:]

    def _offer(
        self, job: _Job, scheduled: datetime, now: datetime, actions: list[Action]
    ) -> None:
        """A fire meets the job's concurrency policy."""
        if not job.busy:
            self._start(job, scheduled, 1, now, actions)
            return
        policy = job.spec.concurrency
        if policy == "forbid":
            actions.append(
                Record(
                    self._skipped(
                        job,
                        scheduled,
                        now,
                        "ConcurrencyForbid",
                        "the previous run was still going (concurrency='forbid')",
                    )
                )
            )
        elif policy == "queue":
            if job.queued is None:
                job.queued = (scheduled, 1)
            else:
                actions.append(
                    Record(
                        self._skipped(
                            job,
                            scheduled,
                            now,
                            "QueueFull",
                            "a run was already waiting (concurrency='queue' holds one)",
                        )
                    )
                )
        else:  # replace
            job.retry_token = 0
            for run in list(job.active.values()):
                actions.append(self._cancel(job, run, "cancelled", now))
            self._start(job, scheduled, 1, now, actions)

    def _start(
        self,
        job: _Job,
        scheduled: datetime,
        attempt: int,
        now: datetime,
        actions: list[Action],
    ) -> None:
        run = Run(uuid.uuid4().hex, job.spec, scheduled, attempt, now)
        job.active[run.run_id] = run
        if job.spec.max_runtime is not None:
            deadline = now + timedelta(seconds=job.spec.max_runtime)
            self._push(deadline, "deadline", job, run.run_id, job.generation)
        actions.append(Start(run))

    def _after_end(self, job: _Job, now: datetime, actions: list[Action]) -> None:
        """A run ended: the next catch-up fire, else the queued one, starts."""
        if job.busy or job.paused:
            return
        if job.backlog:
            self._start(job, job.backlog.popleft(), 1, now, actions)
        elif job.queued is not None:
            (scheduled, attempt), job.queued = job.queued, None
            self._start(job, scheduled, attempt, now, actions)

    def _cancel(self, job: _Job, run: Run, outcome: Outcome, now: datetime) -> Cancel:
        job.active.pop(run.run_id, None)
        run.cancelled_as = outcome
        why = (
            "max_runtime passed"
            if outcome == "timeout"
            else "cancelled by the scheduler"
        )
        run.record = self._record(run, outcome, now, None, message=why)
        return Cancel(run, run.record)

    def _record(
        self,
        run: Run,
        outcome: Outcome,
        now: datetime,
        error: BaseException | None,
        message: str | None = None,
    ) -> RunRecord:
        kind, text = error_fields(error, self._secrets() if error is not None else ())
        if message is not None:
            kind, text = _MESSAGE_KINDS[outcome], message
        return RunRecord(
            run.run_id,
            run.job.id,
            run.scheduled_at,
            run.started_at,
            max(now, run.started_at),
            outcome,
            run.attempt,
            kind,
            text,
        )

    def _skipped(
        self, job: _Job, scheduled: datetime, now: datetime, kind: str, text: str
    ) -> RunRecord:
        return RunRecord(
            uuid.uuid4().hex, job.spec.id, scheduled, now, now, "skipped", 1, kind, text
        )

    def _push_fire(self, job: _Job) -> None:
        fire = job.fire_at()
        if fire is not None and not job.paused:
            self._push(fire, "fire", job, None, job.generation)

    def _push(
        self, when: datetime, kind: str, job: _Job, payload: Any, stamp: int
    ) -> None:
        entry = (when.timestamp(), next(self._seq), kind, job.spec.id, stamp, payload)
        heapq.heappush(self._heap, entry)

    def _stale(self, entry: tuple[float, int, str, str, int, Any]) -> bool:
        job = self._jobs.get(entry[3])
        if job is None:
            return True
        if entry[2] == "retry":
            return entry[4] != job.retry_token
        if entry[2] == "deadline":  # a paused job's runs still time out
            return entry[5] not in job.active
        return entry[4] != job.generation
