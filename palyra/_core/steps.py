"""One call's data: the steps the pipeline yields to a driver, what the
driver answers, the call's context, and reading a response body in time.

Nothing here decides anything; `palyra._dispatch` and `palyra._pipeline` do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx

from .._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    PalyraError,
)
from .._providers.base import Target
from .._registry import ResolvedModel
from .._tokens import TokenEstimate
from .._wire import (
    Attempt,
    PalyraInfo,
)

if TYPE_CHECKING:
    from .session import StreamSession

__all__: list[str] = []

T = TypeVar("T")
Operation = Literal["chat", "embeddings", "transcription", "models", "count_tokens"]


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """What the pipeline asks a driver to send."""

    target: Target
    request: httpx.Request
    stream: bool

    @property
    def budget(self) -> float:
        """Seconds the whole attempt may take (its read timeout covers one read)."""
        return attempt_budget(self.request)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the driver got back: a response (body read unless streaming) or an
    httpx exception."""

    response: httpx.Response | None
    error: Exception | None
    latency_ms: float


@dataclass(frozen=True, slots=True)
class Sleep:
    """What the pipeline asks a driver to do between two attempts."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Prime:
    """What the pipeline asks a driver to do with an opened stream: read until
    the session holds its first chunk (`StreamSession.prime`), so that a
    failure before anything reached the caller can still be retried or failed
    over. The driver answers with an `Outcome` whose error is the failure."""

    session: StreamSession
    response: httpx.Response
    within: float | None = None  # seconds the first chunk may take, if cut


Flow = Generator[ProviderCall | Sleep | Prime, Outcome | None, T]

ERROR_BODY_LIMIT = 64 * 1024


class BodyReader:
    """Collects a response body for a driver, within the attempt's deadline.

    httpx's timeouts bound each read, not the whole body, so an upstream that
    trickles bytes could otherwise hold a call forever. Error bodies are capped:
    an HTML error page of many megabytes only needs its first lines.
    """

    __slots__ = ("_call", "_deadline", "_limit", "_parts", "_response", "_size")

    def __init__(self, call: ProviderCall, response: httpx.Response, started: float):
        self._call = call
        self._response = response
        self._deadline = started + call.budget
        self._limit = ERROR_BODY_LIMIT if response.status_code >= 300 else None
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, part: bytes) -> bool:
        """Take one raw read; True when the rest is not needed."""
        if time.perf_counter() > self._deadline:
            raise httpx.ReadTimeout(
                f"response body not complete after {self._call.budget:g}s",
                request=self._call.request,
            )
        self._parts.append(part)
        self._size += len(part)
        return self._limit is not None and self._size >= self._limit

    def response(self) -> httpx.Response:
        """The response with its (possibly capped) body in memory."""
        raw = b"".join(self._parts)
        headers = self._response.headers
        try:
            return httpx.Response(
                self._response.status_code,
                headers=headers,
                content=raw,
                request=self._call.request,
            )
        except httpx.DecodingError:
            # A capped compressed error body cannot be decoded: keep the bytes.
            plain = {k: v for k, v in headers.items() if k != "content-encoding"}
            return httpx.Response(
                self._response.status_code,
                headers=plain,
                content=raw,
                request=self._call.request,
            )


@dataclass(slots=True)
class CallContext:
    """Everything known about one call, handed to the hooks.

    ``model`` is the candidate being tried (after a failover, the one that
    served); ``requested`` is the model the caller asked for (after routing).
    """

    operation: Operation
    model: ResolvedModel
    started: float  # perf_counter(), for latency
    deadline: float | None = None  # clock() time the call must end by
    seconds: float | None = None  # the deadline, as given
    clock: Callable[[], float] = time.monotonic
    estimate: TokenEstimate | None = None
    attempts: list[Attempt] = field(default_factory=list)
    result: Any = None
    error: PalyraError | None = None  # set when the call failed
    requested: ResolvedModel | None = None

    def info(self) -> PalyraInfo:
        """The ``palyra`` field of the result."""
        requested = self.requested or self.model
        return PalyraInfo(
            provider=self.model.provider.id,
            model=self.model.id,
            upstream_model=self.model.upstream,
            requested_model=requested.id,
            attempts=self.attempts,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            token_estimate=self.estimate,
        )

    def left(self) -> float | None:
        """Seconds left before the call's deadline (None: no deadline)."""
        if self.deadline is None:
            return None
        return self.deadline - self.clock()


Hook = Callable[[CallContext], None]


def transport_error(target: Target, exc: Exception | None) -> APIError:
    """The typed error for an httpx failure before any response arrived."""
    if isinstance(exc, httpx.TimeoutException):
        return target.fail(
            APITimeoutError, f"upstream did not answer in time ({describe_error(exc)})"
        )
    detail = describe_error(exc) if exc is not None else "no response"
    return target.fail(APIConnectionError, f"could not reach upstream ({detail})")


def describe_error(exc: BaseException) -> str:
    """``Type: reason``; httpx errors sometimes keep the reason only in the cause."""
    reason = ""
    seen: BaseException | None = exc
    while seen is not None and not reason:
        reason = str(seen)
        seen = seen.__cause__ or seen.__context__
    if reason.startswith("Cancelled via cancel scope"):
        reason = ""  # anyio's wording for an async timeout: no news to the reader
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def attempt_budget(request: httpx.Request) -> float:
    """Seconds one attempt may take: the adapter puts it in the read timeout."""
    return float(request.extensions["timeout"]["read"])
