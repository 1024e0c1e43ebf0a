"""The pure part of a streaming call: parse, prime, finish, fail honestly.

`Stream` and `AsyncStream` (``palyra._streams``) and the drivers' prime step
(``palyra._client``) feed bytes to a `StreamSession`; it turns them into chunks,
assembles the answer, and reports the end of the stream to the call's owner.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol, TypeVar

import httpx

from .._exceptions import (
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    StreamInterruptedError,
    _CallContextError,
)
from .._providers.base import StreamParser, Target
from .._wire import (
    ChatCompletion,
    ChatCompletionChunk,
)
from .health import Admission
from .steps import CallContext, describe_error

__all__: list[str] = []

T = TypeVar("T")
E = TypeVar("E", bound=_CallContextError)


class SessionOwner(Protocol):
    """What a session reports to: the dispatcher of its call."""

    def _complete(self, ctx: CallContext, result: T) -> T: ...
    def failed_after(self, ctx: CallContext, error: E) -> E: ...
    def stream_ended(
        self, ctx: CallContext, target: Target, admission: Admission | None
    ) -> None: ...
    def stream_failed(
        self,
        ctx: CallContext,
        target: Target,
        error: APIError,
        admission: Admission | None,
    ) -> None: ...


class StreamSession:
    """The pure part of a streaming call, driven by `Stream` and `AsyncStream`.

    Before the stream is handed to the caller the driver *primes* it (reads
    until the first chunk, kept in ``pending``), so a failure up to then can be
    retried or failed over. After that (``live``) a failure raises from the
    iterator and is reported to the breaker.
    """

    __slots__ = (
        "_budget",
        "_ctx",
        "_deadline",
        "_parser",
        "_pipeline",
        "_target",
        "admission",
        "completion",
        "info",
        "json_mode",
        "live",
        "pending",
        "request_id",
        "source",
    )

    def __init__(
        self,
        pipeline: SessionOwner,
        ctx: CallContext,
        target: Target,
        parser: StreamParser,
        budget: float,
    ) -> None:
        # Keep-alive comments or empty events do not count as progress: the next
        # chunk must come within the attempt's timeout, however many bytes trickle.
        self._budget = budget
        self._deadline = time.perf_counter() + budget
        self.json_mode = False
        self.live = False
        self.pending: list[ChatCompletionChunk] = []
        self.source: Any = None  # the driver's byte iterator, kept across priming
        self.request_id: str | None = None  # of the response being read
        # The breaker admission whose report waits for the end of the stream.
        self.admission: Admission | None = None
        self._pipeline = pipeline
        self._ctx = ctx
        self._target = target
        self._parser = parser
        self.info = ctx.info()
        self.completion: ChatCompletion | None = None

    def limit_first_chunk(self, left: float | None) -> None:
        """The first chunk must also come within the call's time ``left``."""
        if left is not None:
            self._deadline = min(self._deadline, time.perf_counter() + left)

    def prime(self, data: bytes) -> bool:
        """Take one read while priming; True once a chunk is pending."""
        self.pending.extend(self.feed(data))
        return bool(self.pending)

    def prime_end(self) -> None:
        """The body ended while priming: what it completed, or the error."""
        self.pending.extend(self.flush())
        if not self.pending:
            # Raised here rather than at close(): an empty stream is a failed
            # attempt, so another attempt or candidate may still serve.
            self._parser.close()
            raise self._target.fail(
                StreamInterruptedError, "upstream ended the stream before any chunk"
            )

    def malformed(self, exc: Exception) -> APIError:
        """The typed error for a stream the parser could not make sense of."""
        return self._target.fail(
            APIResponseValidationError,
            f"upstream stream could not be parsed ({type(exc).__name__})",
            request_id=self.request_id,
        )

    def take_pending(self) -> list[ChatCompletionChunk]:
        """The chunks read while priming (once)."""
        pending, self.pending = self.pending, []
        return pending

    def feed(self, data: bytes) -> list[ChatCompletionChunk]:
        """Chunks for one network read."""
        try:
            chunks = self._parser.feed(data)
        except APIError as exc:
            raise self._failed(exc) from None
        now = time.perf_counter()
        if chunks:
            self._deadline = now + self._budget
        elif now > self._deadline:
            raise self._failed(
                self._target.fail(
                    APITimeoutError,
                    f"upstream sent no chunk for {self._budget:g}s (only keep-alives"
                    " or partial events); the answer is partial",
                )
            )
        return chunks

    def flush(self) -> list[ChatCompletionChunk]:
        """Chunks completed only by the end of the body."""
        try:
            return self._parser.flush()
        except APIError as exc:
            raise self._failed(exc) from None

    def finish(self) -> ChatCompletion:
        """End of body: assemble, stamp ``palyra`` and run the completion hooks."""
        try:
            completion = self._parser.close()
        except APIError as exc:
            raise self._failed(exc) from None
        if self.json_mode:
            try:
                check_json_answer(self._target, completion)
            except APIError as exc:
                # The model's answer, not the upstream, is at fault: no breaker.
                raise self._pipeline.failed_after(self._ctx, exc) from None
        self._report_end()
        self.completion = self._pipeline._complete(self._ctx, completion)
        assert completion.palyra is not None
        self.info = completion.palyra
        return completion

    def stopped(self) -> None:
        """The reader closed the stream early: the upstream did nothing wrong."""
        if self.completion is None:
            self._report_end()

    def _report_end(self) -> None:
        admission, self.admission = self.admission, None
        self._pipeline.stream_ended(self._ctx, self._target, admission)

    def interrupted(self, exc: Exception) -> APIError:
        """The typed error for a transport failure in the middle of the body."""
        target = self._target
        if isinstance(exc, httpx.TimeoutException):
            error = target.fail(
                APITimeoutError,
                f"upstream went silent mid-stream ({describe_error(exc)})",
            )
        else:
            error = target.fail(
                StreamInterruptedError,
                f"upstream connection broke mid-stream ({describe_error(exc)});"
                " the answer is partial",
            )
        return self._failed(error)

    def _failed(self, error: APIError) -> APIError:
        # The HTTP response that opened the stream carried the request id.
        if error.request_id is None:
            error.request_id = self.request_id
        if self.live:
            admission, self.admission = self.admission, None
            self._pipeline.stream_failed(self._ctx, self._target, error, admission)
            self.info = self._ctx.info()
        return error


def check_json_answer(target: Target, completion: ChatCompletion) -> None:
    """JSON mode: every finished text answer must parse as JSON.

    Providers without a native JSON mode are asked for JSON in the prompt; a
    model may still wrap it in a code fence, which is removed here.
    """
    for choice in completion.choices:
        content = choice.message.content
        if content is None or choice.finish_reason not in (None, "stop"):
            continue
        text = content.strip()
        if text.startswith("```"):
            text = text.strip("`").removeprefix("json").strip()
        try:
            json.loads(text)
        except ValueError:
            raise target.fail(
                APIResponseValidationError,
                f"JSON mode answer is not valid JSON: {content}",
            ) from None
        choice.message.content = text
