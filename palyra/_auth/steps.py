"""Auth's operations, written once as flows, and their two thin edges.

Every operation of `client.auth` (connect, OAuth, refresh, revoke) and the
refresh before a call is a generator, a *flow*, that yields steps and is sent
what they gave:

- `Exchange`: one HTTP request to send through palyra's network client (the
  guard applies, redirects are not followed); answered with the response,
  body read, or the transport error thrown in.
- `Pause`: a wait between two tries.
- `Local`: blocking local work (the profile file, the keyring): called as is
  by the sync edge, in a worker thread by the async one, so an event loop is
  never blocked on a keyring or an fsync.
- `Join`: wait for another caller's refresh of the same profile (single
  flight), or for a sign-in's callback, bounded by a deadline; a task
  cancelled while it waits stops waiting at once.

`drive` and `adrive` are the only code that carries steps out; what to do
is decided by the flows, the same for sync and async callers.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import httpx

from .._exceptions import APITimeoutError

if TYPE_CHECKING:  # asyncio is loaded by whoever runs a loop: not at import
    import asyncio

__all__ = [
    "AsyncSend",
    "AuthFlow",
    "Exchange",
    "Flight",
    "Join",
    "Local",
    "Pause",
    "Send",
    "adrive",
    "drive",
]

T = TypeVar("T")


class Exchange(NamedTuple):
    """Send ``request``; ``secrets`` are kept out of any log or message, and
    ``budget`` seconds bound the whole exchange, body included."""

    request: httpx.Request
    secrets: tuple[str, ...]
    budget: float

    def __repr__(self) -> str:
        # The default repr would print the secrets (a debugger, a crash
        # reporter capturing locals).
        return (
            f"Exchange({self.request.method} {self.request.url}, budget={self.budget})"
        )


class Pause(NamedTuple):
    """Wait ``seconds`` before trying again."""

    seconds: float


class Local(NamedTuple):
    """Blocking local work: ``call()``, its result sent back."""

    call: Callable[[], Any]


class Join(NamedTuple):
    """Wait, at most ``seconds``, for ``flight`` to land; ``late`` is the
    `APITimeoutError`'s message if it does not."""

    flight: Flight
    seconds: float
    late: str = "another caller's token refresh did not finish in time"


AuthFlow = Generator[Exchange | Pause | Local | Join, Any, T]
Send = Callable[[Exchange], httpx.Response]
AsyncSend = Callable[[Exchange], Awaitable[httpx.Response]]


class Flight:
    """One refresh in progress, which every other caller that needs it joins.

    Threads wait on an event; tasks of any event loop get a future resolved
    from whichever thread lands the flight.
    """

    __slots__ = ("_done", "_lock", "_waiters", "error", "result")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.error: BaseException | None = None
        self.result: Any = None

    @property
    def landed(self) -> bool:
        """Whether the refresh has ended, well or not."""
        return self._done.is_set()

    def land(self, error: BaseException | None = None, result: Any = None) -> None:
        """End the flight (with the leader's error or result); every waiter
        wakes up."""
        with self._lock:
            self.error = error
            self.result = result
            self._done.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # its loop closed: none waits
                loop.call_soon_threadsafe(_resolve, future)

    def wait(self, seconds: float) -> bool:
        """Block this thread until the flight lands; False on timeout."""
        return self._done.wait(max(seconds, 0.0))

    async def await_landing(self, seconds: float) -> bool:
        """Wait in this task until the flight lands; False on timeout."""
        import asyncio

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (loop, future)
        with self._lock:
            if self._done.is_set():
                return True
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(future, max(seconds, 0.0))
        except TimeoutError:
            return False
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _late(step: Join) -> APITimeoutError:
    return APITimeoutError(f"{step.late} ({step.seconds:.3g} s)")


def drive(flow: AuthFlow[T], send: Send, sleep: Callable[[float], None]) -> T:
    """Carry out ``flow`` in this thread."""
    answer: Any = None
    try:
        step = next(flow)
        while True:
            try:
                if isinstance(step, Exchange):
                    answer = send(step)
                elif isinstance(step, Local):
                    answer = step.call()
                elif isinstance(step, Join):
                    if not step.flight.wait(step.seconds):
                        raise _late(step)
                    answer = None
                else:
                    sleep(step.seconds)
                    answer = None
            except BaseException as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(answer)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def adrive(
    flow: AuthFlow[T],
    send: AsyncSend,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> T:
    """Carry out ``flow`` in this task; local work goes to a worker thread."""
    import asyncio

    answer: Any = None
    try:
        step = next(flow)
        while True:
            try:
                if isinstance(step, Exchange):
                    answer = await send(step)
                elif isinstance(step, Local):
                    answer = await _finished(step.call)
                elif isinstance(step, Join):
                    if not await step.flight.await_landing(step.seconds):
                        raise _late(step)
                    answer = None
                else:
                    await (sleep or asyncio.sleep)(step.seconds)
                    answer = None
            except BaseException as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(answer)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def _finished(call: Callable[[], Any]) -> Any:
    """``call()`` in a worker thread, let finish even when the task is
    cancelled meanwhile: blocking work (a lock taken, a file or vault being
    written) cannot be stopped half-way, so the cancellation reaches the flow
    once it is done, and the flow's own clean-up sees where it stands."""
    import asyncio

    work = asyncio.ensure_future(asyncio.to_thread(call))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        if not work.cancelled():
            work.exception()  # seen: its failure, if any, gives way to the cancel
        raise
