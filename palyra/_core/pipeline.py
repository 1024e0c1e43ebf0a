"""The request pipeline: one sans-I/O generator per operation.

Each operation resolves the model and runs the *route* hooks, checks what the
request needs, then hands its candidates to the `Dispatcher` (estimate and
build per candidate, the *before dispatch* hooks, attempts, failover). It turns
the served response into a result and runs the *after completion* hooks.
`Palyra.chat` and `Palyra.achat` only drive the generators with a sync or an
async driver; neither can drift from the other because neither decides.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from .._config import ModelRole
from .._exceptions import (
    APIError,
    ContextWindowExceededError,
)
from .._providers import (
    Adapters,
    ProviderAdapter,
    Target,
    request_id,
    stream_parser,
)
from .._registry import Registry, ResolvedModel
from .._request import ChatRequest, EmbeddingsRequest, Needs, TranscriptionRequest
from .._tokens import TokenCounter, TokenEstimate
from .._wire import (
    ChatCompletion,
    CompletionUsage,
    EmbeddingResponse,
    ProviderModel,
    TokenCount,
    Transcription,
)
from .attempts import Served
from .context import CallContext, Caller, Operation
from .dispatch import Dispatcher
from .estimates import estimated_usage
from .health import HealthTracker
from .hooks import Candidate, Hooks
from .session import StreamSession, check_json_answer
from .steps import Flow

__all__ = ["Pipeline"]

_MAX_PAGES = 100  # a model list longer than this is an upstream bug


class Pipeline:
    """The decisions of every call, shared by the sync and async drivers.

    Args:
        registry: The resolved providers and models.
        counter: Returns the token counter (created lazily by the client).
        adapters: The client's adapters.
        credential: Returns the credential for a call to a model (or None).
        health: Breakers and health windows.
        clock: Monotonic seconds for call deadlines (tests inject a fake one
            that their fake sleep advances).
    """

    def __init__(
        self,
        registry: Registry,
        counter: Callable[[], TokenCounter],
        adapters: Adapters,
        credential: Callable[[CallContext, ResolvedModel], str | None],
        health: HealthTracker,
        clock: Callable[[], float],
    ) -> None:
        self.registry = registry
        self.health = health
        self.hooks = Hooks()
        self._counter = counter
        self._adapters = adapters
        self._credential = credential
        self._clock = clock
        self._resilience = registry.config.resilience
        self.dispatcher = Dispatcher(
            registry,
            self.hooks,
            health,
            self._resilience,
            credential,
            adapters.for_model,
            clock,
        )

    # -- operations ----------------------------------------------------------

    def chat(
        self, model_name: str | None, request: ChatRequest, caller: Caller
    ) -> Flow[ChatCompletion]:
        """Flow of a non-streaming chat call."""
        ctx = self._context("chat", model_name, "chat", caller, request)
        served = yield from self._chat(ctx, request, stream=False)
        completion = served.result
        assert isinstance(completion, ChatCompletion)
        if completion.usage is None:
            completion.usage = self.estimated_usage(ctx, completion)
        if request.needs.json_mode:
            try:
                check_json_answer(served.candidate.target, completion)
            except APIError as exc:
                # The model's answer, not the upstream, is at fault: no breaker.
                raise self.dispatcher.reject(ctx, served.candidate, exc) from None
        return self.dispatcher.complete(
            ctx, served.candidate, completion, completion.usage
        )

    def chat_stream(
        self, model_name: str | None, request: ChatRequest, caller: Caller
    ) -> Flow[tuple[StreamSession, httpx.Response]]:
        """Flow of a streaming chat call: the session (its first chunks read)
        and the open response."""
        ctx = self._context("chat", model_name, "chat", caller, request)
        served = yield from self._chat(ctx, request, stream=True)
        assert served.session is not None
        return served.session, served.response

    def _chat(
        self, ctx: CallContext, request: ChatRequest, *, stream: bool
    ) -> Flow[Served]:
        tools = request.body.get("tools")

        def prepare(model: ResolvedModel) -> None:
            estimate = ctx.estimate
            if estimate is None or ctx.estimate_for != model.upstream:
                # Counted again only for another encoding's model: routing
                # may have counted this request for this model already.
                estimate = self._counter().estimate_chat(
                    model.upstream, request.messages, tools
                )
                ctx.estimate, ctx.estimate_for = estimate, model.upstream
            _check_context(
                model, estimate.prompt_tokens, request.requested_output_tokens
            )

        def build(target: Target, adapter: ProviderAdapter) -> httpx.Request:
            return adapter.chat_request(target, request)

        def open_stream(
            ctx: CallContext,
            candidate: Candidate,
            adapter: ProviderAdapter,
            response: httpx.Response,
            left: float | None,
        ) -> StreamSession:
            budget = request.call.timeout or candidate.model.provider.timeout
            return StreamSession(
                ctx,
                candidate.target,
                stream_parser(adapter, candidate.target, request, response),
                budget=budget,
                json_mode=request.needs.json_mode,
                request_id=request_id(response, candidate.target.secrets),
                first_within=left,
                usage_for=self.estimated_usage,
            )

        if stream:
            return (
                yield from self.dispatcher.serve(
                    ctx, request.needs, prepare, build, opener=open_stream
                )
            )
        return (
            yield from self.dispatcher.serve(
                ctx, request.needs, prepare, build, reader=_chat_answer
            )
        )

    def embeddings(
        self, model_name: str | None, request: EmbeddingsRequest, caller: Caller
    ) -> Flow[EmbeddingResponse]:
        """Flow of an embeddings call."""
        ctx = self._context("embeddings", model_name, "embeddings", caller, request)

        def prepare(model: ResolvedModel) -> None:
            ctx.estimate = self._embeddings_estimate(model, request)

        def build(target: Target, adapter: ProviderAdapter) -> httpx.Request:
            return adapter.embeddings_request(target, request)

        def read(
            target: Target, adapter: ProviderAdapter, response: httpx.Response
        ) -> EmbeddingResponse:
            return adapter.embeddings_response(target, request, response)

        served = yield from self.dispatcher.serve(
            ctx, Needs(), prepare, build, reader=read
        )
        result = served.result
        assert isinstance(result, EmbeddingResponse)
        return self.dispatcher.complete(ctx, served.candidate, result, result.usage)

    def estimated_usage(
        self, ctx: CallContext, completion: ChatCompletion
    ) -> CompletionUsage:
        """Usage counted locally, for an answer whose upstream reported none."""
        ctx.usage_estimated = True
        return estimated_usage(
            self._counter(), ctx.model.upstream, ctx.estimate, completion
        )

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
        self, model_name: str | None, request: TranscriptionRequest, caller: Caller
    ) -> Flow[Transcription]:
        """Flow of an audio transcription call."""
        ctx = self._context(
            "transcription", model_name, "audio_transcription", caller, request
        )

        def build(target: Target, adapter: ProviderAdapter) -> httpx.Request:
            return adapter.transcription_request(target, request)

        def read(
            target: Target, adapter: ProviderAdapter, response: httpx.Response
        ) -> Transcription:
            return adapter.transcription_response(target, request, response)

        served = yield from self.dispatcher.serve(
            ctx, Needs(audio=True), _no_check, build, reader=read
        )
        result = served.result
        assert isinstance(result, Transcription)
        return self.dispatcher.complete(ctx, served.candidate, result, None)

    def provider_models(self, provider: str) -> Flow[list[ProviderModel]]:
        """Flow listing a provider's own models, following pagination."""
        model = self.registry.any_model(provider)
        ctx = self._start("models", model, None, Caller(), None)
        adapter = self._adapters.for_model(model)
        target = Target(
            model, self._credential(ctx, model), self.registry.config.limits
        )
        found: list[ProviderModel] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            request = adapter.models_request(target, cursor)
            answer = yield from self.dispatcher.single(
                ctx, adapter, target, request, _models_page
            )
            assert isinstance(answer, tuple)
            found.extend(answer[0])
            cursor = answer[1]
            if cursor is None:
                break
        return found

    def count_tokens(
        self,
        model_name: str | None,
        request: ChatRequest,
        exact: bool,
        caller: Caller,
    ) -> Flow[TokenCount]:
        """Flow of a token count: the local estimate, plus the provider's exact
        count when asked and offered."""
        model = self.registry.resolve(model_name, "chat")
        estimate = self._counter().estimate_chat(
            model.upstream, request.messages, request.body.get("tools")
        )
        count = TokenCount(estimate=estimate)
        if not exact:
            return count
        ctx = self._start("count_tokens", model, request.call.deadline, caller, request)
        adapter = self._adapters.for_model(model)
        target = Target(
            model, self._credential(ctx, model), self.registry.config.limits
        )
        http_request = adapter.count_tokens_request(target, request)
        if http_request is not None:
            exact_count = yield from self.dispatcher.single(
                ctx, adapter, target, http_request, _exact_count
            )
            assert isinstance(exact_count, int)
            count.exact = exact_count
        return count

    # -- the call's context ----------------------------------------------------

    def _start(
        self,
        operation: Operation,
        model: ResolvedModel,
        deadline: float | None,
        caller: Caller,
        request: object,
    ) -> CallContext:
        seconds = deadline if deadline is not None else self._resilience.deadline
        end = None if seconds is None else self._clock() + seconds
        return CallContext(
            operation,
            model,
            caller,
            request,
            deadline=end,
            seconds=seconds,
            clock=self._clock,
            requested=model,
        )

    def _context(
        self,
        operation: Operation,
        model_name: str | None,
        role: ModelRole,
        caller: Caller,
        request: ChatRequest | EmbeddingsRequest | TranscriptionRequest,
    ) -> CallContext:
        model = self.registry.resolve(model_name, role)
        return self._start(operation, model, request.call.deadline, caller, request)


def _no_check(model: ResolvedModel) -> None:
    return None


def _chat_answer(
    target: Target, adapter: ProviderAdapter, response: httpx.Response
) -> ChatCompletion:
    return adapter.chat_response(target, response)


def _models_page(
    target: Target, adapter: ProviderAdapter, response: httpx.Response
) -> tuple[list[ProviderModel], str | None]:
    return adapter.models_response(target, response)


def _exact_count(
    target: Target, adapter: ProviderAdapter, response: httpx.Response
) -> int:
    return adapter.count_tokens_response(target, response)


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
