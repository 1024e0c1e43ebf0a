"""End-to-end tests of the Anthropic provider against a real loopback server.

Every test talks HTTP to `tests.upstream.Upstream` on 127.0.0.1 in the Anthropic
Messages dialect (``POST /v1/messages``, named-event SSE, the ``{"type": "error"}``
envelope), through the public client, with the sync driver and the async one.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import DRIVERS, OPS, loopback_transports
from tests.upstream import (
    ANTHROPIC_MODELS,
    ANTHROPIC_TOOL_RESULTS_TEXT,
    Reply,
    Upstream,
    anthropic_error_reply,
    anthropic_sse,
    load_recorded,
)

pytestmark = pytest.mark.e2e

MODEL = "claude"
UPSTREAM_MODEL = "claude-sonnet-4-5"
MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there world"},
]

AnyStream = palyra.Stream | palyra.AsyncStream


def config(upstream: Upstream, **provider: Any) -> dict[str, Any]:
    """One Anthropic provider on the upstream's origin (no ``/v1``)."""
    return {
        "providers": [
            {
                "id": "ant",
                "kind": "anthropic",
                "base_url": upstream.origin,
                "timeout": 2,
                "max_retries": 0,
                **provider,
            }
        ],
        "models": [
            {
                "id": MODEL,
                "provider": "ant",
                "upstream_model": UPSTREAM_MODEL,
                "context_window": 200000,
                "max_output_tokens": 1024,
            }
        ],
    }


def connect(upstream: Upstream, key: str = FAKE_KEY, **provider: Any) -> palyra.Palyra:
    """A client on the upstream, with ``key`` as the credential."""
    return palyra.Palyra(
        config(upstream, **provider),
        **loopback_transports(),
        credentials=lambda p: key,
    )


async def chat(
    client: palyra.Palyra, driver: str, messages: Any = MESSAGES, **options: Any
) -> palyra.ChatCompletion:
    """A non-streaming chat call through the chosen driver."""
    if driver == "sync":
        return client.chat(messages, MODEL, **options)
    return await client.achat(messages, MODEL, **options)


async def read_stream(
    client: palyra.Palyra, driver: str, messages: Any = MESSAGES, **options: Any
) -> tuple[list[palyra.ChatCompletionChunk], AnyStream, Exception | None]:
    """Open a stream and read it all: chunks, the stream, the error if any."""
    chunks: list[palyra.ChatCompletionChunk] = []
    error: Exception | None = None
    if driver == "sync":
        stream: AnyStream = client.stream(messages, MODEL, **options)
        with stream:
            try:
                for chunk in stream:
                    chunks.append(chunk)
            except palyra.APIError as exc:
                error = exc
    else:
        stream = await client.astream(messages, MODEL, **options)
        async with stream:
            try:
                async for chunk in stream:
                    chunks.append(chunk)
            except palyra.APIError as exc:
                error = exc
    return chunks, stream, error


async def run(client: palyra.Palyra, driver: str, op: str) -> None:
    """A chat call or a whole stream, for tests that expect it to fail."""
    if op == "chat":
        await chat(client, driver)
    else:
        _, _, error = await read_stream(client, driver)
        if error is not None:
            raise error


# -- success paths -------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_chat_round_trip(upstream: Upstream, driver: str) -> None:
    """A chat call reaches ``/v1/messages`` translated and comes back OpenAI-shaped."""
    async with connect(upstream) as client:
        completion = await chat(client, driver, temperature=0.2, stop=["END"])
    (choice,) = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "hello there world"
    assert choice.finish_reason == "stop"
    assert completion.id == "msg_upstream_1"
    assert completion.model == UPSTREAM_MODEL
    usage = completion.usage
    assert usage is not None
    # The echo server counts words: "be brief" + "hello there world" in, 3 out.
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        5,
        3,
        8,
    )
    assert completion.palyra is not None
    assert completion.palyra.provider == "ant"
    attempts = completion.palyra.attempts
    assert [(a.outcome, a.status_code, a.request_id) for a in attempts] == [
        ("success", 200, "req_1")
    ]
    (request,) = upstream.requests
    assert request.method == "POST"
    assert request.path == "/v1/messages"
    assert request.json() == {
        "model": UPSTREAM_MODEL,
        "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hello there world"}]}
        ],
        "system": "be brief",
        "temperature": 0.2,
        "stop_sequences": ["END"],
    }


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_stream_round_trip(upstream: Upstream, driver: str) -> None:
    """Named SSE events from the server become OpenAI chunks, ping ignored."""
    async with connect(upstream) as client:
        chunks, stream, error = await read_stream(
            client, driver, stream_options={"include_usage": True}
        )
    assert error is None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello there world"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert not chunks[-1].choices
    assert chunks[-1].usage == stream.usage
    completion = stream.completion
    assert completion is not None
    assert completion.choices[0].message.content == "hello there world"
    assert completion.id == "msg_upstream_1"
    assert stream.palyra.attempts[0].request_id == "req_1"
    assert stream.usage is not None
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (5, 3)
    (request,) = upstream.requests
    body = request.json()
    assert body["stream"] is True
    assert "stream_options" not in body


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_tool_conversation_round_trip(upstream: Upstream, driver: str) -> None:
    """A tool call and its result travel as ``tool_use`` / ``tool_result`` blocks."""
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "rainy"},
    ]
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    async with connect(upstream) as client:
        completion = await chat(client, driver, messages, tools=tools)
    assert completion.choices[0].message.content == ANTHROPIC_TOOL_RESULTS_TEXT
    body = upstream.requests[0].json()
    assert body["messages"][1]["content"] == [
        {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "get_weather",
            "input": {"city": "Oslo"},
        }
    ]
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "rainy"}
        ],
    }


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_recorded_tool_stream_over_http(upstream: Upstream, driver: str) -> None:
    """The recorded tool_use stream, sent over HTTP, assembles one tool call."""
    raw = load_recorded("anthropic/tool_use_response.sse").rstrip(b"\n") + b"\n\n"
    upstream.enqueue(Reply(sse_raw=raw, chunk_delay=0.001))
    async with connect(upstream) as client:
        _, stream, error = await read_stream(client, driver)
    assert error is None
    assert stream.completion is not None
    (choice,) = stream.completion.choices
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.id == "toolu_01NRLabsLyVHZPKxbKvkfSMn"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}


# -- auth headers as the server receives them ------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_x_api_key_headers_received(
    upstream: Upstream, driver: str, op: str
) -> None:
    """The server receives ``x-api-key`` and ``anthropic-version``, no Bearer."""
    async with connect(upstream) as client:
        await run(client, driver, op)
    (request,) = upstream.requests
    assert request.headers["x-api-key"] == FAKE_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert "anthropic-beta" not in request.headers


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_bearer_headers_received(
    upstream: Upstream, driver: str, op: str
) -> None:
    """``auth_header = "bearer"``: Authorization Bearer plus the OAuth beta header."""
    async with connect(upstream, auth_header="bearer") as client:
        await run(client, driver, op)
    (request,) = upstream.requests
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert request.headers["anthropic-beta"] == "oauth-2025-04-20"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "x-api-key" not in request.headers


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_wrong_key_is_authentication_error(
    upstream: Upstream, driver: str, op: str
) -> None:
    """The server's 401 ``authentication_error`` is `AuthenticationError`."""
    wrong = "sk-ant-wrong-KEY-0123456789"
    async with connect(upstream, key=wrong) as client:
        with pytest.raises(palyra.AuthenticationError) as info:
            await run(client, driver, op)
    assert info.value.status_code == 401
    assert info.value.type == "authentication_error"
    assert info.value.message == "invalid x-api-key"
    assert wrong not in str(info.value)


# -- errors ----------------------------------------------------------------------


ERRORS = [
    pytest.param(400, "invalid_request_error", palyra.BadRequestError, id="400"),
    pytest.param(404, "not_found_error", palyra.NotFoundError, id="404"),
    pytest.param(413, "request_too_large", palyra.RequestTooLargeError, id="413"),
    pytest.param(429, "rate_limit_error", palyra.RateLimitError, id="429"),
    pytest.param(500, "api_error", palyra.InternalServerError, id="500"),
    pytest.param(529, "overloaded_error", palyra.OverloadedError, id="529"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "error_type", "cls"), ERRORS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_error_envelope(
    upstream: Upstream,
    driver: str,
    op: str,
    status: int,
    error_type: str,
    cls: type[palyra.APIStatusError],
) -> None:
    """The Anthropic error envelope becomes its typed error, with the request id."""
    upstream.enqueue(
        anthropic_error_reply(
            status,
            error_type,
            f"{error_type}: details",
            headers={"request-id": "req_e2e"},
        )
    )
    async with connect(upstream) as client:
        with pytest.raises(palyra.APIStatusError) as info:
            await run(client, driver, op)
    error = info.value
    assert type(error) is cls
    assert error.status_code == status
    assert error.message == f"{error_type}: details"
    assert error.type == error_type
    assert (error.provider, error.model) == ("ant", MODEL)
    assert error.request_id == "req_e2e"
    assert upstream.pending == 0


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_529_is_overloaded(upstream: Upstream, driver: str, op: str) -> None:
    """HTTP 529 ``overloaded_error`` is `OverloadedError`, a retryable 5xx."""
    upstream.enqueue(anthropic_error_reply(529, "overloaded_error", "Overloaded"))
    async with connect(upstream) as client:
        with pytest.raises(palyra.InternalServerError) as info:
            await run(client, driver, op)
    assert isinstance(info.value, palyra.OverloadedError)
    assert str(info.value).startswith("HTTP 529: Overloaded")
    assert len(upstream.requests) == 1


def _events_before_error() -> list[tuple[str, dict[str, Any]]]:
    start = {
        "id": "msg_e2e",
        "type": "message",
        "role": "assistant",
        "model": UPSTREAM_MODEL,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    return [
        ("message_start", {"message": start}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text"}}),
        ("ping", {}),
        (
            "content_block_delta",
            {"index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        ),
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_overloaded_error_event_mid_stream(
    upstream: Upstream, driver: str
) -> None:
    """An ``error`` event after some text raises `OverloadedError` from the iterator."""
    error_event = {"error": {"type": "overloaded_error", "message": "Overloaded"}}
    upstream.enqueue(
        anthropic_sse(
            [*_events_before_error(), ("error", error_event)],
            headers={"request-id": "req_mid"},
        )
    )
    async with connect(upstream) as client:
        chunks, stream, error = await read_stream(client, driver)
    assert isinstance(error, palyra.OverloadedError)
    assert error.status_code == 529
    assert error.request_id == "req_mid"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hel"
    assert stream.completion is None


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_connection_cut_mid_stream(upstream: Upstream, driver: str) -> None:
    """A stream whose connection breaks before ``message_stop`` is interrupted."""
    upstream.enqueue(anthropic_sse(_events_before_error(), cut_after=4))
    async with connect(upstream) as client:
        chunks, stream, error = await read_stream(client, driver)
    assert isinstance(error, palyra.StreamInterruptedError)
    assert "partial" in error.message
    assert chunks
    assert stream.completion is None


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_stream_ending_without_message_stop(
    upstream: Upstream, driver: str
) -> None:
    """A cleanly closed body without ``message_stop`` is not a success."""
    upstream.enqueue(anthropic_sse(_events_before_error()))
    async with connect(upstream) as client:
        _, stream, error = await read_stream(client, driver)
    assert isinstance(error, palyra.StreamInterruptedError)
    assert "message_stop" in error.message
    assert stream.completion is None


# -- models and exact token counts -------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_models_and_count_tokens(upstream: Upstream, driver: str) -> None:
    """``GET /v1/models`` is paged through; ``count_tokens`` asks the server."""
    async with connect(upstream) as client:
        if driver == "sync":
            models = client.provider_models("ant")
            count = client.count_tokens(MESSAGES, MODEL)
        else:
            models = await client.aprovider_models("ant")
            count = await client.acount_tokens(MESSAGES, MODEL)
    assert [m.id for m in models] == [model_id for model_id, _ in ANTHROPIC_MODELS]
    assert {m.provider for m in models} == {"ant"}
    assert count.exact == 5
    assert count.estimate.prompt_tokens > 0
    paths = [r.path.split("?")[0] for r in upstream.requests]
    assert paths[-1] == "/v1/messages/count_tokens"
    assert set(paths[:-1]) == {"/v1/models"}
    assert all(r.headers["x-api-key"] == FAKE_KEY for r in upstream.requests)


@pytest.mark.parametrize(
    "provider",
    [
        pytest.param({}, id="x-api-key"),
        pytest.param({"auth_header": "bearer"}, id="bearer"),
    ],
)
def test_debug_logs_and_errors_never_carry_the_key_on_the_anthropic_path(
    caplog: pytest.LogCaptureFixture, provider: dict[str, Any]
) -> None:
    """DEBUG logging of palyra, httpx and httpcore over real Anthropic calls
    (chat, stream, an error echoing the key, a mid-stream error echoing it)."""
    caplog.set_level(logging.DEBUG)
    for name in ("palyra", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    errors: list[BaseException] = []
    with Upstream(api_key=FAKE_KEY) as upstream:
        client = connect(upstream, **provider)
        with client:
            client.chat(MESSAGES, MODEL)
            with client.stream(MESSAGES, MODEL) as stream:
                list(stream)
            upstream.enqueue(
                anthropic_error_reply(
                    401, "authentication_error", f"invalid x-api-key {FAKE_KEY}"
                )
            )
            with pytest.raises(palyra.AuthenticationError) as auth:
                client.chat(MESSAGES, MODEL)
            errors.append(auth.value)
            upstream.enqueue(
                anthropic_sse(
                    [
                        ("message_start", {"message": {"id": "m", "usage": {}}}),
                        (
                            "error",
                            {
                                "error": {
                                    "type": "overloaded_error",
                                    "message": f"busy {FAKE_KEY}",
                                }
                            },
                        ),
                    ]
                )
            )
            with (
                pytest.raises(palyra.OverloadedError) as busy,
                client.stream(MESSAGES, MODEL) as stream,
            ):
                list(stream)
            errors.append(busy.value)
    received = upstream.requests[0].headers
    assert FAKE_KEY in (
        received.get("x-api-key", "") + received.get("authorization", "")
    )
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    assert FAKE_KEY not in caplog.text
    for record in caplog.records:
        assert FAKE_KEY not in record.getMessage()
        assert FAKE_KEY not in repr(record.args)
    for error in errors:
        seen: BaseException | None = error
        while seen is not None:
            for text in (str(seen), repr(seen), repr(vars(seen))):
                assert FAKE_KEY not in text
            seen = seen.__cause__ or seen.__context__
