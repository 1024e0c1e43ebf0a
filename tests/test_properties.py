"""Property: whatever a caller passes, a call succeeds or raises a palyra error.

Hypothesis draws the arguments of ``chat``, ``stream``, ``count_tokens``,
``embed`` and ``transcribe`` (tests/strategies.py: plausible shapes whose leaves
may be anything) and runs each call sync and async against an OpenAI-dialect
upstream (`OpenAIMock`), an Anthropic one (`AnthropicMock`) and the
deterministic provider, all in-process. What may come out:

- the call's result, or a `palyra.PalyraError` subclass, the same type sync and
  async;
- a `TypeError` only for what Python calls one: an unknown keyword;
- never the API key, in any message;
- never an exception inside the mocks (they answer whatever palyra sends).

The examples are derandomized and not stored, so CI runs the same ones every
time and nothing is written to ``.hypothesis/``. `tests/test_bad_input.py`
holds a regression row for each bare exception this found.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import palyra
from palyra.testing import AnthropicMock, OpenAIMock
from tests.strategies import (
    ANYTHING,
    CALLER,
    INTS,
    MESSAGES,
    OPTION_STRATEGIES,
    REQUEST_OPTIONS,
    TEXT,
    VALID_MESSAGES,
    maybe,
    options,
)

KEY = "sk-propertytest-0123456789abcdef"
ALL_CAPABILITIES = {"tools": True, "json_mode": True, "vision": True, "audio": True}
CHAT_MODELS = ["gpt-4o-mini", "fast", "claude", "sonnet", "det", "offline"]


def _chat(model_id: str, provider: str, alias: str, **entry: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "provider": provider,
        "aliases": [alias],
        "capabilities": ALL_CAPABILITIES,
        "fallbacks": [],
        "context_window": 200_000,
        **entry,
    }


PROVIDER = {"max_retries": 0, "circuit_breaker_threshold": 1000}
CONFIG = {
    "providers": [
        {"id": "oa", "kind": "openai", **PROVIDER},
        {"id": "an", "kind": "anthropic", **PROVIDER},
        {"id": "local", "kind": "deterministic", **PROVIDER},
    ],
    "models": [
        _chat("gpt-4o-mini", "oa", "fast"),
        _chat(
            "claude",
            "an",
            "sonnet",
            upstream_model="claude-sonnet-4-5",
            max_output_tokens=1024,
        ),
        _chat("det", "local", "offline"),
        {"id": "emb", "provider": "oa", "role": "embeddings", "dimensions": 4},
        {"id": "det-emb", "provider": "local", "role": "embeddings"},
        {"id": "whisper-1", "provider": "oa", "role": "audio_transcription"},
    ],
}

# -- the property ----------------------------------------------------------------------


@dataclass
class Upstreams:
    """Both mocks behind one transport, with whatever they raised."""

    openai: OpenAIMock = field(default_factory=OpenAIMock)
    anthropic: AnthropicMock = field(default_factory=AnthropicMock)
    crashes: list[BaseException] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        mock = self.openai if request.url.host == "api.openai.com" else self.anthropic
        try:
            return mock.handle(request)
        except Exception as exc:
            self.crashes.append(exc)
            raise


Call = Callable[[palyra.Palyra, bool], Coroutine[Any, Any, None]]


@dataclass
class Harness:
    """One client, its upstreams and the event loop its async calls run on."""

    client: palyra.Palyra
    upstreams: Upstreams
    runner: asyncio.Runner

    def outcome(self, call: Call, is_async: bool) -> BaseException | None:
        """Run one call to its end: None, or what it raised."""
        try:
            if is_async:
                self.runner.run(_awaited(call(self.client, True)))
            else:
                _finish(call(self.client, False))
        except Exception as exc:
            return exc
        return None

    def check(self, call: Call, type_error_allowed: bool) -> None:
        """The property, sync and async."""
        sync = self.outcome(call, False)
        asynchronous = self.outcome(call, True)
        for exc in (sync, asynchronous):
            _check_error(exc, type_error_allowed)
        assert type(sync) is type(asynchronous), (sync, asynchronous)
        assert self.upstreams.crashes == [], self.upstreams.crashes
        self.upstreams.openai.history.clear()
        self.upstreams.anthropic.history.clear()


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


def _finish(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run a sync call's coroutine (which awaits nothing) outside any loop."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise AssertionError("a sync call awaited something")


def _check_error(exc: BaseException | None, type_error_allowed: bool) -> None:
    if exc is None:
        return
    allowed: tuple[type[BaseException], ...] = (palyra.PalyraError,)
    if type_error_allowed:
        allowed += (TypeError,)
    if not isinstance(exc, allowed):
        raise AssertionError(f"bare {type(exc).__name__} escaped") from exc
    seen = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        for text in (str(link), repr(link)):
            assert KEY not in text, f"the API key is in {type(link).__name__}"
        link = link.__cause__ or link.__context__


@pytest.fixture(name="harness", scope="module")
def harness_fixture() -> Iterator[Harness]:
    upstreams = Upstreams()
    transport = httpx.MockTransport(upstreams.handle)
    with asyncio.Runner() as runner:
        client = palyra.Palyra(
            CONFIG,
            transport=transport,
            async_transport=transport,
            credentials=lambda provider: KEY,
        )
        try:
            yield Harness(client, upstreams, runner)
        finally:
            runner.run(client.aclose())
            client.close()


def test_the_checker_catches_what_the_property_forbids() -> None:
    """Bare exceptions, a TypeError that is not for an unknown keyword, and the
    key in a message or anywhere down the chain all fail the property."""
    _check_error(None, False)
    _check_error(palyra.InvalidRequestError("x: bad"), False)
    _check_error(TypeError("unknown chat option(s): x"), True)
    for exc, type_error_allowed in (
        (ValueError("x"), True),
        (TypeError("'int' object is not iterable"), False),
        (palyra.InvalidRequestError(f"key {KEY}"), False),
    ):
        with pytest.raises(AssertionError):
            _check_error(exc, type_error_allowed)
    chained = palyra.InvalidRequestError("x: bad")
    chained.__cause__ = RuntimeError(KEY)
    with pytest.raises(AssertionError, match="the API key is in RuntimeError"):
        _check_error(chained, False)


def _unknown(kwargs: dict[str, Any]) -> bool:
    return any(name not in OPTION_STRATEGIES for name in kwargs)


PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
)
MODEL = st.one_of(
    st.sampled_from(CHAT_MODELS),
    st.sampled_from(CHAT_MODELS),
    st.sampled_from([None, "emb", "whisper-1", "gpt-4o", ""]),
    ANYTHING,
)
CHAT_OPTIONS = tuple(OPTION_STRATEGIES)


# -- the calls -------------------------------------------------------------------------


async def _drain(stream: palyra.Stream | palyra.AsyncStream) -> None:
    if isinstance(stream, palyra.AsyncStream):
        async with stream:
            async for _chunk in stream:
                pass
    else:
        with stream:
            for _chunk in stream:
                pass


async def _chat(
    client: palyra.Palyra, is_async: bool, streamed: bool, *args: Any, **kwargs: Any
) -> None:
    if streamed and is_async:
        await _drain(await client.astream(*args, **kwargs))
    elif streamed:
        await _drain(client.stream(*args, **kwargs))
    elif is_async:
        await client.achat(*args, **kwargs)
    else:
        client.chat(*args, **kwargs)


@PROPERTY
@given(
    streamed=st.booleans(),
    messages=MESSAGES,
    model=MODEL,
    kwargs=options(CHAT_OPTIONS),
    caller=CALLER,
)
def test_chat_and_stream_raise_only_palyra_errors(
    harness: Harness,
    streamed: bool,
    messages: Any,
    model: Any,
    kwargs: dict[str, Any],
    caller: dict[str, Any],
) -> None:
    """Everything drawn at once."""

    async def call(client: palyra.Palyra, is_async: bool) -> None:
        await _chat(client, is_async, streamed, messages, model, **caller, **kwargs)

    harness.check(call, _unknown(kwargs))


@PROPERTY
@given(
    streamed=st.booleans(),
    messages=VALID_MESSAGES,
    model=st.sampled_from(CHAT_MODELS),
    kwargs=options(CHAT_OPTIONS, min_size=1),
)
def test_any_chat_option_on_good_messages(
    harness: Harness,
    streamed: bool,
    messages: Any,
    model: Any,
    kwargs: dict[str, Any],
) -> None:
    """Good messages to a real model: the options reach the request builders."""

    async def call(client: palyra.Palyra, is_async: bool) -> None:
        await _chat(client, is_async, streamed, messages, model, **kwargs)

    harness.check(call, _unknown(kwargs))


@PROPERTY
@given(
    streamed=st.booleans(),
    messages=MESSAGES,
    model=st.sampled_from(CHAT_MODELS),
)
def test_any_messages_without_options(
    harness: Harness, streamed: bool, messages: Any, model: Any
) -> None:
    """No options to trip over first: the messages reach the translations."""

    async def call(client: palyra.Palyra, is_async: bool) -> None:
        await _chat(client, is_async, streamed, messages, model)

    harness.check(call, False)


@PROPERTY
@given(
    messages=MESSAGES,
    model=MODEL,
    exact=maybe(st.booleans()),
    kwargs=options(CHAT_OPTIONS),
    caller=CALLER,
)
def test_count_tokens_raises_only_palyra_errors(
    harness: Harness,
    messages: Any,
    model: Any,
    exact: Any,
    kwargs: dict[str, Any],
    caller: dict[str, Any],
) -> None:
    async def call(client: palyra.Palyra, is_async: bool) -> None:
        if is_async:
            await client.acount_tokens(messages, model, exact=exact, **caller, **kwargs)
        else:
            client.count_tokens(messages, model, exact=exact, **caller, **kwargs)

    harness.check(call, _unknown(kwargs))


EMBED_INPUTS = st.one_of(
    TEXT, st.lists(TEXT, max_size=4), st.lists(ANYTHING, max_size=3), ANYTHING
)


@PROPERTY
@given(
    inputs=EMBED_INPUTS,
    model=st.one_of(st.sampled_from(["emb", "det-emb", None, "fast"]), ANYTHING),
    dimensions=st.one_of(st.none(), st.integers(-2, 8), INTS, ANYTHING),
    kwargs=options(REQUEST_OPTIONS),
    caller=CALLER,
)
def test_embed_raises_only_palyra_errors(
    harness: Harness,
    inputs: Any,
    model: Any,
    dimensions: Any,
    kwargs: dict[str, Any],
    caller: dict[str, Any],
) -> None:
    async def call(client: palyra.Palyra, is_async: bool) -> None:
        args = {"dimensions": dimensions, **caller, **kwargs}
        if is_async:
            await client.aembed(inputs, model, **args)
        else:
            client.embed(inputs, model, **args)

    harness.check(call, _unknown(kwargs))


def _rewind(file: Any) -> None:
    """File objects are read by a call: each run reads them from the start."""
    for item in file if isinstance(file, tuple) else (file,):
        if isinstance(item, io.BytesIO):
            item.seek(0)


AUDIO = st.one_of(
    st.binary(min_size=1, max_size=8),
    st.tuples(st.sampled_from(["a.wav", "b.mp3", "", "x"]), st.binary(max_size=8)),
    st.tuples(TEXT, ANYTHING),
    st.lists(ANYTHING, max_size=3).map(tuple),
    # Paths that cannot be read (no other string: it would be a file to read).
    st.sampled_from(["/nonexistent/a.wav", "a\x00b.wav", "/", "\ud800.wav"]),
    ANYTHING.filter(lambda value: not isinstance(value, str)),
)


@PROPERTY
@given(
    file=AUDIO,
    model=st.one_of(st.sampled_from(["whisper-1", None, "fast"]), ANYTHING),
    response_format=maybe(st.sampled_from(["json", "verbose_json", "text", "srt"])),
    fields=st.fixed_dictionaries(
        {},
        optional={
            "language": maybe(st.sampled_from(["en", "fr"])),
            "prompt": maybe(TEXT),
            "temperature": OPTION_STRATEGIES["temperature"],
        },
    ),
    kwargs=options(REQUEST_OPTIONS),
)
def test_transcribe_raises_only_palyra_errors(
    harness: Harness,
    file: Any,
    model: Any,
    response_format: Any,
    fields: dict[str, Any],
    kwargs: dict[str, Any],
) -> None:
    async def call(client: palyra.Palyra, is_async: bool) -> None:
        args = {"response_format": response_format, **fields, **kwargs}
        _rewind(file)
        if is_async:
            await client.atranscribe(file, model, **args)
        else:
            client.transcribe(file, model, **args)

    harness.check(call, _unknown(kwargs))
