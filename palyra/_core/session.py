"""The pure part of a streaming call: prime, parse, finish, fail honestly.

A `StreamSession` is built when a stream's response arrives, with everything
it needs. The drivers *prime* it (read until its first chunk) while a failure
can still be retried or failed over; then the dispatcher *hands it over* to
the caller with a `StreamReport`, and `Stream` / `AsyncStream` feed it bytes.
The session turns them into chunks, assembles the answer and reports the end
of the stream exactly once: finished, closed early, or broken.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol

import httpx

from .._exceptions import (
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    StreamInterruptedError,
)
from .._providers import StreamParser, Target
from .._wire import ChatCompletion, ChatCompletionChunk, CompletionUsage, PalyraInfo
from .context import CallContext
from .errors import describe_error

__all__ = ["StreamReport", "StreamSession", "check_json_answer"]


UsageEstimator = Callable[[CallContext, ChatCompletion], CompletionUsage]


class StreamReport(Protocol):
    """Where a stream handed to the caller reports how it ended (once)."""

    def ended(
        self, completion: ChatCompletion | None, usage: CompletionUsage | None
    ) -> None:
        """The stream finished (``completion``), or its reader stopped early
        (None, with the usage estimated from what was seen)."""

    def failed(
        self, error: APIError, usage: CompletionUsage | None, *, upstream_fault: bool
    ) -> None:
        """The stream broke, or its answer was unusable (not the upstream's
        fault: JSON mode)."""


class StreamSession:
    """One streaming call's state, driven by the drivers and by `Stream`.

    Args:
        ctx: The call.
        target: The candidate being read.
        parser: The dialect's stream parser.
        budget: Seconds the next chunk may take (keep-alives do not count).
        json_mode: Whether the finished answer must be JSON.
        request_id: The upstream's request id, from the response headers.
        first_within: Seconds left in the call: the first chunk must come
            within them too (None: no deadline).
        usage_for: Counts the usage of an answer whose upstream reported
            none (a finished one, or the part a cut or closed stream showed).
    """

    __slots__ = (
        "_budget",
        "_chunked",
        "_ctx",
        "_deadline",
        "_deadline_first",
        "_heard",
        "_json_mode",
        "_parser",
        "_pending",
        "_report",
        "_request_id",
        "_source",
        "_target",
        "_usage_for",
        "completion",
        "info",
    )

    def __init__(
        self,
        ctx: CallContext,
        target: Target,
        parser: StreamParser,
        *,
        budget: float,
        json_mode: bool,
        request_id: str | None,
        first_within: float | None,
        usage_for: UsageEstimator | None = None,
    ) -> None:
        self._ctx = ctx
        self._usage_for = usage_for
        self._target = target
        self._parser = parser
        self._budget = budget
        self._json_mode = json_mode
        self._request_id = request_id
        now = time.perf_counter()
        # Keep-alive comments or empty events do not count as progress: the next
        # chunk must come within the attempt's timeout, however many bytes trickle.
        self._deadline = now + budget
        self._chunked = False  # whether any chunk has arrived
        self._heard = False  # whether any byte arrived while priming
        # Whether the call's deadline, not the provider's timeout, bounds the
        # first chunk (the error says which limit passed).
        self._deadline_first = first_within is not None and first_within < budget
        if first_within is not None:
            self._deadline = min(self._deadline, now + first_within)
        self._pending: list[ChatCompletionChunk] = []
        self._source: Iterator[bytes] | AsyncIterator[bytes] | None = None
        self._report: StreamReport | None = None  # set once the caller has it
        self.completion: ChatCompletion | None = None
        self.info: PalyraInfo = ctx.info()

    # -- priming (the drivers) ---------------------------------------------

    def prime(self, data: bytes) -> bool:
        """Take one read while priming; True once a chunk is pending."""
        self._heard = True
        self._pending.extend(self.feed(data))
        return bool(self._pending)

    def prime_end(self) -> None:
        """The body ended while priming: what it completed, or the error."""
        self._pending.extend(self.flush())
        if not self._pending:
            # Raised here rather than at the end: an empty stream is a failed
            # attempt, so another attempt or candidate may still serve.
            self._parser.close()
            raise self._target.fail(
                StreamInterruptedError, "upstream ended the stream before any chunk"
            )

    def attach(self, source: Iterator[bytes] | AsyncIterator[bytes]) -> None:
        """Keep the byte iterator the stream goes on reading after priming."""
        self._source = source

    def malformed(self, exc: Exception) -> APIError:
        """The typed error for a stream the parser could not make sense of."""
        return self._target.fail(
            APIResponseValidationError,
            f"upstream stream could not be parsed ({type(exc).__name__})",
            request_id=self._request_id,
        )

    def hand_over(self, report: StreamReport) -> None:
        """The stream is the caller's now: failures are no longer retried but
        reported, and so is the end."""
        self._report = report
        self.info = self._ctx.info()

    # -- reading (Stream / AsyncStream) ------------------------------------

    @property
    def owes_report(self) -> bool:
        """Whether the caller has the stream and its end is not reported yet."""
        return self._report is not None

    @property
    def source(self) -> Iterator[bytes] | AsyncIterator[bytes] | None:
        """The bytes still to read (None: priming read the whole body)."""
        return self._source

    def take_pending(self) -> list[ChatCompletionChunk]:
        """The chunks read while priming (once)."""
        pending, self._pending = self._pending, []
        return pending

    def feed(self, data: bytes) -> list[ChatCompletionChunk]:
        """Chunks for one network read."""
        try:
            chunks = self._parser.feed(data)
        except APIError as exc:
            raise self._failed(exc) from None
        except Exception as exc:  # a parser tripped on upstream data: typed too
            raise self._failed(self.malformed(exc)) from None
        now = time.perf_counter()
        if chunks:
            self._deadline = now + self._budget
            if not self._chunked:
                self._ctx.saw_first_token()
            self._chunked = True
        elif now > self._deadline:
            raise self._failed(self._silence())
        return chunks

    def _silence(self) -> APIError:
        """The timeout of a stream that trickles keep-alives or partial events."""
        only = "only keep-alives or partial events arrived"
        if self._chunked:
            message = (
                f"upstream sent no chunk for {self._budget:g}s mid-stream ({only});"
                " the answer is partial"
            )
        elif self._deadline_first:
            message = f"no first chunk arrived; {only}"  # named by deadline_error
        else:
            message = (
                f"upstream sent no chunk for {self._budget:g}s, before the first"
                f" chunk ({only})"
            )
        return self._target.fail(APITimeoutError, message)

    def deadline_passed(self) -> APIError:
        """The error of a stream whose first chunk the call's deadline cut off
        (the drivers stop the read when it passes; `deadline_error` names the
        deadline)."""
        message = "no first chunk arrived"
        if self._heard:
            message += "; only keep-alives or partial events arrived"
        return self._failed(self._target.fail(APITimeoutError, message))

    def flush(self) -> list[ChatCompletionChunk]:
        """Chunks completed only by the end of the body."""
        try:
            return self._parser.flush()
        except APIError as exc:
            raise self._failed(exc) from None
        except Exception as exc:
            raise self._failed(self.malformed(exc)) from None

    def finish(self) -> ChatCompletion:
        """End of body: assemble, report, and return the stamped answer."""
        try:
            completion = self._parser.close()
        except APIError as exc:
            raise self._failed(exc) from None
        except Exception as exc:
            raise self._failed(self.malformed(exc)) from None
        if self._json_mode:
            try:
                check_json_answer(self._target, completion)
            except APIError as exc:
                # The model's answer, not the upstream, is at fault: no breaker.
                raise self._failed(exc, upstream_fault=False) from None
        if completion.usage is None and self._usage_for is not None:
            # The upstream ignored include_usage: counted here, and flagged.
            completion.usage = self._usage_for(self._ctx, completion)
        report, self._report = self._report, None
        if report is not None:
            report.ended(completion, completion.usage)
        self.completion = completion
        if completion.palyra is not None:
            self.info = completion.palyra
        return completion

    def stopped(self) -> None:
        """The reader closed (or dropped) the stream early: the upstream did
        nothing wrong."""
        report, self._report = self._report, None
        if report is not None:
            report.ended(None, self._usage_so_far())
            self.info = self._ctx.info()

    def interrupted(self, exc: Exception) -> APIError:
        """The typed error for a transport failure in the middle of the body."""
        target = self._target
        when = "mid-stream" if self._chunked else "before the first chunk"
        if isinstance(exc, httpx.TimeoutException):
            error = target.fail(
                APITimeoutError, f"upstream went silent {when} ({describe_error(exc)})"
            )
        else:
            partial = "; the answer is partial" if self._chunked else ""
            error = target.fail(
                StreamInterruptedError,
                f"upstream connection broke {when} ({describe_error(exc)}){partial}",
            )
        return self._failed(error)

    def _failed(self, error: APIError, *, upstream_fault: bool = True) -> APIError:
        # The HTTP response that opened the stream carried the request id.
        if error.request_id is None:
            error.request_id = self._request_id
        report, self._report = self._report, None
        if report is not None:
            usage = self._usage_so_far()
            report.failed(error, usage, upstream_fault=upstream_fault)
            self.info = self._ctx.info()
        return error

    def _usage_so_far(self) -> CompletionUsage | None:
        """The usage of a stream that ended before its end: the upstream's
        full report if one arrived, else an estimate from what was seen.

        Governance bills and records these calls too, and the upstream charged
        for the prompt and every token it sent, so None or ``message_start``'s
        few output tokens would undercount: the prompt is the upstream's count
        (else the pre-call estimate), the output the larger of the upstream's
        count so far and the seen text counted locally; flagged estimated.
        """
        parser = self._parser
        try:
            partial = parser.partial()
            reported = parser.usage
        except Exception:  # a broken parser must not hide the stream's error
            return None
        if partial.usage is not None or self._usage_for is None:
            return partial.usage if partial.usage is not None else reported
        counted = self._usage_for(self._ctx, partial)  # flags ctx.usage_estimated
        if reported is None:
            return counted
        prompt = reported.prompt_tokens or counted.prompt_tokens
        output = max(reported.completion_tokens, counted.completion_tokens)
        return reported.model_copy(
            update={
                "prompt_tokens": prompt,
                "completion_tokens": output,
                "total_tokens": prompt + output,
            }
        )


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
