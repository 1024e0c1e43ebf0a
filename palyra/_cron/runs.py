"""Run records: what became of each fire of each job, and where they are kept.

Records go to the ledger's database when the client has one that keeps them
(`RunStore`: the SQLite ledger's ``cron_runs`` table), else to memory; both
are bounded (the newest `KEEP_RUNS` per job). An error's message is redacted
and cut short before it is kept: a job that failed with a key in its
exception text does not write the key anywhere.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from .._utils import excerpt

__all__ = [
    "KEEP_RUNS",
    "LedgerRunStore",
    "MemoryRunStore",
    "Outcome",
    "RunRecord",
    "RunStore",
    "error_fields",
]

Outcome = Literal["ok", "error", "timeout", "skipped", "cancelled"]
KEEP_RUNS = 1000
_MESSAGE_CHARS = 500


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One fire of a job, and what became of it.

    Attributes:
        run_id: Unique per run (a retry is a run of its own).
        job_id: The job.
        scheduled_at: The fire time the schedule gave (before jitter), UTC.
        started_at: When the run started (equal to ``ended_at`` for a
            skipped fire).
        ended_at: When it ended.
        outcome: ``ok``, ``error`` (it raised), ``timeout`` (past
            ``max_runtime``), ``skipped`` (not run: a concurrency or misfire
            policy, a budget; ``error_type`` says which) or ``cancelled``
            (the ``replace`` policy or the scheduler's stop).
        attempt: 1 for the first try of a fire, then one more per retry.
        error_type: The exception's class name, or the policy that skipped.
        error_message: Its message, redacted and shortened.
    """

    run_id: str
    job_id: str
    scheduled_at: datetime
    started_at: datetime
    ended_at: datetime
    outcome: Outcome
    attempt: int = 1
    error_type: str | None = None
    error_message: str | None = None


def error_fields(
    exc: BaseException | None, secrets: tuple[str, ...] = ()
) -> tuple[str | None, str | None]:
    """A record's error type and message: shortened, with ``secrets`` (the
    client's known keys) and anything shaped like a credential redacted."""
    if exc is None:
        return None, None
    try:
        text = str(exc)
    except Exception:  # a job's exception whose __str__ itself fails
        text = "<its message could not be read>"
    return type(exc).__name__, excerpt(text, secrets, limit=_MESSAGE_CHARS)


class RunStore(Protocol):
    """Where run records are kept (the SQLite ledger is one)."""

    def record_run(self, run: RunRecord) -> None:
        """Keep ``run`` (and forget the oldest of its job past the bound)."""
        ...

    def job_runs(self, job_id: str | None, limit: int) -> list[RunRecord]:
        """The newest ``limit`` records (of ``job_id``, else of every job),
        newest first."""
        ...


class MemoryRunStore:
    """Run records in memory, the newest ``keep`` per job."""

    def __init__(self, keep: int = KEEP_RUNS) -> None:
        self._keep = keep
        self._by_job: dict[str, deque[RunRecord]] = {}
        self._lock = threading.Lock()

    def record_run(self, run: RunRecord) -> None:
        with self._lock:
            found = self._by_job.get(run.job_id)
            if found is None:
                found = self._by_job[run.job_id] = deque(maxlen=self._keep)
            found.append(run)

    def job_runs(self, job_id: str | None, limit: int) -> list[RunRecord]:
        with self._lock:
            if job_id is not None:
                chosen: list[RunRecord] = list(self._by_job.get(job_id, ()))
            else:
                chosen = [r for runs in self._by_job.values() for r in runs]
        chosen.sort(key=_newest_first)
        return chosen[:limit]

    def __repr__(self) -> str:
        return f"MemoryRunStore({sum(map(len, self._by_job.values()))} runs)"


def _newest_first(run: RunRecord) -> tuple[Any, ...]:
    return (-run.ended_at.timestamp(), -run.started_at.timestamp(), run.run_id)


class LedgerRunStore:
    """Run records in the client's ledger database when its ledger keeps
    them (``record_run_row``: the SQLite ledger), else in memory. The ledger
    is asked for on first use, never at construction.

    Args:
        ledger: Returns the client's ledger (or None when it keeps none).
        keep: Records kept per job.
    """

    def __init__(
        self, ledger: Callable[[], object | None], keep: int = KEEP_RUNS
    ) -> None:
        self._ledger = ledger
        self._keep = keep
        self._memory = MemoryRunStore(keep)

    def _database(self) -> Any:
        ledger = self._ledger()
        return ledger if hasattr(ledger, "record_run_row") else None

    def record_run(self, run: RunRecord) -> None:
        database = self._database()
        if database is None:
            self._memory.record_run(run)
            return
        times = (_ms(run.scheduled_at), _ms(run.started_at), _ms(run.ended_at))
        row = (run.run_id, run.job_id, *times, run.outcome, run.attempt,
               run.error_type, run.error_message)  # fmt: skip
        database.record_run_row(row, self._keep)

    def job_runs(self, job_id: str | None, limit: int) -> list[RunRecord]:
        database = self._database()
        if database is None:
            return self._memory.job_runs(job_id, limit)
        return [
            RunRecord(
                r[0], r[1], _at(r[2]), _at(r[3]), _at(r[4]), r[5], r[6], r[7], r[8]
            )
            for r in database.run_rows(job_id, limit)
        ]


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
