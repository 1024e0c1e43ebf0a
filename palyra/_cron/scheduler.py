"""`Scheduler`: jobs on schedules, driven by hand (`run_pending`), by a
background thread (`start`/`stop`) or by an event loop (`run`). The thin edge
around the pure `Timetable`: it holds the lock, reads the clock, carries out
the timetable's actions through the `Runner` and keeps the run records.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from .context import SCHEDULER_PRINCIPAL, Job, JobContext
from .errors import JobNotFoundError, ScheduleError, SchedulerError
from .policies import Concurrency, Misfire, Retry
from .running import Runner
from .runs import MemoryRunStore, RunRecord, RunStore
from .schedules import aware
from .specs import job_spec
from .timetable import Action, Cancel, JobSpec, Record, Run, Start, Timetable

__all__ = ["Bind", "Scheduler"]

logger = logging.getLogger("palyra")
F = TypeVar("F", bound=Callable[..., Any])
Bind = Callable[[str | None, str | None, str], Any]
"""Makes a job's client: takes its agent, auth profile and principal."""
_IDLE_WAIT = 60.0  # seconds the runner sleeps with nothing scheduled


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _on_loop(loop: Any) -> bool:
    """Whether ``loop`` runs on this thread (blocking here would stall it)."""
    import sys

    aio = sys.modules.get("asyncio")
    return aio is not None and aio._get_running_loop() is loop


class Scheduler:
    """Jobs on cron, interval or one-shot schedules, with misfire,
    concurrency, jitter, retry and runtime policies; owned by a client
    (``client.scheduler``), whose calls from a job run as the job's agent.

    Nothing runs until it is driven: `run_pending` by hand, `start` in a
    background thread, or ``await run()`` on an event loop. Without shared
    state, one process should drive a given set of jobs (docs/cron.md).

    Args:
        bind: Makes each run's ``ctx.client`` (the owning client gives one).
        store: Where run records go (default: memory, the newest 1000 per job).
        clock: The current time, an aware datetime (default: UTC now).
        secrets: The keys to redact from run records' error messages (the
            client's); anything shaped like a credential is redacted too.
    """

    def __init__(
        self,
        *,
        bind: Bind | None = None,
        store: RunStore | None = None,
        clock: Callable[[], datetime] | None = None,
        secrets: Callable[[], tuple[str, ...]] | None = None,
    ) -> None:
        self._bind = bind
        self._store: RunStore = store if store is not None else MemoryRunStore()
        self._clock = clock or _utcnow
        self._manual: datetime | None = None  # the last run_pending(now=)
        self._lock = threading.Lock()
        self._table = Timetable(secrets or tuple)
        self._runner = Runner(self._context, self._run_ended)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._async_wake: tuple[Any, Any] | None = None  # (loop, asyncio.Event)

    def __repr__(self) -> str:
        state = "running" if self.running else "idle"
        return f"Scheduler({len(self._table.ids())} jobs, {state})"

    def claim_fires(self, claim: Callable[[Run], bool] | None) -> None:
        """Run a fire only where ``claim(run)`` wins it (shared state)."""
        self._runner.claim = claim

    # -- jobs ----------------------------------------------------------------

    def add(
        self,
        func: Callable[..., Any],
        *,
        cron: str | None = None,
        every: timedelta | float | None = None,
        at: datetime | None = None,
        tz: str | ZoneInfo = "UTC",
        id: str | None = None,
        misfire: str | Misfire = "skip",
        concurrency: Concurrency = "forbid",
        jitter: float | timedelta = 0,
        retries: int | Retry = 0,
        max_runtime: float | timedelta | None = None,
        agent: str | None = None,
        auth_profile: str | None = None,
    ) -> Job:
        """Schedule ``func`` (sync or async; it takes a `JobContext`).

        Give exactly one of ``cron`` (a croniter expression read in ``tz``),
        ``every`` (a timedelta or seconds) and ``at`` (an aware datetime).

        Args:
            id: The job's id (default: the function's qualified name).
            misfire: ``"skip"`` (run once for the latest missed fire) or
                ``catch_up(max=N)`` (``"catch_up"``: N = 3).
            concurrency: A fire while the last run still goes: ``"forbid"``
                (skipped, recorded), ``"queue"`` (one waits) or ``"replace"``.
            jitter: Up to this many seconds added to each fire
                (deterministic per job and fire; never accumulates).
            retries: Retries of a failed run (or a `Retry`), backing off
                exponentially up to a cap.
            max_runtime: Seconds a run may take: an async run is cancelled,
                a sync one told (``ctx.cancelled``); recorded ``timeout``.
            agent: The agent the job's calls run as (``ctx.client``).
            auth_profile: The auth profile they use.

        Raises:
            ScheduleError: naming the bad argument (``field``).
            InvalidRequestError: a bad ``agent``.
        """
        spec = self._spec(
            func, cron, every, at, tz, id, misfire, concurrency, jitter,
            retries, max_runtime, agent, auth_profile,
        )  # fmt: skip
        with self._lock:
            if self._table.has(spec.id):
                raise ScheduleError(
                    "id",
                    f"a job {spec.id!r} exists already: remove it, or give another id",
                )
            self._table.add(spec, self._now())
        self._wake_up()
        return self.get(spec.id)

    def job(self, **options: Any) -> Callable[[F], F]:
        """`add` as a decorator: ``@client.scheduler.job(cron="0 9 * * *")``;
        the function is returned unchanged."""

        def schedule(func: F) -> F:
            self.add(func, **options)
            return func

        return schedule

    def remove(self, id: str) -> None:
        """Forget the job; its runs in progress are cancelled.

        Raises:
            JobNotFoundError: no such job.
        """
        with self._lock:
            self._known(id)
            actions = self._table.remove(id, self._now())
        self._apply(actions)

    def get(self, id: str) -> Job:
        """The job ``id`` as it stands.

        Raises:
            JobNotFoundError: no such job.
        """
        with self._lock:
            self._known(id)
            spec = self._table.spec(id)
            next_run, paused, running = self._table.state(id)
        return Job(
            spec.id, spec.schedule.describe(), next_run, paused, running,
            str(spec.misfire), spec.concurrency, spec.jitter, spec.retry.times,
            spec.max_runtime, spec.agent, spec.auth_profile,
        )  # fmt: skip

    def list(self) -> builtins.list[Job]:
        """Every job, in the order they were added."""
        with self._lock:
            ids = self._table.ids()
        found = []
        for job_id in ids:
            with contextlib.suppress(JobNotFoundError):  # removed meanwhile
                found.append(self.get(job_id))
        return found

    def trigger(
        self, id: str, *, wait: float | None = 30.0
    ) -> builtins.list[RunRecord]:
        """Fire the job now, once, by hand (``palyra jobs run``): its schedule
        is left as it is; its concurrency policy applies. Waits up to
        ``wait`` seconds for the run; the records of this fire.

        Raises:
            JobNotFoundError: no such job.
        """
        with self._lock:
            self._known(id)
            actions = self._table.trigger(id, self._now())
        started, records = self._apply(actions)
        self._wake_up()  # a driver learns of the run's deadline
        deadline = time.monotonic() + (wait or 0)
        for run in started:
            while not run.ended.wait(max(0.0, min(0.1, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    break
                with self._lock:  # its max_runtime, with no driver to enforce it
                    expired = self._table.expire(id, self._now())
                records.extend(self._apply(expired)[1])
        records.extend(r.record for r in started if r.ended.is_set() and r.record)
        return list({r.run_id: r for r in records}.values())

    def pause(self, id: str) -> None:
        """Stop firing the job (runs in progress go on).

        Raises:
            JobNotFoundError: no such job.
        """
        with self._lock:
            self._known(id)
            self._table.pause(id)

    def resume(self, id: str) -> None:
        """Fire the job again, from now: fires that fell due while it was
        paused do not run.

        Raises:
            JobNotFoundError: no such job.
        """
        with self._lock:
            self._known(id)
            self._table.resume(id, self._now())
        self._wake_up()

    def next_runs(
        self, id: str, n: int = 5, after: datetime | None = None
    ) -> builtins.list[datetime]:
        """The job's next ``n`` fire times (UTC, jitter included), after now
        or after ``after`` (an aware datetime).

        Raises:
            JobNotFoundError: no such job.
            ScheduleError: a naive ``after``, or ``n`` not in 1..1000.
        """
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
            raise ScheduleError("n", f"takes 1 to 1000, not {n!r}")
        start = self._now() if after is None else aware(after, "after")
        with self._lock:
            self._known(id)
            return self._table.preview(id, n, start)

    def runs(self, id: str | None = None, limit: int = 100) -> builtins.list[RunRecord]:
        """Run records, newest first: of job ``id``, else of every job.

        Raises:
            ScheduleError: ``limit`` not in 1..10000.
        """
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= 10_000
        ):
            raise ScheduleError("limit", f"takes 1 to 10000, not {limit!r}")
        return self._store.job_runs(id, limit)

    # -- driving -------------------------------------------------------------

    def run_pending(
        self, now: datetime | None = None, *, wait: float | None = 30.0
    ) -> builtins.list[RunRecord]:
        """Run what is due, by hand (a cron-driven script, a test).

        Args:
            now: The time to run at (an aware datetime); the scheduler's time
                until the next ``run_pending(now=)`` (retries, runtimes).
                Default: the clock.
            wait: Seconds to wait for the runs started here (0 or None: do
                not wait; they go on in the background).

        Returns:
            The records of this tick: fires skipped, and runs that ended.
        """
        if now is not None:
            self._manual = aware(now, "now")
        with self._lock:
            actions = self._table.due(self._now())
        return self._finish(actions, wait)

    def _finish(
        self, actions: builtins.list[Action], wait: float | None
    ) -> builtins.list[RunRecord]:
        """Carry out ``actions``, wait up to ``wait`` s for the runs they
        started; the records of those that ended, and of skipped fires."""
        started, records = self._apply(actions)
        if wait and started:
            deadline = time.monotonic() + wait
            for run in started:
                run.ended.wait(max(0.0, deadline - time.monotonic()))
        records.extend(r.record for r in started if r.ended.is_set() and r.record)
        return records

    def wait(self, timeout: float = 30.0) -> bool:
        """Wait until no run is in progress; whether none is, by ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                active = [r for r in self._table.active_runs() if self._waitable(r)]
            if not active:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            active[0].ended.wait(min(left, 0.05))

    def _waitable(self, run: Run) -> bool:
        """Whether this thread can wait for ``run``: not its own run, nor an
        async run of the loop it would block."""
        if run is self._runner.current():
            return False
        loop = self._runner.loop_of(run)
        return loop is None or not _on_loop(loop)

    @property
    def running(self) -> bool:
        """Whether a background thread or an event loop drives it."""
        thread = self._thread
        return (
            thread is not None and thread.is_alive()
        ) or self._async_wake is not None

    def start(self) -> None:
        """Drive the scheduler from a daemon thread until `stop`.

        Raises:
            SchedulerError: ``run()`` drives it already.
        """
        if self._async_wake is not None:
            raise SchedulerError("the scheduler is driven by run() on an event loop")
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._background, daemon=True, name="palyra-scheduler"
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop firing; give runs in progress most of ``timeout`` seconds to
        end, then cancel the rest (recorded ``cancelled``) and, in what is
        left of it (up to half a second), let the threads stop. Whether
        everything stopped in time; it never takes longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        grace = min(0.5, timeout / 2)  # for cancelled runs to wind down
        self._stopping.set()
        self._wake_up()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        self.wait(max(0.0, deadline - grace - time.monotonic()))
        with self._lock:
            actions = self._table.cancel_all(self._now())
        self._apply(actions)
        stopped = self._runner.shutdown(max(0.0, deadline - time.monotonic()))
        return stopped and (thread is None or not thread.is_alive())

    async def run(self) -> None:
        """Drive the scheduler on the running event loop until cancelled (or
        `stop`): async jobs run on this loop, sync ones in threads.
        Cancelling it cancels the async runs in progress.

        Raises:
            SchedulerError: it is driven already (``start`` or ``run``).
        """
        import asyncio

        if self.running:
            raise SchedulerError("the scheduler is driven already (start() or run())")
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        self._async_wake = (loop, woken)
        self._runner.loop = loop
        self._stopping.clear()
        tick: Any = None
        try:
            while not self._stopping.is_set():  # `stop` ends it too
                woken.clear()
                tick = asyncio.ensure_future(asyncio.to_thread(self._tick))
                # Shielded: cancelled, the tick in its thread still ends, and
                # the `finally` waits for it before the runner lets the loop go.
                wake_at = await asyncio.shield(tick)
                tick = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), self._sleep_for(wake_at))
        finally:
            if tick is not None:
                await asyncio.wait([tick], timeout=30.0)
            self._async_wake = None
            self._runner.loop = None
            await self._runner.cancel_tasks_of(loop)

    def _spec(self, func: Any, *given: Any) -> JobSpec:
        """The job `add` describes, every argument checked."""
        agent, auth_profile = given[-2:]
        if self._bind is not None:  # a bad agent or profile id fails now
            self._bind(agent, auth_profile, SCHEDULER_PRINCIPAL)
        return job_spec(func, given, self._now())

    def _known(self, job_id: str) -> None:
        if not self._table.has(job_id):
            raise JobNotFoundError(f"no job {job_id!r}")

    def _now(self) -> datetime:
        return self._manual if self._manual is not None else self._clock()

    def _context(self, run: Run) -> JobContext:
        spec, bind = run.job, self._bind
        who = (spec.agent, spec.auth_profile, SCHEDULER_PRINCIPAL)
        client = None if bind is None else bind(*who)
        return JobContext(
            spec.id, run.run_id, run.scheduled_at, run.attempt, client, run.cancelled
        )

    def _apply(
        self, actions: builtins.list[Action]
    ) -> tuple[builtins.list[Run], builtins.list[RunRecord]]:
        """Carry out the timetable's actions (never under the lock)."""
        started: builtins.list[Run] = []
        records: builtins.list[RunRecord] = []
        for action in actions:
            if isinstance(action, Start):
                started.append(action.run)
                self._runner.start(action.run)
            elif isinstance(action, Cancel):
                self._runner.cancel(action.run)
                self._keep(action.record)
                action.run.ended.set()
                records.append(action.record)
            elif isinstance(action, Record):
                self._keep(action.record)
                records.append(action.record)
        return started, records

    def _run_ended(self, run: Run, error: BaseException | None) -> None:
        """A run returned or raised (on its thread, or a worker thread)."""
        with self._lock:
            actions = self._table.ended(run, error, self._now())
        self._apply(actions)
        run.ended.set()
        self._wake_up()

    def _keep(self, record: RunRecord) -> None:
        try:
            self._store.record_run(record)
        except Exception as exc:  # the ledger's error names its path, no secret
            logger.warning(
                "palyra: run record of job %r not kept: %s", record.job_id, exc
            )

    def _tick(self) -> float | None:
        """Run what is due now; when something may next be (epoch seconds)."""
        with self._lock:
            actions = self._table.due(self._now())
            wake_at = self._table.next_wake()
        self._apply(actions)
        return wake_at

    def _sleep_for(self, wake_at: float | None) -> float:
        if wake_at is None:
            return _IDLE_WAIT
        return min(_IDLE_WAIT, max(0.0, wake_at - self._now().timestamp()))

    def _background(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                wake_at = self._tick()
            except Exception:  # a bug of ours: logged, and the loop goes on
                logger.exception("palyra: the scheduler's tick failed")
                wake_at = time.time() + 1.0
            self._wake.wait(self._sleep_for(wake_at))

    def _wake_up(self) -> None:
        self._wake.set()
        found = self._async_wake
        if found is not None:
            loop, woken = found
            with contextlib.suppress(RuntimeError):  # its loop is closed
                loop.call_soon_threadsafe(woken.set)
