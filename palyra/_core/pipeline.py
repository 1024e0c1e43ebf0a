"""The request pipeline, written once as sans-I/O generators.

Each operation is a generator that resolves the model, checks what the request
needs, estimates tokens, runs the *before dispatch* hooks (routing, budget
reservation), then **yields** a `ProviderCall` and **receives** an `Outcome`.
It turns the outcome into a result or a typed error, and runs the *after
completion* hooks (settlement, ledger). `Palyra.chat` and `Palyra.achat` only
move bytes; neither can drift from the other because neither decides anything.
"""

from __future__ import annotations

from typing import TypeVar

import httpx

from .._exceptions import (
    APIError,
    ContextWindowExceededError,
    UnsupportedCapabilityError,
)
from .._providers.base import ProviderAdapter, Target
from .._registry import ResolvedModel
from .._request import ChatRequest, EmbeddingsRequest, Needs, TranscriptionRequest
from .._tokens import TokenEstimate
from .._wire import (
    ChatCompletion,
    EmbeddingResponse,
    ProviderModel,
    TokenCount,
    Transcription,
)
from .dispatch import Dispatcher, Opener, Served
from .session import StreamSession, check_json_answer
from .steps import CallContext, Flow

__all__: list[str] = []

T = TypeVar("T")
_MAX_PAGES = 100  # a model list longer than this is an upstream bug


class Pipeline(Dispatcher):
    """The decisions of every call, shared by the sync and async drivers:
    one generator per operation, run by `Dispatcher`."""

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


def _no_check(model: ResolvedModel) -> None:
    return None


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
