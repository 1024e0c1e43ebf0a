"""The request pipeline, written once as sans-I/O generators.

Each operation is a generator that resolves the model, checks what the request
needs, estimates tokens, runs the *before dispatch* hooks (routing, budget
reservation), then **yields** a `ProviderCall` and **receives** an `Outcome`.
It turns the outcome into a result or a typed error, and runs the *after
completion* hooks (settlement, ledger). `Palyra.chat` and `Palyra.achat` only
move bytes; neither can drift from the other because neither decides anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx

from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    ContextWindowExceededError,
    NoProviderAvailableError,
    StreamInterruptedError,
    UnsupportedCapabilityError,
)
from ._health import HealthTracker
from ._providers.base import ProviderAdapter, StreamParser, Target, request_id
from ._registry import Registry, ResolvedModel
from ._request import ChatRequest, EmbeddingsRequest, Needs, TranscriptionRequest
from ._tokens import TokenCounter, TokenEstimate
from ._wire import (
    Attempt,
    ChatCompletion,
    ChatCompletionChunk,
    EmbeddingResponse,
    PalyraInfo,
    ProviderModel,
    TokenCount,
    Transcription,
)

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


Flow = Generator[ProviderCall | Sleep, Outcome | None, T]

ERROR_BODY_LIMIT = 64 * 1024
_MAX_PAGES = 100  # a model list longer than this is an upstream bug


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
    """Everything known about one call, handed to the hooks."""

    operation: Operation
    model: ResolvedModel
    started: float
    estimate: TokenEstimate | None = None
    attempts: list[Attempt] = field(default_factory=list)
    result: Any = None

    def info(self) -> PalyraInfo:
        """The ``palyra`` field of the result."""
        return PalyraInfo(
            provider=self.model.provider.id,
            model=self.model.id,
            upstream_model=self.model.upstream,
            attempts=self.attempts,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            token_estimate=self.estimate,
        )


Hook = Callable[[CallContext], None]


class Pipeline:
    """The decisions of every call, shared by the sync and async drivers.

    Args:
        registry: The resolved providers and models.
        counter: Returns the token counter (created lazily by the client).
        adapter: Returns the adapter for a provider kind.
        credential: Returns the credential for a provider (or None).
    """

    def __init__(
        self,
        registry: Registry,
        counter: Callable[[], TokenCounter],
        adapter: Callable[[ResolvedModel], ProviderAdapter],
        credential: Callable[[ResolvedModel], str | None],
    ) -> None:
        self.registry = registry
        self._counter = counter
        self._adapter = adapter
        self._credential = credential
        # Seams: routing and budget reservation go before dispatch; settlement
        # and the usage ledger after completion.
        self._policies: dict[str, Any] = {}  # provider id -> RetryPolicy
        self.health = HealthTracker()
        self.before_dispatch: list[Hook] = []
        self.after_completion: list[Hook] = []

    def chat(
        self, model_name: str | None, request: ChatRequest
    ) -> Flow[ChatCompletion]:
        """Flow of a non-streaming chat call."""
        ctx, target, adapter, response = yield from self._chat(model_name, request)
        completion = adapter.chat_response(target, response)
        if request.needs.json_mode:
            check_json_answer(target, completion)
        return self._complete(ctx, completion)

    def chat_stream(
        self, model_name: str | None, request: ChatRequest
    ) -> Flow[tuple[StreamSession, httpx.Response]]:
        """Flow of a streaming chat call: the session and the open response."""
        ctx, target, adapter, response = yield from self._chat(model_name, request)
        parser = adapter.chat_stream(target, request)
        budget = attempt_budget(response.request)
        session = StreamSession(self, ctx, target, parser, budget)
        session.json_mode = request.needs.json_mode
        return session, response

    def _chat(
        self, model_name: str | None, request: ChatRequest
    ) -> Flow[tuple[CallContext, Target, ProviderAdapter, httpx.Response]]:
        model = self.registry.resolve(model_name, "chat")
        _check_needs(model, request.needs)
        ctx = CallContext("chat", model, time.perf_counter())
        ctx.estimate = self._counter().estimate_chat(
            model.upstream, request.messages, request.body.get("tools")
        )
        _check_context(
            model, ctx.estimate.prompt_tokens, request.requested_output_tokens
        )
        target, adapter = self._dispatch(ctx)
        http_request = adapter.chat_request(target, request)
        response = yield from self._attempt(
            ctx, adapter, target, http_request, request.stream
        )
        return ctx, target, adapter, response

    def embeddings(
        self, model_name: str | None, request: EmbeddingsRequest
    ) -> Flow[EmbeddingResponse]:
        """Flow of an embeddings call."""
        model = self.registry.resolve(model_name, "embeddings")
        ctx = CallContext("embeddings", model, time.perf_counter())
        counts, approximate = self._counter().count_texts(
            model.upstream, request.inputs
        )
        window = model.entry.context_window
        for i, count in enumerate(counts):
            if window is not None and count > window:
                raise ContextWindowExceededError(
                    f"input[{i}] is ~{count} tokens; the model accepts {window}",
                    prompt_tokens=count,
                    requested_output_tokens=0,
                    context_window=window,
                    provider=model.provider.id,
                    model=model.id,
                )
        # An empty chat estimate is the cheapest way to learn the encoding's name.
        encoding = self._counter().estimate_chat(model.upstream, []).encoding
        ctx.estimate = TokenEstimate(
            prompt_tokens=sum(counts), approximate=approximate, encoding=encoding
        )
        target, adapter = self._dispatch(ctx)
        http_request = adapter.embeddings_request(target, request)
        response = yield from self._attempt(ctx, adapter, target, http_request, False)
        return self._complete(
            ctx, adapter.embeddings_response(target, request, response)
        )

    def transcription(
        self, model_name: str | None, request: TranscriptionRequest
    ) -> Flow[Transcription]:
        """Flow of an audio transcription call."""
        model = self.registry.resolve(model_name, "audio_transcription")
        ctx = CallContext("transcription", model, time.perf_counter())
        target, adapter = self._dispatch(ctx)
        http_request = adapter.transcription_request(target, request)
        response = yield from self._attempt(ctx, adapter, target, http_request, False)
        return self._complete(
            ctx, adapter.transcription_response(target, request, response)
        )

    def provider_models(self, provider: str) -> Flow[list[ProviderModel]]:
        """Flow listing a provider's own models, following pagination."""
        model = self.registry.any_model(provider)
        ctx = CallContext("models", model, time.perf_counter())
        adapter = self._adapter(model)
        target = Target(model, self._credential(model))
        found: list[ProviderModel] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            request = adapter.models_request(target, cursor)
            response = yield from self._attempt(ctx, adapter, target, request, False)
            page, cursor = adapter.models_response(target, response)
            found.extend(page)
            if cursor is None:
                break
        return found

    def count_tokens(
        self, model_name: str | None, request: ChatRequest, exact: bool
    ) -> Flow[TokenCount]:
        """Flow of a token count: the local estimate, plus the provider's exact
        count when asked and offered."""
        model = self.registry.resolve(model_name, "chat")
        estimate = self._counter().estimate_chat(
            model.upstream, request.messages, request.body.get("tools")
        )
        count = TokenCount(estimate=estimate)
        adapter = self._adapter(model)
        if exact:
            target = Target(model, self._credential(model))
            http_request = adapter.count_tokens_request(target, request)
            if http_request is not None:
                ctx = CallContext("count_tokens", model, time.perf_counter())
                response = yield from self._attempt(
                    ctx, adapter, target, http_request, False
                )
                count.exact = adapter.count_tokens_response(target, response)
        return count

    def _dispatch(self, ctx: CallContext) -> tuple[Target, ProviderAdapter]:
        for hook in self.before_dispatch:
            hook(ctx)
        model = ctx.model
        adapter = self._adapter(model)
        return Target(model, self._credential(model)), adapter

    def _attempt(
        self,
        ctx: CallContext,
        adapter: ProviderAdapter,
        target: Target,
        request: httpx.Request,
        stream: bool,
    ) -> Flow[httpx.Response]:
        # The one retry layer: attempts on this target, with the provider's
        # backoff and the upstream's Retry-After between them.
        from ._retry import RetryPolicy, classify

        provider = target.model.provider
        policy = self._policies.get(provider.id)
        if policy is None:
            policy = self._policies[provider.id] = RetryPolicy.from_provider(provider)
        key = (provider.id, target.model.id)
        admission = self.health.admit(
            key, provider.circuit_breaker_threshold, provider.circuit_breaker_cooldown
        )
        if not admission:
            raise self._circuit_open(target, key)
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            outcome = yield ProviderCall(target, request, stream)
            assert outcome is not None
            response, error = self._judge(ctx, adapter, target, outcome)
            elapsed = time.perf_counter() - started
            if error is None:
                assert response is not None
                self.health.record(key, True, elapsed * 1000, admission=admission)
                return response
            headers = response.headers if response is not None else None
            failure = classify(error, headers)
            wait = policy.decide(attempt, failure, elapsed)
            if wait is None:
                # Only the provider's failures count against its breaker: a
                # rejected request means the upstream is answering.
                ok = not failure.failover
                self.health.record(key, ok, elapsed * 1000, error, admission)
                raise error
            yield Sleep(wait)

    def _circuit_open(self, target: Target, key: tuple[str, str]) -> APIError:
        wait = self.health.earliest_reopen([key])
        return target.fail(
            NoProviderAvailableError,
            "circuit breaker is open after repeated failures; the next probe goes"
            f" through in {wait or 0:.1f}s",
            retry_after=wait,
        )

    def _judge(
        self,
        ctx: CallContext,
        adapter: ProviderAdapter,
        target: Target,
        outcome: Outcome,
    ) -> tuple[httpx.Response | None, APIError | None]:
        """The response or typed error of one attempt, recorded in ``attempts``."""
        response = outcome.response
        error: APIError | None = None
        if response is None:
            error = transport_error(target, outcome.error)
        elif response.status_code >= 400:
            error = adapter.status_error(target, response)
        elif response.status_code >= 300:
            location = response.headers.get("location", "nowhere")
            error = target.fail(
                APIStatusError,
                f"upstream answered with a redirect to {location}; check base_url",
                status_code=response.status_code,
                request_id=request_id(response),
            )
        status = response.status_code if response is not None else None
        if error is not None:
            rid = error.request_id
        else:
            rid = request_id(response) if response is not None else None
        ctx.attempts.append(
            Attempt(
                provider=target.model.provider.id,
                model=target.model.id,
                outcome="error" if error else "success",
                error=type(error).__name__ if error else None,
                status_code=status,
                latency_ms=outcome.latency_ms,
                request_id=rid,
            )
        )
        return response, error

    def _complete(self, ctx: CallContext, result: T) -> T:
        result.palyra = ctx.info()  # type: ignore[attr-defined]
        ctx.result = result
        for hook in self.after_completion:
            hook(ctx)
        return result


class StreamSession:
    """The pure part of a streaming call, driven by `Stream` and `AsyncStream`."""

    __slots__ = (
        "_budget",
        "_ctx",
        "_deadline",
        "_parser",
        "_pipeline",
        "_target",
        "completion",
        "info",
        "json_mode",
    )

    def __init__(
        self,
        pipeline: Pipeline,
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
        self._pipeline = pipeline
        self._ctx = ctx
        self._target = target
        self._parser = parser
        self.info = ctx.info()
        self.completion: ChatCompletion | None = None

    def feed(self, data: bytes) -> list[ChatCompletionChunk]:
        """Chunks for one network read."""
        try:
            chunks = self._parser.feed(data)
        except APIError as exc:
            raise self._with_request_id(exc) from None
        now = time.perf_counter()
        if chunks:
            self._deadline = now + self._budget
        elif now > self._deadline:
            raise self._with_request_id(
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
            raise self._with_request_id(exc) from None

    def finish(self) -> ChatCompletion:
        """End of body: assemble, stamp ``palyra`` and run the completion hooks."""
        try:
            completion = self._parser.close()
            if self.json_mode:
                check_json_answer(self._target, completion)
        except APIError as exc:
            raise self._with_request_id(exc) from None
        self.completion = self._pipeline._complete(self._ctx, completion)
        assert completion.palyra is not None
        self.info = completion.palyra
        return completion

    def interrupted(self, exc: Exception) -> APIError:
        """The typed error for a transport failure in the middle of the body."""
        target = self._target
        if isinstance(exc, httpx.TimeoutException):
            error = target.fail(
                APITimeoutError,
                f"upstream went silent mid-stream ({_describe(exc)})",
            )
        else:
            error = target.fail(
                StreamInterruptedError,
                f"upstream connection broke mid-stream ({_describe(exc)});"
                " the answer is partial",
            )
        return self._with_request_id(error)

    def _with_request_id(self, error: APIError) -> APIError:
        # The HTTP response that opened the stream carried the request id.
        if error.request_id is None and self._ctx.attempts:
            error.request_id = self._ctx.attempts[-1].request_id
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


def transport_error(target: Target, exc: Exception | None) -> APIError:
    """The typed error for an httpx failure before any response arrived."""
    if isinstance(exc, httpx.TimeoutException):
        return target.fail(
            APITimeoutError, f"upstream did not answer in time ({_describe(exc)})"
        )
    detail = _describe(exc) if exc is not None else "no response"
    return target.fail(APIConnectionError, f"could not reach upstream ({detail})")


def _describe(exc: BaseException) -> str:
    """``Type: reason``; httpx errors sometimes keep the reason only in the cause."""
    reason = ""
    seen: BaseException | None = exc
    while seen is not None and not reason:
        reason = str(seen)
        seen = seen.__cause__ or seen.__context__
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def attempt_budget(request: httpx.Request) -> float:
    """Seconds one attempt may take: the adapter puts it in the read timeout."""
    return float(request.extensions["timeout"]["read"])


def _check_needs(model: ResolvedModel, needs: Needs) -> None:
    for name in needs.names():
        if not getattr(model.capabilities, name):
            raise UnsupportedCapabilityError(
                f"model {model.id!r} does not support {name.replace('_', ' ')}",
                capability=name,
                provider=model.provider.id,
                model=model.id,
            )


def _check_context(model: ResolvedModel, prompt: int, output: int) -> None:
    window = model.entry.context_window
    if window is not None and prompt + output > window:
        asked = f" plus {output} requested output tokens" if output else ""
        raise ContextWindowExceededError(
            f"prompt of ~{prompt} tokens{asked} exceeds the context window of"
            f" {window} tokens",
            prompt_tokens=prompt,
            requested_output_tokens=output,
            context_window=window,
            provider=model.provider.id,
            model=model.id,
        )
