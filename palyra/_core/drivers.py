"""The I/O half of the drivers: turning pipeline steps into httpx calls.

`Palyra._run` and `Palyra._arun` hand each `ProviderCall` to httpx and each
`Prime` step to `prime` / `aprime` here, which read a new stream up to its first
chunk. Nothing here decides what to do with the result.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx

from .._exceptions import APIError
from .steps import Outcome, Prime, ProviderCall

__all__: list[str] = []

logger = logging.getLogger("palyra")


def outcome(
    call: ProviderCall,
    response: httpx.Response | None,
    error: Exception | None,
    started: float,
) -> Outcome:
    latency = (time.perf_counter() - started) * 1000
    if logger.isEnabledFor(logging.DEBUG):
        status = response.status_code if response is not None else type(error).__name__
        logger.debug(
            "palyra call provider=%s model=%s status=%s latency_ms=%.1f",
            call.target.model.provider.id,
            call.target.model.id,
            status,
            latency,
        )
    return Outcome(response, error, latency)


def prime(step: Prime) -> Outcome:
    """Read a new stream until its first chunk (see `Prime`)."""
    session, response = step.session, step.response
    started = time.perf_counter()
    watchdog = _Watchdog(response, step.within)
    error: Exception | None = None
    try:
        session.source = source = response.iter_bytes()
        for data in source:
            if session.prime(data):
                break
        else:
            session.source = None
            session.prime_end()
    except httpx.HTTPError as exc:
        error = session.interrupted(watchdog.explain(exc))
    except APIError as exc:
        error = exc
    except Exception as exc:  # a parser tripped on upstream data
        error = session.malformed(exc)
    finally:
        watchdog.cancel()
        if session.source is None or session.pending == []:
            session.source = None
            response.close()
    return Outcome(None, error, (time.perf_counter() - started) * 1000)


async def aprime(step: Prime) -> Outcome:
    """Async `prime`; the first chunk's deadline is an asyncio timeout."""
    import asyncio

    session, response = step.session, step.response
    started = time.perf_counter()
    error: Exception | None = None
    try:
        async with asyncio.timeout(step.within):
            session.source = source = response.aiter_bytes()
            async for data in source:
                if session.prime(data):
                    break
            else:
                session.source = None
                session.prime_end()
    except TimeoutError:
        late = httpx.ReadTimeout("no first chunk before the call's deadline")
        error = session.interrupted(late)
    except httpx.HTTPError as exc:
        error = session.interrupted(exc)
    except APIError as exc:
        error = exc
    except Exception as exc:  # a parser tripped on upstream data
        error = session.malformed(exc)
    finally:
        if session.source is None or session.pending == []:
            session.source = None
            await response.aclose()
    return Outcome(None, error, (time.perf_counter() - started) * 1000)


class _Watchdog:
    """Ends a sync read that would outlast the call's deadline.

    A blocking socket read can only be bounded by its timeout, which httpcore
    fixes for the whole body; the first chunk's tighter deadline is kept by
    shutting the socket down from a timer thread, which makes the read fail.
    """

    def __init__(self, response: httpx.Response, within: float | None) -> None:
        self.fired = False
        self._timer: threading.Timer | None = None
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if within is not None and sock is not None:
            self._timer = threading.Timer(within, self._fire, (sock,))
            self._timer.daemon = True
            self._timer.start()

    def _fire(self, sock: Any) -> None:
        import contextlib
        import socket

        self.fired = True
        with contextlib.suppress(OSError):  # already closed: nothing to stop
            sock.shutdown(socket.SHUT_RDWR)

    def explain(self, exc: httpx.HTTPError) -> httpx.HTTPError:
        """The error to report: a timeout when the watchdog caused it."""
        if self.fired:
            return httpx.ReadTimeout("no first chunk before the call's deadline")
        return exc

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


async def asyncio_sleep(seconds: float) -> None:
    import asyncio  # loaded by whoever runs the loop; see _running_loop

    await asyncio.sleep(seconds)


def running_loop() -> object:
    # asyncio is loaded by whoever runs the loop; importing it here up front
    # would cost every sync-only user import time.
    import asyncio

    return asyncio.get_running_loop()
