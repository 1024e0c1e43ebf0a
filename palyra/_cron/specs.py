"""A job's description checked whole: `job_spec` turns `Scheduler.add`'s
arguments into a `JobSpec`, or raises `ScheduleError` naming the argument."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from .context import checked_id
from .errors import ScheduleError
from .policies import (
    checked_concurrency,
    checked_misfire,
    checked_retry,
    checked_seconds,
)
from .running import is_async
from .schedules import CronSchedule, EverySchedule, Schedule, make_schedule
from .timetable import JobSpec

__all__ = ["job_spec"]

MAX_JITTER = 86_400.0


def job_spec(
    func: Callable[..., Any], given: tuple[Any, ...], now: datetime
) -> JobSpec:
    """The checked job: ``given`` is `Scheduler.add`'s keyword arguments in
    their order (cron, every, at, tz, id, misfire, concurrency, jitter,
    retries, max_runtime, agent, auth_profile).

    Raises:
        ScheduleError: naming the argument at fault.
    """
    (cron, every, at, tz, id_, misfire, concurrency, jitter, retries,
     max_runtime, agent, auth_profile) = given  # fmt: skip
    if not callable(func):
        raise ScheduleError("func", f"must be a function, not {type(func).__name__}")
    schedule = make_schedule(cron, every, at, tz)
    spread = _jitter(jitter, schedule, now)
    runtime = checked_seconds(max_runtime, "max_runtime", zero=False)
    return JobSpec(
        checked_id(func if id_ is None else id_, id_ is None), func, schedule,
        checked_misfire(misfire), checked_concurrency(concurrency), spread,
        checked_retry(retries), runtime, agent, auth_profile, is_async(func),
    )  # fmt: skip


def _jitter(value: Any, schedule: Schedule, now: datetime) -> float:
    """Seconds of jitter, shorter than the schedule's gaps: a fire delayed
    past the next tick would count that tick as missed."""
    spread = checked_seconds(value, "jitter", zero=True) or 0.0
    if spread > MAX_JITTER:
        raise ScheduleError("jitter", "must be at most a day (86400 s)")
    if isinstance(schedule, EverySchedule) and spread >= schedule.seconds:
        raise ScheduleError(
            "jitter", f"must be shorter than the interval ({schedule.seconds} s)"
        )
    if isinstance(schedule, CronSchedule) and spread:
        gap = schedule.shortest_gap(now)
        if spread >= gap:
            raise ScheduleError(
                "jitter",
                f"must be shorter than the schedule's shortest gap ({gap:g} s)",
            )
    return spread
