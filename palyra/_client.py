"""`Palyra`: the in-process client, with sync and async twins of every call.

The client owns the HTTP clients (created lazily, reused for connection
pooling) and drives the pipeline's generators: the sync methods with
`httpx.Client`, the async ones with `httpx.AsyncClient`. Every decision is in
`palyra._pipeline`, so the two worlds cannot drift apart.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

import httpx

from ._config import PalyraConfig, ProviderConfig
from ._core.drivers import aprime, asyncio_sleep, outcome, prime, running_loop
from ._core.health import HealthTracker, ModelHealth
from ._core.pipeline import Pipeline
from ._core.steps import BodyReader, Flow, Outcome, Prime, ProviderCall, Sleep
from ._core.streams import AsyncStream, Stream
from ._credentials import CredentialResolver
from ._exceptions import ConfigError, UnsupportedCapabilityError
from ._registry import Registry, ResolvedModel
from ._request import (
    ChatOptions,
    FileInput,
    chat_request,
    embeddings_request,
    transcription_request,
)
from ._tokens import TiktokenCounter, TokenCounter
from ._version import __version__
from ._wire import (
    ChatCompletion,
    EmbeddingResponse,
    ModelInfo,
    ProviderModel,
    TokenCount,
    Transcription,
)

if TYPE_CHECKING:
    from ._providers.deterministic import DeterministicBackend

__all__ = ["Palyra"]

T = TypeVar("T")

# Adapters load on first use, so `import palyra` pays for none of them.
_ADAPTERS = {
    "openai_compatible": "palyra._providers.openai:OpenAIAdapter",
    "deterministic": "palyra._providers.deterministic:DeterministicAdapter",
    "anthropic": "palyra._providers.anthropic:AnthropicAdapter",
}


# httpx's default keeps 20 of its 100 connections alive. httpcore 1.0 closes
# "surplus idle" connections by counting every connection, idle or not, and can
# close one just handed to another thread (encode/httpcore#1110): keeping them
# all alive avoids that path, and busy apps reuse connections instead of
# reconnecting.
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)


class Palyra:
    """One client for every configured model provider.

    Args:
        config: A `PalyraConfig`, a dict in the same shape, a path to a TOML file,
            or None for the offline deterministic provider.
        transport: httpx transport for sync calls (tests inject
            `httpx.MockTransport`).
        async_transport: httpx transport for async calls.
        token_counter: Replaces the tiktoken-based estimator.
        credentials: Replaces the credential lookup: takes a `ProviderConfig`,
            returns the key (or None).
        sleep: Waits between retries in sync calls (default `time.sleep`);
            tests pass a recorder.
        async_sleep: Waits between retries in async calls (default
            `asyncio.sleep`).
        clock: Monotonic seconds for circuit-breaker cooldowns, health
            windows and call deadlines (default `time.monotonic`). Tests pass
            a fake clock that their fake ``sleep`` advances.
        resolver: Resolves base-URL host names for the network guard: takes
            a host and a port, returns IP address strings (default: the
            system resolver, at most 5 s per host).

    Raises:
        ConfigError: when the configuration is invalid, or a base URL's host
            resolves to a private, link-local or reserved address (or cannot
            be resolved) without ``allow_private_base_url``.
    """

    def __init__(
        self,
        config: PalyraConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        token_counter: TokenCounter | None = None,
        credentials: Callable[[ProviderConfig], str | None] | None = None,
        sleep: Callable[[float], None] | None = None,
        async_sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
        resolver: Callable[[str, int], list[str]] | None = None,
    ) -> None:
        self.config = _load_config(config)
        _guard_base_urls(self.config, resolver)
        self._registry = Registry(self.config)
        self._transport = transport
        if async_transport is None and isinstance(transport, httpx.AsyncBaseTransport):
            # MockTransport and friends serve both worlds: never fall through
            # to the real network for async calls when a transport was given.
            async_transport = transport
        self._async_transport = async_transport
        self._counter = token_counter
        self._credentials = credentials or CredentialResolver()
        self._sleep = sleep or time.sleep
        self._async_sleep = async_sleep or asyncio_sleep
        self._lock = threading.Lock()
        self._adapters: dict[str, Any] = {}
        self._backends: dict[str, DeterministicBackend] = {}
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None
        self._async_loop: object = None
        self._sync_closed = self._async_closed = False
        self._local: Any = None
        clock = clock or time.monotonic
        self._pipeline = Pipeline(
            self._registry,
            self._token_counter,
            self._adapter,
            self._credential,
            HealthTracker(clock=clock),
            clock,
        )

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Palyra:
        """A client configured from a TOML file (see `PalyraConfig.from_file`)."""
        return cls(PalyraConfig.from_file(path), **kwargs)

    # -- calls -------------------------------------------------------------

    def chat(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
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
        request = chat_request(messages, options, stream=False)
        return self._run(self._pipeline.chat(model, request))

    async def achat(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        **options: Unpack[ChatOptions],
    ) -> ChatCompletion:
        """Async `chat`."""
        request = chat_request(messages, options, stream=False)
        return await self._arun(self._pipeline.chat(model, request))

    def stream(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        **options: Unpack[ChatOptions],
    ) -> Stream:
        """Send a chat completion and stream the answer as chunks.

        The request is sent before this returns, so errors before the first
        chunk (status, connection) raise here; errors after it raise from the
        iterator. Use as ``with client.stream(...) as stream: for chunk in
        stream: ...``; leaving early closes the upstream response.
        """
        request = chat_request(messages, options, stream=True)
        session, response = self._run(self._pipeline.chat_stream(model, request))
        return Stream(session, response)

    async def astream(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        **options: Unpack[ChatOptions],
    ) -> AsyncStream:
        """Async `stream`: ``async with await client.astream(...) as stream``."""
        request = chat_request(messages, options, stream=True)
        session, response = await self._arun(self._pipeline.chat_stream(model, request))
        return AsyncStream(session, response)

    def embed(
        self,
        inputs: str | Sequence[str],
        model: str | None = None,
        *,
        dimensions: int | None = None,
        **options: Any,
    ) -> EmbeddingResponse:
        """Embed one text or a batch; vectors come back in input order.

        Args:
            inputs: A string or 1-2048 non-empty strings.
            model: Registry model id or alias; the default embeddings model when
                None.
            dimensions: Vector size, for models that can shorten vectors.
            **options: ``extra_body``, ``extra_headers``, ``timeout``.
        """
        request = embeddings_request(inputs, dimensions, options)
        return self._run(self._pipeline.embeddings(model, request))

    async def aembed(
        self,
        inputs: str | Sequence[str],
        model: str | None = None,
        *,
        dimensions: int | None = None,
        **options: Any,
    ) -> EmbeddingResponse:
        """Async `embed`."""
        request = embeddings_request(inputs, dimensions, options)
        return await self._arun(self._pipeline.embeddings(model, request))

    def transcribe(
        self,
        file: FileInput,
        model: str | None = None,
        *,
        response_format: str = "json",
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
        **options: Any,
    ) -> Transcription:
        """Transcribe an audio file.

        Args:
            file: A path, bytes, a binary file object, or ``(filename, bytes)``.
            model: Registry model id or alias; the default audio model when None.
            response_format: ``json``, ``verbose_json`` or ``text``.
            language: ISO-639-1 language of the audio, if known.
            prompt: Text to guide the style or vocabulary.
            temperature: Sampling temperature.
            **options: ``extra_body``, ``extra_headers``, ``timeout``.
        """
        fields = {"language": language, "prompt": prompt, "temperature": temperature}
        request = transcription_request(file, response_format, fields, options)
        return self._run(self._pipeline.transcription(model, request))

    async def atranscribe(
        self,
        file: FileInput,
        model: str | None = None,
        *,
        response_format: str = "json",
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
        **options: Any,
    ) -> Transcription:
        """Async `transcribe`."""
        fields = {"language": language, "prompt": prompt, "temperature": temperature}
        request = transcription_request(file, response_format, fields, options)
        return await self._arun(self._pipeline.transcription(model, request))

    def health(self) -> list[ModelHealth]:
        """Circuit-breaker state and recent health of every (provider, model)
        this client has called: state, counters, success rate, median latency
        and the last error (redacted)."""
        return self._pipeline.health.snapshot()

    def models(self) -> list[ModelInfo]:
        """Every model in the registry, with resolved capabilities."""
        return self._registry.describe()

    def provider_models(self, provider: str) -> list[ProviderModel]:
        """The models a provider itself lists (``GET /models``, every page).

        Raises:
            ModelNotFoundError: the provider is unknown or has no model.
            APIError: the listing failed.
        """
        return self._run(self._pipeline.provider_models(provider))

    async def aprovider_models(self, provider: str) -> list[ProviderModel]:
        """Async `provider_models`."""
        return await self._arun(self._pipeline.provider_models(provider))

    def count_tokens(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        *,
        exact: bool = True,
        **options: Unpack[ChatOptions],
    ) -> TokenCount:
        """Count a prompt's tokens: always the local estimate (no network), and
        with ``exact`` the provider's own count where it has one (Anthropic).
        """
        request = chat_request(messages, options, stream=False)
        return self._run(self._pipeline.count_tokens(model, request, exact))

    async def acount_tokens(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        *,
        exact: bool = True,
        **options: Unpack[ChatOptions],
    ) -> TokenCount:
        """Async `count_tokens`."""
        request = chat_request(messages, options, stream=False)
        return await self._arun(self._pipeline.count_tokens(model, request, exact))

    def deterministic(self, provider: str | None = None) -> DeterministicBackend:
        """The scriptable backend of a deterministic provider.

        Args:
            provider: Provider id; the first deterministic provider when None.

        Returns:
            The provider's `DeterministicBackend` (``enqueue``, ``history``).
        """
        candidates = [
            p.id
            for p in self.config.providers
            if p.kind == "deterministic" and provider in (None, p.id)
        ]
        if not candidates:
            raise ConfigError(
                [("providers", f"no deterministic provider {provider!r}")]
            )
        return self._backend(candidates[0])

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Close the sync HTTP connections (the async ones need `aclose`)."""
        with self._lock:
            client, self._sync = self._sync, None
            self._sync_closed = True
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close every HTTP connection, sync and async."""
        self.close()
        with self._lock:
            client, self._async = self._async, None
            loop, self._async_loop = self._async_loop, None
            self._async_closed = True
        # Connections opened by an event loop that has since ended cannot be
        # closed from another one; they went away with their loop.
        if client is not None and loop is running_loop():
            await client.aclose()

    def __enter__(self) -> Palyra:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Palyra:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        providers = ", ".join(p.id for p in self.config.providers)
        return f"Palyra(providers=[{providers}], models={len(self.config.models)})"

    # -- drivers -----------------------------------------------------------

    def _run(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, Sleep):
                    self._sleep(step.seconds)
                    step = flow.send(None)
                elif isinstance(step, Prime):
                    step = flow.send(prime(step))
                else:
                    step = flow.send(self._send(step))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _arun(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, Sleep):
                    await self._async_sleep(step.seconds)
                    step = flow.send(None)
                elif isinstance(step, Prime):
                    step = flow.send(await aprime(step))
                else:
                    step = flow.send(await self._asend(step))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _send(self, call: ProviderCall) -> Outcome:
        client = self._http(call)
        started = time.perf_counter()
        try:
            response = client.send(call.request, stream=True)
            # In-memory responses (mocks, the deterministic upstream) are read.
            wanted = not call.stream or response.status_code >= 300
            if wanted and not response.is_stream_consumed:
                reader = BodyReader(call, response, started)
                try:
                    for part in response.iter_raw():
                        if reader.add(part):
                            break
                finally:
                    response.close()
                response = reader.response()
        except httpx.HTTPError as exc:
            return outcome(call, None, exc, started)
        return outcome(call, response, None, started)

    async def _asend(self, call: ProviderCall) -> Outcome:
        client = self._ahttp(call)
        started = time.perf_counter()
        try:
            response = await client.send(call.request, stream=True)
            wanted = not call.stream or response.status_code >= 300
            if wanted and not response.is_stream_consumed:
                reader = BodyReader(call, response, started)
                try:
                    async for part in response.aiter_raw():
                        if reader.add(part):
                            break
                finally:
                    await response.aclose()
                response = reader.response()
        except httpx.HTTPError as exc:
            return outcome(call, None, exc, started)
        return outcome(call, response, None, started)

    # -- lazily built parts --------------------------------------------------

    def _http(self, call: ProviderCall) -> httpx.Client:
        if call.target.model.provider.kind == "deterministic":
            return self._local_clients()[0]
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync_closed:
                    raise RuntimeError("this Palyra client is closed")
                if self._sync is None:
                    self._sync = httpx.Client(transport=self._transport, limits=_LIMITS)
                client = self._sync
        return client

    def _ahttp(self, call: ProviderCall) -> httpx.AsyncClient:
        if call.target.model.provider.kind == "deterministic":
            return self._local_clients()[1]
        loop = running_loop()
        client = self._async
        if client is None or self._async_loop is not loop:
            with self._lock:
                if self._async_closed:
                    raise RuntimeError("this Palyra client is closed")
                if self._async is None or self._async_loop is not loop:
                    # Connections belong to the loop that opened them; a client
                    # used from a new loop (a second asyncio.run) needs new ones.
                    self._async = httpx.AsyncClient(
                        transport=self._async_transport, limits=_LIMITS
                    )
                    self._async_loop = loop
                client = self._async
        return client

    def _local_clients(self) -> tuple[httpx.Client, httpx.AsyncClient]:
        # The deterministic upstream lives in-process: its clients never touch
        # a socket, so they need no closing and are shared by sync and async.
        if self._local is None:
            from ._providers.deterministic import DeterministicTransport

            with self._lock:
                if self._local is None:
                    transport = DeterministicTransport(self._backends_view())
                    self._local = (
                        httpx.Client(transport=transport),
                        httpx.AsyncClient(transport=transport),
                    )
        return self._local  # type: ignore[no-any-return]

    def _backends_view(self) -> Mapping[str, DeterministicBackend]:
        for provider in self.config.providers:
            if provider.kind == "deterministic":
                self._backend(provider.id)
        return self._backends

    def _backend(self, provider_id: str) -> DeterministicBackend:
        backend = self._backends.get(provider_id)
        if backend is None:
            from ._providers.deterministic import DeterministicBackend

            backend = DeterministicBackend(self._token_counter)
            self._backends.setdefault(provider_id, backend)
        return self._backends[provider_id]

    def _token_counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = TiktokenCounter()
        return self._counter

    def _adapter(self, model: ResolvedModel) -> Any:
        kind = model.provider.kind
        adapter = self._adapters.get(kind)
        if adapter is None:
            spec = _ADAPTERS.get(kind)
            if spec is None:
                raise UnsupportedCapabilityError(
                    f"provider kind {kind!r} is not served by palyra {__version__}",
                    capability="provider_kind",
                    provider=model.provider.id,
                    model=model.id,
                )
            module, _, name = spec.partition(":")
            adapter = self._adapters[kind] = getattr(
                importlib.import_module(module), name
            )()
        return adapter

    def _credential(self, model: ResolvedModel) -> str | None:
        return self._credentials(model.provider)


def _guard_base_urls(
    config: PalyraConfig, resolver: Callable[[str, int], list[str]] | None
) -> None:
    # Host names are resolved now, once: a name may point into a private network
    # (or at cloud metadata) where a literal address in the config would not.
    from ._core import (
        netguard as _netguard,  # stdlib only; decides itself which hosts to check
    )

    _netguard.guard(config.providers, resolver or _netguard.system_resolver)


def _load_config(
    config: PalyraConfig | Mapping[str, Any] | str | Path | None,
) -> PalyraConfig:
    if config is None:
        return PalyraConfig()
    if isinstance(config, PalyraConfig):
        return config
    if isinstance(config, str | Path):
        return PalyraConfig.from_file(config)
    return PalyraConfig.from_dict(config)
