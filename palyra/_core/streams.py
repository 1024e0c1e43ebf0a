"""Streaming results: thin sync and async drivers over a `StreamSession`.

All parsing and bookkeeping is in the session; these classes only read bytes.
Leaving early (``break``, ``close()``, the ``with`` block ending) closes the
upstream response. A stream that the upstream cut short raises a typed error
from the iterator: it never ends as if it were complete.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from types import TracebackType

import httpx

from .._wire import ChatCompletion, ChatCompletionChunk, CompletionUsage, PalyraInfo
from .session import StreamSession

__all__ = ["AsyncStream", "Stream"]


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
            if session.source is not None:
                for data in session.source:
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
        # connection for the life of the client.
        response = getattr(self, "_response", None)
        if response is not None and not response.is_closed:
            response.close()

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
            if session.source is not None:
                async for data in session.source:
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

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
