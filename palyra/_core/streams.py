"""Streaming results: thin sync and async drivers over a `StreamSession`.

All parsing and bookkeeping is in the session; these classes only read bytes.
Leaving early (``break``, ``close()``, the ``with`` block ending) closes the
upstream response, and so does dropping a stream unread: its connection goes
back and its breaker hears that it ended. A stream that the upstream cut short
raises a typed error from the iterator: it never ends as if it were complete.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from types import TracebackType
from typing import Any, cast

import httpx

from .._wire import ChatCompletion, ChatCompletionChunk, CompletionUsage, PalyraInfo
from .drivers import running_loop
from .session import StreamSession

__all__ = ["AsyncStream", "Stream"]

logger = logging.getLogger("palyra")


class _StreamBase:
    _session: StreamSession

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


class Stream(_StreamBase):
    """An iterator of `ChatCompletionChunk`, usable as a context manager."""

    def __init__(self, session: StreamSession, response: httpx.Response) -> None:
        self._session = session
        self._response = response
        self._chunks = self._iterate()

    def __iter__(self) -> Generator[ChatCompletionChunk, None, None]:
        return self._chunks

    def __next__(self) -> ChatCompletionChunk:
        return next(self._chunks)

    def _iterate(self) -> Generator[ChatCompletionChunk, None, None]:
        failure = None
        session = self._session
        try:
            yield from session.take_pending()
            source = cast("Iterator[bytes] | None", session.source)
            if source is not None:
                for data in source:
                    yield from session.feed(data)
                yield from session.flush()
        except httpx.HTTPError as exc:
            failure = self._session.interrupted(exc)
        finally:
            self._response.close()
        if failure is not None:
            # Raised outside the except block: httpx's error holds the request,
            # credential header included, and must not ride along as __context__.
            raise failure
        self._session.finish()

    def close(self) -> None:
        """Stop reading and close the upstream response."""
        self._chunks.close()
        self._response.close()
        self._session.stopped()

    def __del__(self) -> None:
        # A stream dropped without being read or closed must not pin a pooled
        # connection for the life of the client, nor lose its health sample.
        response = getattr(self, "_response", None)
        if response is not None and not response.is_closed:
            response.close()
            _report_dropped(self._session)

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

    def __init__(self, session: StreamSession, response: httpx.Response) -> None:
        self._session = session
        self._response = response
        self._loop = running_loop()
        self._chunks = self._iterate()

    def __aiter__(self) -> AsyncGenerator[ChatCompletionChunk, None]:
        return self._chunks

    async def __anext__(self) -> ChatCompletionChunk:
        return await anext(self._chunks)

    async def _iterate(self) -> AsyncGenerator[ChatCompletionChunk, None]:
        failure = None
        session = self._session
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
            failure = self._session.interrupted(exc)
        finally:
            await self._response.aclose()
        if failure is not None:
            raise failure  # outside the except block, as in Stream
        self._session.finish()

    async def aclose(self) -> None:
        """Stop reading and close the upstream response."""
        await self._chunks.aclose()
        await self._response.aclose()
        self._session.stopped()

    def __del__(self) -> None:
        # As Stream does: a dropped stream gives its connection back (closed on
        # its own loop, which may be running in another thread, or gone) and
        # reports its end. A stream read to the end or closed has no work here.
        response = getattr(self, "_response", None)
        if response is None or response.is_closed:
            return
        _report_dropped(self._session)
        loop: Any = self._loop
        if loop.is_closed() or not loop.is_running():
            return  # its connections went (or go) with the loop
        closing = response.aclose()
        try:
            loop.call_soon_threadsafe(loop.create_task, closing)
        except RuntimeError:  # the loop closed in between
            closing.close()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _report_dropped(session: StreamSession) -> None:
    """The end report of a stream the garbage collector found: nothing can be
    raised from a finalizer, so a failing report is logged instead."""
    if sys.is_finalizing():
        return  # the interpreter is going away: nothing is left to report to
    try:
        session.stopped()
    except Exception as exc:
        logger.warning(
            "palyra: reporting a dropped stream failed (%s)", type(exc).__name__
        )
