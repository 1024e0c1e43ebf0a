"""What a job sees (`JobContext`) and what the scheduler says of a job (`Job`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import ScheduleError

__all__ = ["SCHEDULER_PRINCIPAL", "Job", "JobContext", "checked_id"]

SCHEDULER_PRINCIPAL = "system:scheduler"


@dataclass(frozen=True, slots=True)
class JobContext:
    """Given to each run of a job.

    Attributes:
        job_id: The job.
        run_id: This run (a retry is a run of its own).
        scheduled_at: The fire time the schedule gave (UTC, before jitter).
        attempt: 1, then one more per retry of the same fire.
        client: The client, bound to the job's ``agent`` and
            ``auth_profile`` with ``principal="system:scheduler"``: its calls
            are routed, budgeted and recorded as that agent's. None for a
            scheduler without a client.
        cancelled: Set when the run should stop (its ``max_runtime`` passed,
            the ``replace`` policy, the scheduler stopping). An async job is
            cancelled as well; a sync one should look at it between steps.
    """

    job_id: str
    run_id: str
    scheduled_at: datetime
    attempt: int
    client: Any
    cancelled: threading.Event


@dataclass(frozen=True, slots=True)
class Job:
    """A scheduled job as the scheduler sees it now.

    Attributes:
        id: The job's id.
        schedule: Its schedule, as given (``cron '0 9 * * *' in Europe/Prague``).
        next_run: Its next fire (jitter included); None when paused or when
            the schedule has no more.
        paused: Whether it is paused.
        running: Its runs in progress.
        misfire: ``skip`` or ``catch_up(max=N)``.
        concurrency: ``forbid``, ``queue`` or ``replace``.
        jitter: Seconds a fire may be delayed by, at most.
        retries: Retries of a failed run.
        max_runtime: Seconds a run may take, or None.
        agent: The agent its calls run as.
        auth_profile: The auth profile its calls use.
    """

    id: str
    schedule: str
    next_run: datetime | None
    paused: bool
    running: int
    misfire: str
    concurrency: str
    jitter: float
    retries: int
    max_runtime: float | None
    agent: str | None
    auth_profile: str | None


def checked_id(value: Any, derived: bool) -> str:
    """A job's id: ``value`` (or, when ``derived``, the qualified name of the
    function ``value``), 1 to 128 printable characters.

    Raises:
        ScheduleError: field ``id``.
    """
    if derived:
        value = getattr(value, "__qualname__", None) or type(value).__qualname__
    if not isinstance(value, str) or not 1 <= len(value) <= 128:
        raise ScheduleError("id", f"must be 1 to 128 characters, not {value!r}")
    if not value.isprintable() or value != value.strip():
        raise ScheduleError("id", f"must be printable, without outer spaces: {value!r}")
    return value
