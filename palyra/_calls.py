"""The calls of `Palyra`: one sync and one async method per operation.

Each method checks its input, works out who the call is for (its own
``agent``, ``session``, ``principal`` and ``tags`` over the client's bound
ones) and hands one flow of `palyra._core.Pipeline` to the sync or the async
driver. No method decides anything, so the twins cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from ._core import (
    AsyncDriver,
    AsyncStream,
    Caller,
    Flow,
    Pipeline,
    Stream,
    SyncDriver,
)
from ._exceptions import AuthenticationError
from ._governance import HeldEnding, hold, release, writer_for
from ._request import (
    ChatOptions,
    FileInput,
    RequestOptions,
    chat_request,
    embeddings_request,
    transcription_request,
)
from ._wire import (
    ChatCompletion,
    EmbeddingResponse,
    ProviderModel,
    TokenCount,
    Transcription,
)

if TYPE_CHECKING:
    from ._auth import CallGate
    from ._decision import RoutingDecision
    from ._observe import Observability
    from ._routing import Router

__all__: list[str] = []

T = TypeVar("T")

Tags = Mapping[str, str] | None


_ENDING = HeldEnding()  # async streams' last records: off the loop's lock waits


class Calls:
    """The operations `Palyra` offers; `Palyra` builds what they run on."""

    _caller: Caller
    _pipeline: Pipeline
    _sync: SyncDriver
    _async: AsyncDriver
    _gate: CallGate | None  # auth profiles' refresh around calls, if any may
    _router: Router
    observability: Observability

    def _one_call(self) -> AbstractContextManager[Any]:
        """The scope of one call as its caller made it, for its events."""
        observer = self.observability.observer
        if observer is None:
            return nullcontext()
        return observer.outer()

    def _run(self, make: Callable[[], Flow[T]], caller: Caller) -> T:
        """Run a flow of the pipeline; OAuth tokens owed a refresh are
        refreshed first, and a call refused with 401 is made again once after
        its token was refreshed."""
        gate = self._gate
        if gate is None:
            return self._sync.run(make())
        with self._one_call() as outer:  # a call made again is still one call
            ahead = gate.ahead(caller.agent)
            refreshed = ahead is not None and gate.drive(ahead)
            try:
                return self._sync.run(make())
            except AuthenticationError as exc:
                # One refresh per call at most: a token refreshed for this very
                # call and refused is not refreshed again (the next call may).
                again = (
                    None
                    if refreshed
                    else gate.after_refusal(caller.agent, exc.provider)
                )
                if again is None or not gate.drive(again):
                    raise
            if outer is not None:  # the first try was not the call's end
                outer.made_again()
            return self._sync.run(make())

    async def _arun(self, make: Callable[[], Flow[T]], caller: Caller) -> T:
        """Async `_run`; the call's ledger records are held while the flow
        runs on the loop, and committed in a worker thread (with other calls'
        records) before it returns (`_governance.held`)."""
        token = hold()
        try:
            return await self._arun_flow(make, caller)
        finally:
            held = release(token)
            if held:
                import asyncio  # the caller's loop has loaded it already

                await writer_for(asyncio.get_running_loop()).write(held)

    async def _arun_flow(self, make: Callable[[], Flow[T]], caller: Caller) -> T:
        gate = self._gate
        if gate is None:
            return await self._async.run(make())
        with self._one_call() as outer:
            ahead = gate.ahead(caller.agent)
            refreshed = ahead is not None and await gate.adrive(ahead)
            try:
                return await self._async.run(make())
            except AuthenticationError as exc:
                again = (
                    None
                    if refreshed
                    else gate.after_refusal(caller.agent, exc.provider)
                )
                if again is None or not await gate.adrive(again):
                    raise
            if outer is not None:  # the first try was not the call's end
                outer.made_again()
            return await self._async.run(make())

    def chat(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        *,
        agent: str | None = None,
        session: str | None = None,
        principal: str | None = None,
        tags: Tags = None,
        **options: Unpack[ChatOptions],
    ) -> ChatCompletion:
        """Send a chat completion and wait for the whole answer.

        Args:
            messages: OpenAI-shaped messages (dicts or pydantic models).
            model: Registry model id or alias; the default chat model when None.
            **options: OpenAI options (`ChatOptions`); others go in ``extra_body``.

        Raises:
            APIError: the call failed (a subclass says how).
            ContextWindowExceededError, UnsupportedCapabilityError,
            InvalidRequestError, ModelNotFoundError: before any HTTP call.
        """
        caller = self._caller.merged(agent, session, principal, tags)
        request = chat_request(messages, options, False, caller.end_user)
        return self._run(lambda: self._pipeline.chat(model, request, caller), caller)

    async def achat(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        *,
        agent: str | None = None,
        session: str | None = None,
        principal: str | None = None,
        tags: Tags = None,
        **options: Unpack[ChatOptions],
    ) -> ChatCompletion:
        """Async `chat`."""
        caller = self._caller.merged(agent, session, principal, tags)
        request = chat_request(messages, options, False, caller.end_user)
        return await self._arun(
            lambda: self._pipeline.chat(model, request, caller), caller
        )

    def stream(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        *,
        agent: str | None = None,
        session: str | None = None,
        principal: str | None = None,
        tags: Tags = None,
        **options: Unpack[ChatOptions],
    ) -> Stream:
        """Send a chat completion and stream the answer as chunks.

        The request is sent before this returns, so errors before the first
        chunk (status, connection) raise here; errors after it raise from the
        iterator. Use as ``with client.stream(...) as stream: for chunk in
        stream: ...``; leaving early closes the upstream response.
        """
        caller = self._caller.merged(agent, session, principal, tags)
        request = chat_request(messages, options, True, caller.end_user)
        parts = self._run(
            lambda: self._pipeline.chat_stream(model, request, caller), caller
        )
        return Stream(*parts, self._sync.later)

    async def astream(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        *,
        agent: str | None = None,
        session: str | None = None,
        principal: str | None = None,
        tags: Tags = None,
        **options: Unpack[ChatOptions],
    ) -> AsyncStream:
        """Async `stream`: ``async with await client.astream(...) as stream``."""
        caller = self._caller.merged(agent, session, principal, tags)
        request = chat_request(messages, options, True, caller.end_user)
        parts = await self._arun(
            lambda: self._pipeline.chat_stream(model, request, caller), caller
        )
        return AsyncStream(*parts, self._async.later, _ENDING)

    def route(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        *,
        agent: str | None = None,
        session: str | None = None,
        principal: str | None = None,
        tags: Tags = None,
        **options: Unpack[ChatOptions],
    ) -> RoutingDecision:
        """What smart routing decides for a chat request, calling no provider.

        Takes what `chat` takes (``route=`` a mode, ``hint=`` a task hint)
        and decides as a call would, in the mode in effect (``off`` too):
        the score and the features it came from, the tier, every chat model
        with its estimated cost, latency, health and reason codes, the choice
        and one sentence saying why. Budget headroom is checked for the
        caller's scopes without reserving anything.

        Raises:
            InvalidRequestError, ModelNotFoundError: bad input, named.
        """
        caller = self._caller.merged(agent, session, principal, tags)
        request = chat_request(messages, options, False, caller.end_user)
        requested = self._pipeline.registry.resolve(model, "chat")
        router = self._router
        mode = request.route or router.config.mode
        return router.decide(request, requested, caller, mode, request.hint)[0]

    async def aroute(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        *,
        agent: str | None = None,
        session: str | None = None,
        principal: str | None = None,
        tags: Tags = None,
        **options: Unpack[ChatOptions],
    ) -> RoutingDecision:
        """Async `route` (it decides in microseconds: it does not leave the
        loop, except that a budget window's first look reads the ledger)."""
        return self.route(
            messages,
            model,
            agent=agent,
            session=session,
            principal=principal,
            tags=tags,
            **options,
        )

    def embed(
        self,
        inputs: str | Sequence[str],
        model: str | None = None,
        *,
        dimensions: int | None = None,
        agent: str | None = None,
        session: str | None = None,
        principal: str | None = None,
        tags: Tags = None,
        **options: Unpack[RequestOptions],
    ) -> EmbeddingResponse:
        """Embed one text or a batch; vectors come back in input order.

        Args:
            inputs: A string or 1-2048 non-empty strings.
            model: Registry model id or alias; the default embeddings model when
                None.
            dimensions: Vector size, for models that can shorten vectors.
            **options: ``extra_body``, ``extra_headers``, ``timeout``,
                ``deadline``; any other name is a `TypeError`.
        """
        caller = self._caller.merged(agent, session, principal, tags)
        request = embeddings_request(inputs, dimensions, options)
        return self._run(
            lambda: self._pipeline.embeddings(model, request, caller), caller
        )

    async def aembed(
        self,
        inputs: str | Sequence[str],
        model: str | None = None,
        *,
        dimensions: int | None = None,
        agent: str | None = None,
        session: str | None = None,
        principal: str | None = None,
        tags: Tags = None,
        **options: Unpack[RequestOptions],
    ) -> EmbeddingResponse:
        """Async `embed`."""
        caller = self._caller.merged(agent, session, principal, tags)
        request = embeddings_request(inputs, dimensions, options)
        return await self._arun(
            lambda: self._pipeline.embeddings(model, request, caller), caller
        )

    def transcribe(
        self,
        file: FileInput,
        model: str | None = None,
        *,
        response_format: str = "json",
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
        agent: str | None = None,
        session: str | None = None,
        principal: str | None = None,
        tags: Tags = None,
        **options: Unpack[RequestOptions],
    ) -> Transcription:
        """Transcribe an audio file.

        Args:
            file: A path, bytes, a binary file object, or ``(filename, bytes)``.
            model: Registry model id or alias; the default audio model when None.
            response_format: ``json``, ``verbose_json`` or ``text``.
            language: ISO-639-1 language of the audio, if known.
            prompt: Text to guide the style or vocabulary.
            temperature: Sampling temperature.
            **options: ``extra_body``, ``extra_headers``, ``timeout``,
                ``deadline``; any other name is a `TypeError`.
        """
        caller = self._caller.merged(agent, session, principal, tags)
        fields = {"language": language, "prompt": prompt, "temperature": temperature}
        request = transcription_request(file, response_format, fields, options)
        return self._run(
            lambda: self._pipeline.transcription(model, request, caller), caller
        )

    async def atranscribe(
        self,
        file: FileInput,
        model: str | None = None,
        *,
        response_format: str = "json",
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
        agent: str | None = None,
        session: str | None = None,
        principal: str | None = None,
        tags: Tags = None,
        **options: Unpack[RequestOptions],
    ) -> Transcription:
        """Async `transcribe`."""
        caller = self._caller.merged(agent, session, principal, tags)
        fields = {"language": language, "prompt": prompt, "temperature": temperature}
        request = transcription_request(file, response_format, fields, options)
        return await self._arun(
            lambda: self._pipeline.transcription(model, request, caller), caller
        )

    def count_tokens(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        *,
        exact: bool = True,
        agent: str | None = None,
        session: str | None = None,
        principal: str | None = None,
        tags: Tags = None,
        **options: Unpack[ChatOptions],
    ) -> TokenCount:
        """Count a prompt's tokens: always the local estimate (no network), and
        with ``exact`` the provider's own count where it has one (Anthropic).
        """
        caller = self._caller.merged(agent, session, principal, tags)
        request = chat_request(messages, options, False, caller.end_user)
        return self._run(
            lambda: self._pipeline.count_tokens(model, request, exact, caller), caller
        )

    async def acount_tokens(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        *,
        exact: bool = True,
        agent: str | None = None,
        session: str | None = None,
        principal: str | None = None,
        tags: Tags = None,
        **options: Unpack[ChatOptions],
    ) -> TokenCount:
        """Async `count_tokens`."""
        caller = self._caller.merged(agent, session, principal, tags)
        request = chat_request(messages, options, False, caller.end_user)
        return await self._arun(
            lambda: self._pipeline.count_tokens(model, request, exact, caller), caller
        )

    def provider_models(self, provider: str) -> list[ProviderModel]:
        """The models a provider itself lists (``GET /models``, every page).

        Raises:
            ModelNotFoundError: the provider is unknown or has no model.
            APIError: the listing failed.
        """
        return self._run(lambda: self._pipeline.provider_models(provider), self._caller)

    async def aprovider_models(self, provider: str) -> list[ProviderModel]:
        """Async `provider_models`."""
        return await self._arun(
            lambda: self._pipeline.provider_models(provider), self._caller
        )
