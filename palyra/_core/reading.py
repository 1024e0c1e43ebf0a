"""Reading responses for the drivers, sync and async, within the call's time.

`BodyReader` collects a whole body under the attempt's deadline (httpx bounds
each read, not the whole body) and within its size cap; `prime` and `aprime`
read a new stream up to its first chunk within the first chunk's deadline;
`outcome` is the drivers' answer to a call. Nothing here decides what to do
with a result.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any

import httpx

from .._exceptions import APIError, APIResponseValidationError
from .._providers import request_id, too_large
from .steps import Outcome, Prime, ProviderCall

__all__ = [
    "ERROR_BODY_LIMIT",
    "BodyReader",
    "aprime",
    "check_size",
    "outcome",
    "prime",
]

logger = logging.getLogger("palyra")
ERROR_BODY_LIMIT = 64 * 1024


def outcome(
    call: ProviderCall,
    response: httpx.Response | None,
    error: Exception | None,
    started: float,
) -> Outcome:
    """The driver's answer to a call, logged at DEBUG."""
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


class BodyReader:
    """Collects a response body for a driver, within the attempt's deadline
    and the body's size cap.

    httpx's timeouts bound each read, not the whole body, so an upstream that
    trickles bytes could otherwise hold a call forever. Error bodies are cut
    short: an HTML error page of many megabytes only needs its first lines.
    A success body past ``limits.max_response_bytes`` is an error, raised as
    soon as the running size passes the cap (the rest is never read).

    Success bodies are read decoded (`decoded`: the driver iterates
    ``iter_bytes``), so the cap bounds what memory holds, however well the
    upstream compressed it; error bodies are read raw, since a cut
    compressed body cannot be decoded.
    """

    __slots__ = (
        "_call",
        "_cap",
        "_deadline",
        "_limit",
        "_parts",
        "_response",
        "_size",
        "decoded",
    )

    def __init__(self, call: ProviderCall, response: httpx.Response, started: float):
        self._call = call
        self._response = response
        self._deadline = started + call.budget
        error = response.status_code >= 300
        self._limit = ERROR_BODY_LIMIT if error else None
        self._cap = call.target.limits.max_response_bytes
        self.decoded = not error
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, part: bytes) -> bool:
        """Take one read; True when the rest is not needed.

        Raises:
            ResponseTooLargeError: a success body passed its cap.
        """
        if time.perf_counter() > self._deadline:
            raise httpx.ReadTimeout(
                f"response body not complete after {self._call.budget:g}s",
                request=self._call.request,
            )
        self._size += len(part)
        if self._limit is not None:
            self._parts.append(part)
            return self._size >= self._limit
        if self._size > self._cap:
            raise _too_large(self._call, self._response)
        self._parts.append(part)
        return False

    def undecodable(self) -> APIError:
        """The error of a success body its content encoding cannot undo (read
        raw before, it failed as a body that is not JSON: not retried)."""
        encoding = self._response.headers.get("content-encoding", "none")
        return self._call.target.fail(
            APIResponseValidationError,
            f"upstream response body could not be decoded (content-encoding"
            f" {encoding})",
            request_id=request_id(self._response, self._call.target.secrets),
        )

    def response(self) -> httpx.Response:
        """The response with its (possibly cut) body in memory."""
        raw = b"".join(self._parts)
        headers = self._response.headers
        if self.decoded:
            # Decoded already: httpx must not decode it again, and the length
            # it sets is the decoded one.
            headers = _plain(headers)
        try:
            return httpx.Response(
                self._response.status_code,
                headers=headers,
                content=raw,
                request=self._call.request,
            )
        except httpx.DecodingError:
            # A cut compressed error body cannot be decoded: keep the bytes.
            return httpx.Response(
                self._response.status_code,
                headers=_plain(headers),
                content=raw,
                request=self._call.request,
            )


def _plain(headers: httpx.Headers) -> httpx.Headers:
    """``headers`` for a body that is not (or no longer) encoded."""
    plain = headers.copy()
    for name in ("content-encoding", "content-length"):
        plain.pop(name, None)
    return plain


def check_size(call: ProviderCall, response: httpx.Response) -> None:
    """Hold an in-memory success body (an in-process transport read it
    whole) to the cap a network body is read within.

    Raises:
        ResponseTooLargeError: the body is past ``limits.max_response_bytes``.
    """
    cap = call.target.limits.max_response_bytes
    if response.status_code < 300 and len(response.content) > cap:
        raise _too_large(call, response)


def _too_large(call: ProviderCall, response: httpx.Response) -> APIError:
    target = call.target
    rid = request_id(response, target.secrets)
    return too_large(target, "max_response_bytes", "response body", rid)


def prime(step: Prime) -> Outcome:
    """Read a new stream until its first chunk (see `Prime`)."""
    session, response = step.session, step.response
    started = time.perf_counter()
    watchdog = _Watchdog(response, step.within)
    error: Exception | None = None
    keep_open = False
    try:
        source = response.iter_bytes()
        for data in source:
            if session.prime(data):
                session.attach(source)
                keep_open = True
                break
        else:
            session.prime_end()
    except httpx.HTTPError as exc:
        error = session.interrupted(exc)
    except APIError as exc:
        error = exc
    except Exception as exc:  # a parser tripped on upstream data
        error = session.malformed(exc)
    finally:
        watchdog.cancel()
        if not keep_open:
            response.close()
    if error is not None and watchdog.fired:
        # The watchdog's shutdown reads as a broken connection or as the end
        # of the body: either way the deadline is what ended it.
        error = session.deadline_passed()
    return Outcome(None, error, (time.perf_counter() - started) * 1000)


async def aprime(step: Prime) -> Outcome:
    """Async `prime`; the first chunk's deadline is an asyncio timeout."""
    import asyncio

    session, response = step.session, step.response
    started = time.perf_counter()
    error: Exception | None = None
    keep_open = False
    try:
        async with asyncio.timeout(step.within):
            source = response.aiter_bytes()
            async for data in source:
                if session.prime(data):
                    session.attach(source)
                    keep_open = True
                    break
            else:
                session.prime_end()
    except TimeoutError:
        error = session.deadline_passed()
    except httpx.HTTPError as exc:
        error = session.interrupted(exc)
    except APIError as exc:
        error = exc
    except Exception as exc:  # a parser tripped on upstream data
        error = session.malformed(exc)
    finally:
        if not keep_open:
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
        self.fired = True
        with contextlib.suppress(OSError):  # already closed: nothing to stop
            sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
