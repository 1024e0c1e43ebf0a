"""Streaming results: thin sync and async readers of a `StreamSession`.

All parsing and bookkeeping is in the session; these classes only read bytes.
Leaving early (``break`` then ``close()``, the ``with`` block ending, a
cancelled task) closes the upstream response and reports a stream closed
early. A stream dropped unread or half-read gives its connection back and
reports the same, from the next call of the client (its async twin: on its
event loop), never from the garbage collector, which may run while this
thread holds any lock. A stream that the upstream cut short raises a typed
error from the iterator: it never ends as if it were complete.
"""

from __future__ import annotations

import sys
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterator,
)
from types import TracebackType
from typing import Any, Protocol, cast

import httpx

from .._wire import ChatCompletion, ChatCompletionChunk, CompletionUsage, PalyraInfo
from .drivers import Deferred, running_loop
from .session import StreamSession

__all__ = ["AsyncStream", "Stream", "StreamEnding"]


class StreamEnding(Protocol):
    """How an async stream's last report runs (a seam: the governance layer
    writes the ledger record it makes without stalling the event loop)."""

    async def run(self, report: Callable[[], object]) -> None:
        """Run ``report``; return once what it recorded is kept."""
        ...

    def soon(self, report: Callable[[], object]) -> None:
        """Run ``report``; what it recorded is kept soon after (no waiting:
        a finalizer's callback, a cancelled reader)."""
        ...


class _Inline:
    async def run(self, report: Callable[[], object]) -> None:
        report()

    def soon(self, report: Callable[[], object]) -> None:
        report()


INLINE: StreamEnding = _Inline()

# Closing tasks of dropped async streams: the loop holds its tasks weakly.
_CLOSING: set[Any] = set()


class _StreamBase:
    _session: StreamSession
    _response: httpx.Response
    _later: Deferred

    @property
    def palyra(self) -> PalyraInfo:
        """How the call was served; complete once the stream is exhausted."""
        return self._session.info

    @property
    def completion(self) -> ChatCompletion | None:
        """The whole answer the chunks add up to, once the stream has finished."""
        return self._session.completion

    @property
    def usage(self) -> CompletionUsage | None:
        """Token usage reported by the upstream, once the stream has finished."""
        completion = self._session.completion
        return completion.usage if completion is not None else None

    def _dropped(self) -> bool:
        """Whether a finalizer found work: an open response or a report owed."""
        session = getattr(self, "_session", None)
        if session is None or sys.is_finalizing():
            return False  # built halfway, or the interpreter is going away
        return session.owes_report or not self._response.is_closed


class Stream(_StreamBase):
    """An iterator of `ChatCompletionChunk`, usable as a context manager."""

    def __init__(
        self, session: StreamSession, response: httpx.Response, later: Deferred
    ) -> None:
        self._session = session
        self._response = response
        self._later = later
        # A generator of its own: it holds no reference to this object, so
        # dropping the stream finalizes it at once (no cycle for the GC).
        self._chunks = _read(session, response)

    def __iter__(self) -> Stream:
        # Itself, not its generator: ``for chunk in client.stream(...)`` then
        # holds the stream, whose finalizer would otherwise take it for one
        # dropped unread and close its response while the loop reads.
        return self

    def __next__(self) -> ChatCompletionChunk:
        return next(self._chunks)

    def close(self) -> None:
        """Stop reading and close the upstream response."""
        self._chunks.close()
        self._response.close()
        self._session.stopped()

    def __del__(self) -> None:
        if self._dropped():
            self._later(_Closing(self._session, self._response))

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncStream(_StreamBase):
    """An async iterator of `ChatCompletionChunk`, usable as an async context
    manager."""

    def __init__(
        self,
        session: StreamSession,
        response: httpx.Response,
        later: Deferred,
        ending: StreamEnding = INLINE,
    ) -> None:
        self._session = session
        self._response = response
        self._later = later
        self._ending = ending
        self._loop = running_loop()
        self._chunks = _aread(session, response, ending)

    def __aiter__(self) -> AsyncStream:
        # Itself, as `Stream.__iter__`: ``async for chunk in await
        # client.astream(...)`` kept only the generator, and the stream's
        # finalizer closed the response on the loop mid-read.
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        """Stop reading and close the upstream response."""
        await self._chunks.aclose()
        await self._response.aclose()
        await self._ending.run(self._session.stopped)

    def __del__(self) -> None:
        if not self._dropped():
            return
        session, response, loop = self._session, self._response, self._loop
        try:
            # The connection belongs to its loop, which may run in another
            # thread: close it there, and report from there.
            loop.call_soon_threadsafe(  # type: ignore[attr-defined]
                _close_on_loop, loop, session, response, self._ending
            )
        except RuntimeError:  # the loop is closed: its connections went with it
            self._later(session.stopped)

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _read(
    session: StreamSession, response: httpx.Response
) -> Generator[ChatCompletionChunk, None, None]:
    failure = None
    try:
        yield from session.take_pending()
        source = cast("Iterator[bytes] | None", session.source)
        if source is not None:
            for data in source:
                yield from session.feed(data)
            yield from session.flush()
    except httpx.HTTPError as exc:
        response.close()
        failure = session.interrupted(exc)
    except GeneratorExit:
        raise  # closed: `close()` or the finalizer closes the response
    except BaseException:
        response.close()
        session.stopped()  # interrupted (or already reported, if it failed)
        raise
    else:
        response.close()
    if failure is not None:
        # Raised outside the except block: httpx's error holds the request,
        # credential header included, and must not ride along as __context__.
        raise failure
    session.finish()


async def _aread(
    session: StreamSession, response: httpx.Response, ending: StreamEnding
) -> AsyncGenerator[ChatCompletionChunk, None]:
    failure = None
    try:
        for chunk in session.take_pending():
            yield chunk
        source = cast("AsyncIterator[bytes] | None", session.source)
        if source is not None:
            async for data in source:
                for chunk in session.feed(data):
                    yield chunk
            for chunk in session.flush():
                yield chunk
    except httpx.HTTPError as exc:
        await response.aclose()
        failure = _interrupted(session, exc, ending)
    except GeneratorExit:
        raise  # closed: `aclose()` or the finalizer closes the response
    except BaseException:
        await response.aclose()
        ending.soon(session.stopped)  # cancelled (or reported, if it failed)
        raise
    else:
        await response.aclose()
    if failure is not None:
        raise failure  # outside the except block, as in Stream
    await ending.run(session.finish)


def _interrupted(
    session: StreamSession, exc: httpx.HTTPError, ending: StreamEnding
) -> BaseException:
    found: list[BaseException] = []
    ending.soon(lambda: found.append(session.interrupted(exc)))
    return found[0]


class _Closing:
    """What a dropped sync stream leaves to the client's next call."""

    __slots__ = ("_response", "_session")

    def __init__(self, session: StreamSession, response: httpx.Response) -> None:
        self._session = session
        self._response = response

    def __call__(self) -> None:
        self._response.close()
        self._session.stopped()


def _close_on_loop(
    loop: Any, session: StreamSession, response: httpx.Response, ending: StreamEnding
) -> None:
    ending.soon(session.stopped)
    if not response.is_closed:
        task = loop.create_task(response.aclose())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)
