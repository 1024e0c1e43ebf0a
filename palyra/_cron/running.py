"""Carrying out runs: a sync job in a daemon thread of its own, an async job
as a task on an event loop (the one `Scheduler.run` runs on, else a private
loop in a thread of its own). The edge of the scheduler that touches threads
and loops; what to run and when is the timetable's.

Runs never share the scheduler's thread: a job that hangs holds its own
thread only, and a sync job past its ``max_runtime`` is abandoned there
(told through ``ctx.cancelled``) while the scheduler goes on.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .context import JobContext
from .timetable import Run, RunElsewhere

if TYPE_CHECKING:
    import asyncio

__all__ = ["Runner", "is_async"]

logger = logging.getLogger("palyra")

Ended = Callable[[Run, BaseException | None], None]
_ELSEWHERE = "another process claimed this fire and runs it"
# The run the current thread or task carries out: a job that stops its own
# scheduler is not waited for by that stop.
_CURRENT: ContextVar[Run | None] = ContextVar("palyra_current_run", default=None)


def is_async(func: Callable[..., Any]) -> bool:
    """Whether calling ``func`` makes a coroutine to await."""
    call = getattr(func, "__call__", None)  # noqa: B004 - an object's async __call__
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)


class Runner:
    """Starts and cancels runs, and tells ``ended`` when each ends.

    Args:
        context_of: The `JobContext` of a run.
        ended: Told on the run's own thread (or its loop's, in a worker
            thread) when it returned or raised.
    """

    def __init__(self, context_of: Callable[[Run], JobContext], ended: Ended) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None  # `Scheduler.run`'s
        self._context_of = context_of
        self._ended = ended
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._private: _LoopThread | None = None
        # With shared state, another process may have claimed a fire: asked
        # on the run's own thread before the job starts (`Scheduler.claim_fires`).
        self.claim: Callable[[Run], bool] | None = None

    def start(self, run: Run) -> None:
        """Start ``run`` (returns at once)."""
        if run.job.is_async:
            self._start_task(run)
            return
        thread = threading.Thread(
            target=self._in_thread, args=(run,), daemon=True,
            name=f"palyra-job:{run.job.id}",
        )  # fmt: skip
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def cancel(self, run: Run) -> None:
        """Tell ``run`` to stop; an async one's task is cancelled."""
        run.cancelled.set()
        cancel = run.cancel_task
        if cancel is not None:
            cancel()

    def shutdown(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the threads of runs and stop
        the private loop; whether nothing was left running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads, private, self._private = list(self._threads), self._private, None
        me = threading.current_thread()  # stop() called from a job of ours
        for thread in threads:
            if thread is not me:
                thread.join(max(0.0, deadline - time.monotonic()))
        if private is not None:
            private.stop(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive() and t is not me]
        if (
            private is not None
            and private.thread.is_alive()
            and private.thread is not me
        ):
            alive.append(private.thread.name)
        if alive:
            logger.warning("palyra: scheduler runs still going after stop: %s", alive)
        return not alive

    async def cancel_tasks_of(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the runs' tasks on ``loop`` (the caller's) and let them end."""
        import asyncio

        tasks = [t for t in list(self._tasks) if t.get_loop() is loop]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

    # -- threads -------------------------------------------------------------

    def loop_of(self, run: Run) -> Any:
        """The event loop an async run is on (None for a thread's run)."""
        if not run.job.is_async:
            return None
        loop = self.loop
        if loop is None and self._private is not None:
            loop = self._private.loop
        return loop

    def current(self) -> Run | None:
        """The run this thread (or this task) is carrying out, if any."""
        return _CURRENT.get()

    def _in_thread(self, run: Run) -> None:
        _CURRENT.set(run)
        error: BaseException | None = None
        try:
            if not self._claimed(run):
                raise RunElsewhere(_ELSEWHERE)
            result = run.job.func(self._context_of(run))
            if inspect.isawaitable(result):  # a sync callable's coroutine
                import asyncio

                asyncio.run(_awaited(result))
        except BaseException as exc:  # a job's failure is its record's, never ours
            error = exc
        finally:
            try:
                self._ended(run, error)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

    def _claimed(self, run: Run) -> bool:
        """Whether this process runs ``run``'s fire (no claims: always; a
        claim that fails: yes, the scheduler works locally)."""
        claim = self.claim
        if claim is None:
            return True
        try:
            return claim(run)
        except Exception as exc:
            logger.warning(
                "palyra: job %r runs here: its fire could not be claimed (%s)",
                run.job.id,
                type(exc).__name__,
            )
            return True

    # -- tasks ---------------------------------------------------------------

    def _start_task(self, run: Run) -> None:
        loop = self.loop
        if loop is None:
            with self._lock:
                if self._private is None:
                    self._private = _LoopThread()
                loop = self._private.loop
        try:
            loop.call_soon_threadsafe(self._spawn, loop, run)
        except RuntimeError:  # the loop closed meanwhile
            self._ended(run, RuntimeError("the scheduler's event loop is closed"))

    def _spawn(self, loop: asyncio.AbstractEventLoop, run: Run) -> None:
        task = loop.create_task(self._in_task(run), name=f"palyra-job:{run.job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

        def cancel() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(task.cancel)

        run.cancel_task = cancel
        if run.cancelled.is_set():  # cancelled before it had a task
            task.cancel()

    async def _in_task(self, run: Run) -> None:
        import asyncio  # the loop's own: loaded already

        _CURRENT.set(run)  # the task's own context
        error: BaseException | None = None
        try:
            if not await asyncio.to_thread(self._claimed, run):
                raise RunElsewhere(_ELSEWHERE)
            result = run.job.func(self._context_of(run))
            if inspect.isawaitable(result):
                await result
        except BaseException as exc:  # SystemExit too: the job's, not the loop's
            error = exc
        # The record is written in a worker thread: the ledger may wait on a
        # lock, which must not stall the loop's other runs. Cancelled before
        # that thread took it (the loop is closing), it is written here.
        try:
            await asyncio.to_thread(self._ended, run, error)
        except asyncio.CancelledError:
            self._ended(run, error)  # a second call for the same run is a no-op
            raise


async def _awaited(result: Any) -> None:
    await result


class _LoopThread:
    """An event loop running in a daemon thread of its own, for async jobs
    of a scheduler driven by `run_pending` or `start`."""

    def __init__(self) -> None:
        import asyncio  # loaded with the first async job

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self._run, daemon=True, name="palyra-scheduler-loop"
        )
        self.thread.start()

    def _run(self) -> None:
        import asyncio

        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=5.0))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    def stop(self, timeout: float) -> None:
        with contextlib.suppress(RuntimeError):  # closed already
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not threading.current_thread():  # an async job's stop()
            self.thread.join(timeout)
