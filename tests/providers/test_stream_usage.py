"""Honest usage for every stream, seen where governance sees it (the
after-completion and after-failure hooks), against the real loopback upstream:
a stream closed early or cut mid-way bills the prompt and the text it showed,
flagged estimated; a full upstream report is kept as it came."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import palyra
from palyra._core.hooks import Completion, Failed
from palyra._governance.usage import from_openai
from palyra._wire import CompletionUsage
from tests.conftest import FAKE_KEY
from tests.helpers import (
    DRIVERS,
    AnyStream,
    chunk_json,
    close,
    loopback_transports,
    start_stream,
    upstream_config,
)
from tests.upstream import Reply, Upstream, anthropic_sse

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

USER = [{"role": "user", "content": "Count the tokens of this prompt, please."}]
USAGE = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def usage_chunk(usage: dict[str, Any] = USAGE) -> str:
    return json.dumps({**json.loads(chunk_json()), "choices": [], "usage": usage})


class Seen:
    """What governance will see: the usage each end hook received."""

    def __init__(self, client: palyra.Palyra) -> None:
        self.completions: list[Completion] = []
        self.failures: list[Failed] = []
        hooks = client._pipeline.hooks
        hooks.after_completion.append(lambda ctx, c: self.completions.append(c))
        hooks.after_failure.append(self._failed)

    def _failed(self, ctx: Any, failed: Failed) -> None:
        # The call-level report repeats the candidate's: keep the candidate's.
        if failed.candidate is not None:
            self.failures.append(failed)

    @property
    def completed(self) -> CompletionUsage:
        [completion] = self.completions
        assert isinstance(completion.usage, CompletionUsage)
        return completion.usage

    @property
    def failed(self) -> CompletionUsage:
        [failed] = self.failures
        assert isinstance(failed.usage, CompletionUsage)
        return failed.usage


@pytest.fixture(name="client")
async def client_fixture(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, driver: str
) -> AsyncIterator[palyra.Palyra]:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    client = palyra.Palyra(upstream_config(upstream.base_url), **loopback_transports())
    yield client
    if driver == "async":
        await client.aclose()
    else:
        client.close()


async def first_chunk(stream: AnyStream) -> palyra.ChatCompletionChunk:
    if isinstance(stream, palyra.AsyncStream):
        return await stream.__anext__()
    return next(stream)


async def read_all(stream: AnyStream) -> Exception | None:
    """Read the stream to its end; the error it raised, if any."""
    try:
        if isinstance(stream, palyra.AsyncStream):
            async with stream:
                async for _ in stream:
                    pass
        else:
            with stream:
                for _ in stream:
                    pass
    except palyra.APIError as exc:
        return exc
    return None


def prompt_estimate(stream: AnyStream) -> int:
    estimate = stream.palyra.token_estimate
    assert estimate is not None
    assert estimate.prompt_tokens > 0
    return estimate.prompt_tokens


# -- OpenAI-compatible -------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
async def test_reader_closing_after_the_first_chunk_bills_an_estimate(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    events = [chunk_json("Hello"), chunk_json(" world", "stop"), usage_chunk()]
    upstream.enqueue(Reply(sse=[*events, "[DONE]"], chunk_delay=0.3))
    seen = Seen(client)
    stream = await start_stream(client, driver, USER)
    chunk = await first_chunk(stream)
    assert chunk.choices[0].delta.content == "Hello"
    await close(stream)
    usage = seen.completed
    assert seen.completions[0].complete is False
    assert usage.prompt_tokens == prompt_estimate(stream)
    assert usage.completion_tokens >= 1  # "Hello", counted locally
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert stream.palyra.usage_estimated is True


@pytest.mark.parametrize("driver", DRIVERS)
async def test_reader_closing_before_any_text_still_bills_the_prompt(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    events = [chunk_json(""), chunk_json("Hello", "stop"), usage_chunk()]
    upstream.enqueue(Reply(sse=[*events, "[DONE]"], chunk_delay=0.3))
    seen = Seen(client)
    stream = await start_stream(client, driver, USER)
    await close(stream)
    usage = seen.completed
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        prompt_estimate(stream),
        0,
    )
    assert stream.palyra.usage_estimated is True


@pytest.mark.parametrize("driver", DRIVERS)
async def test_connection_drop_mid_stream_bills_an_estimate(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    events = [chunk_json("Hello"), chunk_json(" world"), chunk_json(" again")]
    upstream.enqueue(Reply(sse=events, cut_after=2))
    seen = Seen(client)
    stream = await start_stream(client, driver, USER)
    error = await read_all(stream)
    assert isinstance(error, palyra.StreamInterruptedError)
    assert seen.failures[0].error is error
    usage = seen.failed
    assert usage.prompt_tokens == prompt_estimate(stream)
    assert usage.completion_tokens == 2  # "Hello", " world"
    assert stream.palyra.usage_estimated is True


@pytest.mark.parametrize("driver", DRIVERS)
async def test_full_usage_before_the_cut_is_kept(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    upstream.enqueue(
        Reply(sse=[chunk_json("Hello", "stop"), usage_chunk()], cut_after=2)
    )
    seen = Seen(client)
    stream = await start_stream(client, driver, USER)
    error = await read_all(stream)
    assert isinstance(error, palyra.StreamInterruptedError)
    assert seen.failed == CompletionUsage.model_validate(USAGE)
    assert stream.palyra.usage_estimated is False


@pytest.mark.parametrize("driver", DRIVERS)
async def test_upstream_ignoring_include_usage_is_estimated_at_finish(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    upstream.enqueue(Reply(sse=[chunk_json("Hello"), chunk_json(" world", "stop")]))
    seen = Seen(client)
    stream = await start_stream(client, driver, USER)
    assert await read_all(stream) is None
    usage = seen.completed
    assert seen.completions[0].complete is True
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        prompt_estimate(stream),
        2,
    )
    assert usage == stream.usage
    assert stream.palyra.usage_estimated is True


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="not-asked"),
        pytest.param({"stream_options": {"include_usage": False}}, id="declined"),
        pytest.param({"stream_options": {"include_usage": True}}, id="asked"),
    ],
)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_streams_always_ask_the_upstream_for_usage(
    upstream: Upstream, client: palyra.Palyra, driver: str, options: dict[str, Any]
) -> None:
    """Governance needs the usage whatever the caller asked; the caller gets
    the usage-only chunk only if it asked for it."""
    events = [chunk_json("Hello", "stop"), usage_chunk(), "[DONE]"]
    upstream.enqueue(Reply(sse=events))
    seen = Seen(client)
    stream = await start_stream(client, driver, USER, **options)
    chunks = []
    if isinstance(stream, palyra.AsyncStream):
        async with stream:
            chunks = [c async for c in stream]
    else:
        with stream:
            chunks = list(stream)
    body = upstream.requests[-1].json()
    assert body["stream_options"]["include_usage"] is True
    asked = bool(options.get("stream_options", {}).get("include_usage"))
    assert any(c.usage is not None for c in chunks) is asked
    assert seen.completed == CompletionUsage.model_validate(USAGE) == stream.usage
    assert stream.palyra.usage_estimated is False


# -- Anthropic ---------------------------------------------------------------------


def anthropic_client(upstream: Upstream) -> palyra.Palyra:
    provider = {
        "id": "ant",
        "kind": "anthropic",
        "base_url": upstream.origin,
        "timeout": 2,
        "max_retries": 0,
    }
    model = {"id": "claude", "provider": "ant", "upstream_model": "claude-sonnet-4-5"}
    return palyra.Palyra(
        {"providers": [provider], "models": [model]},
        **loopback_transports(),
        credentials=lambda p: FAKE_KEY,
    )


def anthropic_events(
    start_usage: dict[str, Any], end_usage: dict[str, Any] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """A text answer "Hello world"; without ``end_usage``, cut after its text."""
    start = {
        "id": "msg_usage",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "usage": start_usage,
    }
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"message": start}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text"}}),
        (
            "content_block_delta",
            {"index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
        ),
        (
            "content_block_delta",
            {"index": 0, "delta": {"type": "text_delta", "text": " world"}},
        ),
    ]
    if end_usage is not None:
        events += [
            ("content_block_stop", {"index": 0}),
            (
                "message_delta",
                {"delta": {"stop_reason": "end_turn"}, "usage": end_usage},
            ),
        ]
    return events


async def anthropic_stream(client: palyra.Palyra, driver: str) -> AnyStream:
    if driver == "sync":
        return client.stream(USER, "claude")
    return await client.astream(USER, "claude")


@pytest.mark.parametrize("driver", DRIVERS)
async def test_anthropic_cut_after_message_start_counts_the_text(
    upstream: Upstream, driver: str
) -> None:
    """The prompt is the upstream's (``message_start``), the output the text
    seen, larger than ``message_start``'s output count."""
    start = {"input_tokens": 30, "cache_read_input_tokens": 5, "output_tokens": 1}
    upstream.enqueue(anthropic_sse(anthropic_events(start), cut_after=4))
    async with anthropic_client(upstream) as client:
        seen = Seen(client)
        stream = await anthropic_stream(client, driver)
        error = await read_all(stream)
    assert isinstance(error, palyra.StreamInterruptedError)
    usage = seen.failed
    assert (usage.prompt_tokens, usage.completion_tokens) == (35, 2)
    assert usage.total_tokens == 37
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 5
    assert stream.palyra.usage_estimated is True


@pytest.mark.parametrize("driver", DRIVERS)
async def test_anthropic_final_usage_before_the_cut_is_kept(
    upstream: Upstream, driver: str
) -> None:
    """``message_delta`` with the stop reason carries the final counts: a cut
    before ``message_stop`` bills them as reported."""
    events = anthropic_events(
        {"input_tokens": 30, "output_tokens": 1}, {"output_tokens": 9}
    )
    upstream.enqueue(anthropic_sse(events, cut_after=len(events)))
    async with anthropic_client(upstream) as client:
        seen = Seen(client)
        stream = await anthropic_stream(client, driver)
        error = await read_all(stream)
    assert isinstance(error, palyra.StreamInterruptedError)
    usage = seen.failed
    assert (usage.prompt_tokens, usage.completion_tokens) == (30, 9)
    assert stream.palyra.usage_estimated is False


@pytest.mark.parametrize("driver", DRIVERS)
async def test_anthropic_stream_carries_the_1h_cache_writes(
    upstream: Upstream, driver: str
) -> None:
    start = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 300,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 100,
            "ephemeral_1h_input_tokens": 200,
        },
        "output_tokens": 1,
    }
    events = anthropic_events(start, {"output_tokens": 4})
    upstream.enqueue(anthropic_sse([*events, ("message_stop", {})]))
    async with anthropic_client(upstream) as client:
        seen = Seen(client)
        stream = await anthropic_stream(client, driver)
        assert await read_all(stream) is None
    usage = stream.usage
    assert usage is not None
    assert usage == seen.completed
    assert usage.prompt_tokens == 310
    details = usage.prompt_tokens_details
    assert details is not None
    assert (details.cache_write_tokens, details.cache_write_1h_tokens) == (300, 200)
    normalized = from_openai(usage)
    assert (normalized.cache_write_5m, normalized.cache_write_1h) == (100, 200)
    assert normalized.input_uncached == 10
    assert stream.palyra.usage_estimated is False
