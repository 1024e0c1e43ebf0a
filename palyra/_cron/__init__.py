"""The cron helper: jobs on schedules, run with misfire, concurrency, jitter,
retry and runtime policies, their run records, and the built-in maintenance
jobs (health probes, credential refresh, budget alerts, ledger retention).

What it is for: `Scheduler` (``client.scheduler``), owned by a client and
driven by hand, by a thread or by an event loop. The timetable is pure; the
runner and the scheduler are its thin thread and loop edges.

May import: the leaves (``_exceptions``, ``_utils``, ``_config``) and the
standard library; croniter (here only: ``schedules``). It never imports the client or
another subsystem: the client hands it what it needs (a way to bind a job's
client, a run store, the maintenance services) as callables.
"""

from .context import SCHEDULER_PRINCIPAL, Job, JobContext
from .errors import JobNotFoundError, ScheduleError, SchedulerError
from .maintenance import HEALTH_PRINCIPAL, MaintenanceError, add_configured
from .policies import Misfire, Retry, catch_up
from .runs import KEEP_RUNS, LedgerRunStore, MemoryRunStore, RunRecord, RunStore
from .scheduler import Scheduler

__all__ = [
    "HEALTH_PRINCIPAL",
    "KEEP_RUNS",
    "SCHEDULER_PRINCIPAL",
    "Job",
    "JobContext",
    "JobNotFoundError",
    "LedgerRunStore",
    "MaintenanceError",
    "MemoryRunStore",
    "Misfire",
    "Retry",
    "RunRecord",
    "RunStore",
    "ScheduleError",
    "Scheduler",
    "SchedulerError",
    "add_configured",
    "catch_up",
]
