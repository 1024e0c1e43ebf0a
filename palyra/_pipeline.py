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
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx

from ._config import ModelRole, ProviderConfig
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    ContextWindowExceededError,
    CredentialError,
    InvalidRequestError,
    NoProviderAvailableError,
    PalyraError,
    StreamInterruptedError,
    UnsupportedCapabilityError,
    _CallContextError,
)
from ._failover import plan as failover_plan
from ._health import Admission, HealthTracker
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

if TYPE_CHECKING:
    from ._retry import Failure, RetryPolicy  # loaded lazily (tenacity)

__all__: list[str] = []

T = TypeVar("T")
E = TypeVar("E", bound=_CallContextError)
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
# Checks a candidate before it is tried (token estimate, context window).
Prepare = Callable[[ResolvedModel], None]
Build = Callable[[Target, ProviderAdapter], httpx.Request]
# Makes the stream session for an opened streaming response.
Opener = Callable[[CallContext, Target, ProviderAdapter], "StreamSession"]


@dataclass(frozen=True, slots=True)
class Served:
    """A candidate's successful answer."""

    target: Target
    adapter: ProviderAdapter
    response: httpx.Response
    session: StreamSession | None = None


@dataclass(frozen=True, slots=True)
class _Failed:
    """A candidate that did not answer; ``failure`` is None when it was never
    called because its breaker was open."""

    error: _CallContextError
    failure: Failure | None
    sent: bool = False  # a request went upstream


class Pipeline:
    """The decisions of every call, shared by the sync and async drivers.

    Args:
        registry: The resolved providers and models.
        counter: Returns the token counter (created lazily by the client).
        adapter: Returns the adapter for a provider kind.
        credential: Returns the credential for a provider (or None).
        health: Breakers and health windows (a fresh tracker by default).
        clock: Monotonic seconds for call deadlines (tests inject a fake one
            that their fake sleep advances).
    """

    def __init__(
        self,
        registry: Registry,
        counter: Callable[[], TokenCounter],
        adapter: Callable[[ResolvedModel], ProviderAdapter],
        credential: Callable[[ResolvedModel], str | None],
        health: HealthTracker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.resilience = registry.config.resilience
        self._counter = counter
        self._adapter = adapter
        self._credential = credential
        self._policies: dict[str, RetryPolicy] = {}  # by provider id
        self.health = health if health is not None else HealthTracker()
        # Seams: routing and budget reservation go before dispatch (a hook may
        # replace ctx.model); settlement and the ledger after completion; a
        # reservation is released after failure.
        self.before_dispatch: list[Hook] = []
        self.after_completion: list[Hook] = []
        self.after_failure: list[Hook] = []

    # -- operations ----------------------------------------------------------

    def chat(
        self, model_name: str | None, request: ChatRequest
    ) -> Flow[ChatCompletion]:
        """Flow of a non-streaming chat call."""
        ctx, served = yield from self._chat(model_name, request, None)
        try:
            completion = served.adapter.chat_response(served.target, served.response)
            if request.needs.json_mode:
                check_json_answer(served.target, completion)
        except APIError as exc:
            raise self.failed_after(ctx, exc) from None
        return self._complete(ctx, completion)

    def chat_stream(
        self, model_name: str | None, request: ChatRequest
    ) -> Flow[tuple[StreamSession, httpx.Response]]:
        """Flow of a streaming chat call: the session (its first chunks read)
        and the open response."""

        def opener(
            ctx: CallContext, target: Target, adapter: ProviderAdapter
        ) -> StreamSession:
            parser = adapter.chat_stream(target, request)
            budget = target.model.provider.timeout
            if request.call.timeout is not None:
                budget = request.call.timeout
            session = StreamSession(self, ctx, target, parser, budget)
            session.json_mode = request.needs.json_mode
            return session

        _, served = yield from self._chat(model_name, request, opener)
        assert served.session is not None
        return served.session, served.response

    def _chat(
        self, model_name: str | None, request: ChatRequest, opener: Opener | None
    ) -> Flow[tuple[CallContext, Served]]:
        ctx = self._context("chat", model_name, "chat", request.call.deadline)
        _check_needs(ctx.model, request.needs)
        tools = request.body.get("tools")

        def prepare(model: ResolvedModel) -> None:
            estimate = self._counter().estimate_chat(
                model.upstream, request.messages, tools
            )
            ctx.estimate = estimate
            _check_context(
                model, estimate.prompt_tokens, request.requested_output_tokens
            )

        def build(target: Target, adapter: ProviderAdapter) -> httpx.Request:
            return adapter.chat_request(target, request)

        served = yield from self._serve(ctx, request.needs, prepare, build, opener)
        return ctx, served

    def embeddings(
        self, model_name: str | None, request: EmbeddingsRequest
    ) -> Flow[EmbeddingResponse]:
        """Flow of an embeddings call."""
        ctx = self._context(
            "embeddings", model_name, "embeddings", request.call.deadline
        )

        def prepare(model: ResolvedModel) -> None:
            ctx.estimate = self._embeddings_estimate(model, request)

        def build(target: Target, adapter: ProviderAdapter) -> httpx.Request:
            return adapter.embeddings_request(target, request)

        served = yield from self._serve(ctx, Needs(), prepare, build)
        try:
            result = served.adapter.embeddings_response(
                served.target, request, served.response
            )
        except APIError as exc:
            raise self.failed_after(ctx, exc) from None
        return self._complete(ctx, result)

    def _embeddings_estimate(
        self, model: ResolvedModel, request: EmbeddingsRequest
    ) -> TokenEstimate:
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
        return TokenEstimate(
            prompt_tokens=sum(counts), approximate=approximate, encoding=encoding
        )

    def transcription(
        self, model_name: str | None, request: TranscriptionRequest
    ) -> Flow[Transcription]:
        """Flow of an audio transcription call."""
        ctx = self._context(
            "transcription", model_name, "audio_transcription", request.call.deadline
        )

        def build(target: Target, adapter: ProviderAdapter) -> httpx.Request:
            return adapter.transcription_request(target, request)

        served = yield from self._serve(ctx, Needs(audio=True), _no_check, build)
        try:
            result = served.adapter.transcription_response(
                served.target, request, served.response
            )
        except APIError as exc:
            raise self.failed_after(ctx, exc) from None
        return self._complete(ctx, result)

    def provider_models(self, provider: str) -> Flow[list[ProviderModel]]:
        """Flow listing a provider's own models, following pagination."""
        model = self.registry.any_model(provider)
        ctx = self._start("models", model, None)
        adapter = self._adapter(model)
        target = Target(model, self._credential(model))
        found: list[ProviderModel] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            request = adapter.models_request(target, cursor)
            response = yield from self._single(ctx, adapter, target, request)
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
                ctx = self._start("count_tokens", model, request.call.deadline)
                response = yield from self._single(ctx, adapter, target, http_request)
                count.exact = adapter.count_tokens_response(target, response)
        return count

    # -- one call: candidates, attempts, hooks ---------------------------------

    def _start(
        self, operation: Operation, model: ResolvedModel, deadline: float | None
    ) -> CallContext:
        seconds = deadline if deadline is not None else self.resilience.deadline
        end = None if seconds is None else self.clock() + seconds
        return CallContext(
            operation,
            model,
            time.perf_counter(),
            end,
            seconds,
            self.clock,
            requested=model,
        )

    def _context(
        self,
        operation: Operation,
        model_name: str | None,
        role: ModelRole,
        deadline: float | None,
    ) -> CallContext:
        ctx = self._start(operation, self.registry.resolve(model_name, role), deadline)
        for hook in self.before_dispatch:
            hook(ctx)  # routing may replace ctx.model
        ctx.requested = ctx.model
        return ctx

    def _serve(
        self,
        ctx: CallContext,
        needs: Needs,
        prepare: Prepare,
        build: Build,
        opener: Opener | None = None,
    ) -> Flow[Served]:
        """Try the call's candidates in failover order until one answers."""
        assert ctx.requested is not None
        plan = failover_plan(
            self.registry,
            ctx.requested,
            needs,
            self.health,
            auto=self.resilience.failover,
        )
        failures: list[_Failed] = []
        keys: list[tuple[str, str]] = []
        for model in plan:
            ctx.model = model
            keys.append((model.provider.id, model.id))
            result = yield from self._candidate(ctx, model, prepare, build, opener)
            if isinstance(result, Served):
                return result
            failures.append(result)
            if result.failure is not None:
                plan.narrow(model, result.failure)
            left = ctx.left()
            if left is not None and left <= _LATE:
                break  # no time for another candidate: nothing more is sent
        raise self._fail_call(ctx, failures, keys)

    def _candidate(
        self,
        ctx: CallContext,
        model: ResolvedModel,
        prepare: Prepare,
        build: Build,
        opener: Opener | None,
    ) -> Flow[Served | _Failed]:
        """One candidate: checked, admitted by its breaker, then attempted."""
        try:
            prepare(model)
            target = Target(model, self._credential(model))
        except (ContextWindowExceededError, CredentialError) as exc:
            return self._skip(ctx, model, exc)
        adapter = self._adapter(model)
        try:
            request = build(target, adapter)
        except (UnsupportedCapabilityError, InvalidRequestError) as exc:
            if model is ctx.requested:
                raise  # the caller asked this model for what it cannot do
            # A fallback's dialect cannot express the request: try the next.
            reason = UnsupportedCapabilityError(
                getattr(exc, "message", None) or str(exc),
                capability=getattr(exc, "capability", None) or "request",
                provider=model.provider.id,
                model=model.id,
            )
            return self._skip(ctx, model, reason, failover=True)
        provider = model.provider
        key = (provider.id, model.id)
        # Asked last, once a request exists: an admitted probe is always sent.
        admission = self.health.admit(
            key, provider.circuit_breaker_threshold, provider.circuit_breaker_cooldown
        )
        if not admission:
            return self._skip(ctx, model, self._circuit_open(target, [key]))
        return (
            yield from self._attempts(ctx, adapter, target, request, opener, admission)
        )

    def _single(
        self,
        ctx: CallContext,
        adapter: ProviderAdapter,
        target: Target,
        request: httpx.Request,
    ) -> Flow[httpx.Response]:
        """A provider-level call (model lists, token counts): no failover."""
        model = target.model
        key = (model.provider.id, model.id)
        admission = self.health.admit(
            key,
            model.provider.circuit_breaker_threshold,
            model.provider.circuit_breaker_cooldown,
        )
        error: _CallContextError
        if not admission:
            error = self._circuit_open(target, [key])
        else:
            result = yield from self._attempts(
                ctx, adapter, target, request, None, admission
            )
            if isinstance(result, Served):
                return result.response
            error = result.error
        error.attempts = ctx.attempts
        raise error

    def _attempts(
        self,
        ctx: CallContext,
        adapter: ProviderAdapter,
        target: Target,
        request: httpx.Request,
        opener: Opener | None,
        admission: Admission,
    ) -> Flow[Served | _Failed]:
        # The one retry layer: attempts on this target, with the provider's
        # backoff and the upstream's Retry-After between them.
        provider = target.model.provider
        key = (provider.id, target.model.id)
        base = request.extensions["timeout"]
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            served, error, response = yield from self._attempt(
                ctx, adapter, target, request, opener, base
            )
            elapsed = time.perf_counter() - started
            if served is not None:
                session = served.session
                if session is not None and not admission.probe:
                    # A stream has not succeeded until it ends: its report waits
                    # (a half-open probe reports now, so traffic can return).
                    session.admission = admission
                else:
                    self.health.record(key, True, elapsed * 1000, admission=admission)
                return served
            assert error is not None
            from ._retry import classify  # loaded on the first failure only

            headers = response.headers if response is not None else None
            failure = classify(error, headers)
            ctx.attempts[-1].failure = failure.cls.value
            wait = self._policy(provider).decide(attempt, failure, elapsed)
            left = ctx.left()
            if wait is None or (left is not None and wait >= left):
                self._report(key, failure, error, elapsed, admission)
                return _Failed(error, failure, sent=True)
            yield Sleep(wait)

    def _policy(self, provider: ProviderConfig) -> RetryPolicy:
        policy = self._policies.get(provider.id)
        if policy is None:
            from ._retry import RetryPolicy

            policy = self._policies[provider.id] = RetryPolicy.from_provider(
                provider, retry_after_cap=self.resilience.retry_after_cap
            )
        return policy

    def _attempt(
        self,
        ctx: CallContext,
        adapter: ProviderAdapter,
        target: Target,
        request: httpx.Request,
        opener: Opener | None,
        base: dict[str, float],
    ) -> Flow[tuple[Served | None, APIError | None, httpx.Response | None]]:
        """One HTTP attempt, with its timeouts cut to the call's deadline; a
        stream counts as answered once its first chunk has arrived."""
        left = ctx.left()
        request.extensions["timeout"] = _cut(base, left)
        outcome = yield ProviderCall(target, request, opener is not None)
        assert outcome is not None
        response, error = self._judge(target, adapter, outcome)
        latency = outcome.latency_ms
        session = None
        if error is None and opener is not None:
            assert response is not None
            session = opener(ctx, target, adapter)
            session.request_id = request_id(response)
            # httpcore reads the body's read timeout when the body is first
            # read: the provider's own, so chunks after the first may take it.
            # The deadline bounds the first chunk through `Prime.within`.
            request.extensions["timeout"] = base
            now_left = ctx.left()
            session.limit_first_chunk(now_left)
            cut = now_left if now_left is not None and now_left < base["read"] else None
            primed = yield Prime(session, response, cut)
            assert primed is not None
            latency += primed.latency_ms
            if primed.error is not None:
                error = _as_api_error(target, primed.error)
        after = ctx.left()
        if isinstance(error, APITimeoutError) and after is not None and after <= _LATE:
            # The deadline, not the upstream's own pace, ended this attempt
            # (recorded just below: it counts as sent).
            error = self._deadline_error(ctx, target, len(ctx.attempts) + 1, error)
        self._record(ctx, target, response, error, latency)
        if error is not None:
            return None, error, response
        assert response is not None
        if session is not None:
            session.live = True
            session.info = ctx.info()
        return Served(target, adapter, response, session), None, response

    def _report(
        self,
        key: tuple[str, str],
        failure: Failure,
        error: APIError,
        elapsed: float,
        admission: Admission,
    ) -> None:
        # Only the provider's failures count against its breaker: a rejected
        # request means the upstream is answering.
        ok = not failure.provider_fault
        self.health.record(key, ok, elapsed * 1000, error, admission)
        if failure.cls in ("auth_invalid", "permission") and failure.status:
            self.health.mark_credential(key[0], failure.cls.value)
            notify = getattr(self._credential, "credential_refused", None)
            if notify is not None:
                notify(key[0], failure.cls.value)

    def _skip(
        self,
        ctx: CallContext,
        model: ResolvedModel,
        error: _CallContextError,
        *,
        failover: bool = False,
    ) -> _Failed:
        """A candidate passed over without a request: recorded, then failed.
        ``failover`` lets the next candidates be tried whatever the error."""
        from ._retry import Failure, FailureClass, classify

        failure = None
        if failover:
            failure = Failure(FailureClass.UNKNOWN, retryable=False, failover=True)
        elif not isinstance(error, NoProviderAvailableError):
            failure = classify(error)
        ctx.attempts.append(
            Attempt(
                provider=model.provider.id,
                model=model.id,
                outcome="skipped",
                error=type(error).__name__,
                failure=failure.cls.value if failure else None,
                latency_ms=0.0,
            )
        )
        return _Failed(error, failure)

    def _fail_call(
        self,
        ctx: CallContext,
        failures: list[_Failed],
        keys: list[tuple[str, str]],
    ) -> _CallContextError:
        """The error of a call no candidate served: the last real failure, or
        `NoProviderAvailableError` when every breaker was open."""
        # An upstream's answer says most; then why a candidate was passed over.
        tried = [f for f in failures if f.sent] or [
            f for f in failures if f.failure is not None
        ]
        if tried:
            error = tried[-1].error
        elif failures:
            wait = self.health.earliest_reopen(keys)
            requested = ctx.requested or ctx.model
            error = NoProviderAvailableError(
                f"every candidate's circuit breaker is open ({len(keys)} tried);"
                f" the next probe goes through in {wait or 0:.1f}s",
                retry_after=wait,
                provider=requested.provider.id,
                model=requested.id,
            )
        else:
            sent = sum(a.outcome != "skipped" for a in ctx.attempts)
            error = self._deadline_error(ctx, Target(ctx.model, None), sent)
        return self.failed_after(ctx, error)

    def _circuit_open(self, target: Target, keys: list[tuple[str, str]]) -> APIError:
        wait = self.health.earliest_reopen(keys)
        return target.fail(
            NoProviderAvailableError,
            "circuit breaker is open after repeated failures; the next probe goes"
            f" through in {wait or 0:.1f}s",
            retry_after=wait,
        )

    def _deadline_error(
        self,
        ctx: CallContext,
        target: Target,
        sent: int,
        cause: APIError | None = None,
    ) -> APIError:
        seconds = ctx.seconds or 0.0
        detail = f" ({cause.message})" if cause is not None else ""
        error = target.fail(
            APITimeoutError,
            f"call deadline of {seconds:g}s passed after {sent} attempt(s){detail}",
        )
        if cause is not None:
            error.request_id = cause.request_id
        return error

    def _judge(
        self, target: Target, adapter: ProviderAdapter, outcome: Outcome
    ) -> tuple[httpx.Response | None, APIError | None]:
        """The response or typed error of one attempt."""
        response = outcome.response
        if response is None:
            return None, transport_error(target, outcome.error)
        if response.status_code >= 400:
            return response, adapter.status_error(target, response)
        if response.status_code >= 300:
            location = response.headers.get("location", "nowhere")
            return response, target.fail(
                APIStatusError,
                f"upstream answered with a redirect to {location}; check base_url",
                status_code=response.status_code,
                request_id=request_id(response),
            )
        return response, None

    def _record(
        self,
        ctx: CallContext,
        target: Target,
        response: httpx.Response | None,
        error: APIError | None,
        latency_ms: float,
    ) -> None:
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
                status_code=response.status_code if response is not None else None,
                latency_ms=latency_ms,
                request_id=rid,
            )
        )

    def stream_ended(
        self, ctx: CallContext, target: Target, admission: Admission | None
    ) -> None:
        """A stream ended well (or its reader stopped early): its deferred
        report to the breaker and health window."""
        if admission is not None:
            key = (target.model.provider.id, target.model.id)
            latency = (time.perf_counter() - ctx.started) * 1000
            self.health.record(key, True, latency, admission=admission)

    def stream_failed(
        self,
        ctx: CallContext,
        target: Target,
        error: APIError,
        admission: Admission | None,
    ) -> None:
        """A stream broke after its first chunk: too late to fail over, but
        the breaker and health hear of it and the attempt says so."""
        from ._retry import classify

        failure = classify(error)
        key = (target.model.provider.id, target.model.id)
        latency = (time.perf_counter() - ctx.started) * 1000
        ok = not failure.provider_fault
        self.health.record(key, ok, latency, error, admission)
        if ctx.attempts:
            last = ctx.attempts[-1]
            last.outcome = "error"
            last.error = type(error).__name__
            last.failure = failure.cls.value
        self.failed_after(ctx, error)

    def failed_after(self, ctx: CallContext, error: E) -> E:
        """A served answer turned out unusable (e.g. JSON mode): the error gets
        the attempts and the failure hooks run."""
        last = ctx.attempts[-1] if ctx.attempts else None
        if last is not None and last.outcome == "success":
            last.outcome = "error"  # the HTTP exchange worked; its answer did not
            last.error = type(error).__name__
        error.attempts = ctx.attempts
        ctx.error = error
        for hook in self.after_failure:
            hook(ctx)
        return error

    def _complete(self, ctx: CallContext, result: T) -> T:
        result.palyra = ctx.info()  # type: ignore[attr-defined]
        ctx.result = result
        for hook in self.after_completion:
            hook(ctx)
        return result


def _no_check(model: ResolvedModel) -> None:
    return None


_LATE = 0.001  # seconds left at which a call's deadline counts as passed


def _cut(base: dict[str, float], left: float | None) -> dict[str, float]:
    """The attempt's timeouts, none longer than the time left in the call."""
    if left is None or left >= max(base.values()):
        return base
    left = max(left, _LATE)
    return {name: min(value, left) for name, value in base.items()}


def _as_api_error(target: Target, error: Exception) -> APIError:
    if isinstance(error, APIError):
        return error
    return target.fail(StreamInterruptedError, f"stream failed: {_describe(error)}")


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
                f"upstream went silent mid-stream ({_describe(exc)})",
            )
        else:
            error = target.fail(
                StreamInterruptedError,
                f"upstream connection broke mid-stream ({_describe(exc)});"
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
    if reason.startswith("Cancelled via cancel scope"):
        reason = ""  # anyio's wording for an async timeout: no news to the reader
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
