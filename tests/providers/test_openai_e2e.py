"""End-to-end tests of the OpenAI-compatible provider against a real loopback server.

Every test talks HTTP to `tests.upstream.Upstream` on 127.0.0.1 through the
public client, with the sync driver (`chat`, `stream`, ...) and the async one
(`achat`, `astream`, ...). Tests parametrized by ``driver`` are anyio tests either
way: the sync calls block the event loop briefly, which is harmless because the
server runs in its own thread.
"""

from __future__ import annotations

import json
import re
import time
import traceback
from typing import Any

import pytest

import palyra
from tests import helpers
from tests.conftest import FAKE_KEY
from tests.helpers import (
    DRIVERS,
    OPS,
    chunk_json,
    drain,
    loopback_transports,
    upstream_config,
)
from tests.upstream import Reply, Upstream, error_reply, html_reply, load_recorded

pytestmark = pytest.mark.e2e

MODEL = "gpt-4o-mini"
MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there world"},
]
AUDIO = ("clip.wav", b"RIFF" + bytes(range(100)))

Result = palyra.ChatCompletion
AnyStream = palyra.Stream | palyra.AsyncStream


def connect(config: dict[str, Any]) -> palyra.Palyra:
    """A client on the upstream with cheap-to-build transports."""
    return palyra.Palyra(
        config,
        **loopback_transports(),
    )


@pytest.fixture
def config(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A registry with chat, embeddings and transcription models on the upstream."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    return upstream_config(upstream.base_url)


# -- drivers -------------------------------------------------------------------


async def chat(client: palyra.Palyra, driver: str, **options: Any) -> Result:
    """A chat call for `MESSAGES` through the chosen driver."""
    return await helpers.chat(client, driver, MESSAGES, MODEL, **options)


async def start_stream(client: palyra.Palyra, driver: str, **options: Any) -> AnyStream:
    """A stream for `MESSAGES`, opened through the chosen driver."""
    return await helpers.start_stream(client, driver, MESSAGES, MODEL, **options)


async def send(
    client: palyra.Palyra, driver: str, op: str, **options: Any
) -> Result | AnyStream:
    """A chat call, or the opening of a stream (closed again at once)."""
    if op == "chat":
        return await chat(client, driver, **options)
    stream = await start_stream(client, driver, **options)
    if isinstance(stream, palyra.AsyncStream):
        await stream.aclose()
    else:
        stream.close()
    return stream


async def run(client: palyra.Palyra, driver: str, op: str, **options: Any) -> Result:
    """A chat call, streamed or not; returns the whole answer."""
    if op == "chat":
        return await chat(client, driver, **options)
    stream = await start_stream(client, driver, **options)
    await drain(stream, [])
    assert stream.completion is not None
    return stream.completion


# -- success paths -------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_chat_round_trip(
    upstream: Upstream, config: dict[str, Any], driver: str
) -> None:
    """A chat call returns content, usage and palyra info, sending key and body."""
    async with palyra.Palyra(config) as client:
        resp = await chat(client, driver)
    assert resp.choices[0].message.content == "hello there world"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    # The upstream counts words: 2 + 3 prompt words, 3 answer words.
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (5, 3)
    assert resp.usage.total_tokens == 8
    info = resp.palyra
    assert info is not None
    assert (info.provider, info.model, info.upstream_model) == ("up", MODEL, MODEL)
    assert len(info.attempts) == 1
    attempt = info.attempts[0]
    assert (attempt.outcome, attempt.status_code, attempt.error) == (
        "success",
        200,
        None,
    )
    assert attempt.request_id == "req_1"
    assert 0 < attempt.latency_ms <= info.latency_ms
    assert info.token_estimate is not None
    assert info.token_estimate.prompt_tokens > 0
    (request,) = upstream.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"model": MODEL, "messages": MESSAGES}


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_chat_options_extra_body_and_headers(
    upstream: Upstream, config: dict[str, Any], driver: str
) -> None:
    """Options go to the body as given, ``extra_body`` is merged in and
    ``extra_headers`` are sent."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    options: dict[str, Any] = {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "max_tokens": 64,
        "stop": ["\n\n"],
        "tools": tools,
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "user": "user-1",
    }
    # JSON mode answers are checked to be JSON: answer with a JSON object.
    answer = {"role": "assistant", "content": '{"ok": true}'}
    upstream.enqueue(
        Reply(
            json={
                "id": "chatcmpl-json",
                "object": "chat.completion",
                "created": 0,
                "model": MODEL,
                "choices": [{"index": 0, "message": answer, "finish_reason": "stop"}],
            }
        )
    )
    async with connect(config) as client:
        await chat(
            client,
            driver,
            **options,
            extra_body={"custom_flag": True, "nested": {"a": [1, 2]}},
            extra_headers={"x-trace-id": "trace-123"},
            timeout=1.5,
        )
    (request,) = upstream.requests
    body = request.json()
    assert body == {
        "model": MODEL,
        "messages": MESSAGES,
        **options,
        "custom_flag": True,
        "nested": {"a": [1, 2]},
    }
    assert request.headers["x-trace-id"] == "trace-123"
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "include_usage", [pytest.param(False, id="default"), pytest.param(True, id="usage")]
)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_stream_round_trip(
    upstream: Upstream, config: dict[str, Any], driver: str, include_usage: bool
) -> None:
    """A streamed answer arrives in chunks that add up to the completion."""
    options: dict[str, Any] = (
        {"stream_options": {"include_usage": True}} if include_usage else {}
    )
    chunks: list[palyra.ChatCompletionChunk] = []
    async with palyra.Palyra(config) as client:
        stream = await start_stream(client, driver, **options)
        await drain(stream, chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello there world"
    # Role chunk, three words, finish chunk, then the usage chunk if asked for.
    assert len(chunks) == 5 + include_usage
    assert (not chunks[-1].choices) is include_usage
    completion = stream.completion
    assert completion is not None
    assert completion.choices[0].message.content == "hello there world"
    assert completion.choices[0].finish_reason == "stop"
    assert stream.usage is not None
    assert stream.usage.total_tokens == 8
    assert stream.palyra.attempts[0].request_id == "req_1"
    body = upstream.requests[0].json()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_embeddings(
    upstream: Upstream, config: dict[str, Any], driver: str
) -> None:
    """Embeddings come back one per input, in input order, with the model's size."""
    inputs = ["alpha", "beta gamma", "delta"]
    async with connect(config) as client:
        if driver == "sync":
            resp = client.embed(inputs, "emb", extra_headers={"x-trace-id": "e1"})
            single = client.embed("alpha", "emb")
        else:
            resp = await client.aembed(
                inputs, "emb", extra_headers={"x-trace-id": "e1"}
            )
            single = await client.aembed("alpha", "emb")
    assert [item.index for item in resp.data] == [0, 1, 2]
    assert all(len(item.embedding) == 8 for item in resp.data)
    assert resp.data[0].embedding == single.data[0].embedding
    assert resp.data[0].embedding != resp.data[1].embedding
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 4
    assert resp.palyra is not None
    assert (resp.palyra.provider, resp.palyra.model) == ("up", "emb")
    request = upstream.requests[0]
    assert request.path == "/v1/embeddings"
    assert request.headers["x-trace-id"] == "e1"
    assert request.json() == {
        "model": "emb",
        "input": inputs,
        "encoding_format": "float",
        "dimensions": 8,
    }


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_embeddings_are_put_in_input_order(
    upstream: Upstream, config: dict[str, Any], driver: str
) -> None:
    """Vectors the upstream returns out of order are sorted by input index."""
    upstream.enqueue(
        Reply(
            json={
                "object": "list",
                "model": "emb",
                "data": [
                    {"object": "embedding", "index": i, "embedding": [float(i)] * 8}
                    for i in (2, 0, 1)
                ],
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            }
        )
    )
    async with connect(config) as client:
        if driver == "sync":
            resp = client.embed(["a", "b", "c"], "emb")
        else:
            resp = await client.aembed(["a", "b", "c"], "emb")
    assert [item.index for item in resp.data] == [0, 1, 2]
    assert [item.embedding[0] for item in resp.data] == [0.0, 1.0, 2.0]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "response_format",
    [
        pytest.param("json", id="json"),
        pytest.param("verbose_json", id="verbose_json"),
        pytest.param("text", id="text"),
    ],
)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_transcription(
    upstream: Upstream, config: dict[str, Any], driver: str, response_format: str
) -> None:
    """A transcription uploads the file as multipart and parses every format."""
    options: dict[str, Any] = {
        "response_format": response_format,
        "language": "en",
        "prompt": "names",
        "temperature": 0,
    }
    async with connect(config) as client:
        if driver == "sync":
            result = client.transcribe(AUDIO, "whisper-1", **options)
        else:
            result = await client.atranscribe(AUDIO, "whisper-1", **options)
    assert result.text == "transcribed 104 bytes of clip.wav"
    if response_format == "verbose_json":
        assert result.language == "en"
        assert result.duration == 1.5
        assert result.segments is not None
        assert result.segments[0].text == result.text
    else:
        assert result.segments is None
    assert result.palyra is not None
    assert result.palyra.model == "whisper-1"
    (request,) = upstream.requests
    assert request.path == "/v1/audio/transcriptions"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    body = request.body
    for name, value in [
        ("model", "whisper-1"),
        ("response_format", response_format),
        ("language", "en"),
        ("prompt", "names"),
        ("temperature", "0"),
    ]:
        assert f'name="{name}"\r\n\r\n{value}\r\n'.encode() in body
    assert b'name="file"; filename="clip.wav"' in body
    assert b"Content-Type: audio/wav\r\n\r\n" + AUDIO[1] in body


# -- HTTP errors -----------------------------------------------------------------

STATUS_ERRORS = [
    pytest.param(400, palyra.BadRequestError, "invalid_request_error", id="400"),
    pytest.param(401, palyra.AuthenticationError, "invalid_request_error", id="401"),
    pytest.param(403, palyra.PermissionDeniedError, "permission_error", id="403"),
    pytest.param(404, palyra.NotFoundError, "invalid_request_error", id="404"),
    pytest.param(409, palyra.ConflictError, "invalid_request_error", id="409"),
    pytest.param(
        422, palyra.UnprocessableEntityError, "invalid_request_error", id="422"
    ),
    pytest.param(429, palyra.RateLimitError, "rate_limit_error", id="429"),
    pytest.param(500, palyra.InternalServerError, "server_error", id="500"),
    pytest.param(503, palyra.InternalServerError, "server_error", id="503"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("status", "cls", "kind"), STATUS_ERRORS)
async def test_status_errors_are_typed(
    upstream: Upstream,
    config: dict[str, Any],
    driver: str,
    op: str,
    status: int,
    cls: type[palyra.APIStatusError],
    kind: str,
) -> None:
    """Each error status maps to its class with provider, model, request id,
    status and the upstream message; a stream raises before any chunk."""
    message = f"upstream says no ({status})"
    upstream.enqueue(error_reply(status, message, type=kind, code=f"code_{status}"))
    async with connect(config) as client:
        with pytest.raises(cls) as info:
            await send(client, driver, op)
    exc = info.value
    assert type(exc) is cls
    assert isinstance(exc, palyra.APIStatusError)
    assert (exc.provider, exc.model) == ("up", MODEL)
    assert exc.status_code == status
    assert exc.request_id == "req_1"
    assert exc.message == message
    assert (exc.code, exc.type) == (f"code_{status}", kind)
    assert exc.body == {
        "error": {
            "message": message,
            "type": kind,
            "param": None,
            "code": f"code_{status}",
        }
    }
    assert str(exc) == (
        f"HTTP {status}: {message} (provider=up, model={MODEL}, request_id=req_1)"
    )
    assert upstream.pending == 0
    assert len(upstream.requests) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_wrong_key_is_an_authentication_error(
    upstream: Upstream,
    config: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    driver: str,
    op: str,
) -> None:
    """A key the upstream rejects raises AuthenticationError."""
    monkeypatch.setenv("UP_KEY", "sk-wrong-key-0000000000")
    async with connect(config) as client:
        with pytest.raises(palyra.AuthenticationError, match="Incorrect API key"):
            await run(client, driver, op)
    assert upstream.requests[0].headers["authorization"] == (
        "Bearer sk-wrong-key-0000000000"
    )


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_html_error_page(
    upstream: Upstream, config: dict[str, Any], driver: str, op: str
) -> None:
    """An HTML error page from a proxy is a typed error naming the content type."""
    upstream.enqueue(html_reply(502))
    async with connect(config) as client:
        with pytest.raises(palyra.InternalServerError) as info:
            await run(client, driver, op)
    exc = info.value
    assert exc.status_code == 502
    assert exc.request_id == "req_1"
    assert "non-JSON error body" in exc.message
    assert "text/html" in exc.message
    assert "502 Bad Gateway" in exc.message
    assert exc.body is None


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_non_json_success_body(
    upstream: Upstream, config: dict[str, Any], driver: str
) -> None:
    """A 200 answer that is not JSON is an APIResponseValidationError."""
    upstream.enqueue(Reply(body=b"<html>maintenance</html>", content_type="text/html"))
    async with connect(config) as client:
        with pytest.raises(palyra.APIResponseValidationError) as info:
            await chat(client, driver)
    exc = info.value
    assert (exc.provider, exc.model, exc.request_id) == ("up", MODEL, "req_1")
    assert "not JSON" in exc.message
    assert "text/html" in exc.message


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_json_success_body_of_the_wrong_shape(
    upstream: Upstream, config: dict[str, Any], driver: str
) -> None:
    """A 200 JSON answer that is not a chat completion is rejected."""
    upstream.enqueue(Reply(json={"hello": "world"}))
    async with connect(config) as client:
        with pytest.raises(palyra.APIResponseValidationError, match="not a chat"):
            await chat(client, driver)


# -- broken streams --------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_truncated_stream_raises_after_the_chunks(
    upstream: Upstream, config: dict[str, Any], driver: str
) -> None:
    """A stream cut mid-body raises StreamInterruptedError after the chunks
    already yielded, never ending as if complete."""
    upstream.enqueue(
        Reply(sse_raw=load_recorded("openai/chat_stream_text_a.sse"), cut_after=5)
    )
    chunks: list[palyra.ChatCompletionChunk] = []
    async with connect(config) as client:
        stream = await start_stream(client, driver)
        with pytest.raises(palyra.StreamInterruptedError) as info:
            await drain(stream, chunks)
    assert len(chunks) == 5
    first = load_recorded("openai/chat_stream_text_a.sse").split(b"\n", 1)[0]
    assert chunks[0].id == json.loads(first.removeprefix(b"data: "))["id"]
    assert all(choice.finish_reason is None for c in chunks for choice in c.choices)
    assert stream.completion is None
    assert stream.usage is None
    exc = info.value
    assert (exc.provider, exc.model) == ("up", MODEL)
    assert "partial" in exc.message


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_stream_ending_without_finish_or_done(
    upstream: Upstream, config: dict[str, Any], driver: str
) -> None:
    """A body that ends cleanly but before any finish_reason or [DONE] is
    reported as interrupted."""
    upstream.enqueue(Reply(sse=[chunk_json("one "), chunk_json("two")]))
    chunks: list[palyra.ChatCompletionChunk] = []
    async with connect(config) as client:
        stream = await start_stream(client, driver)
        with pytest.raises(palyra.StreamInterruptedError, match="partial"):
            await drain(stream, chunks)
    assert [c.choices[0].delta.content for c in chunks] == ["one ", "two"]
    assert stream.completion is None


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_malformed_event(
    upstream: Upstream, config: dict[str, Any], driver: str
) -> None:
    """An event that is not JSON is an APIResponseValidationError."""
    upstream.enqueue(
        Reply(sse=[chunk_json("ok"), "{not json", chunk_json(None, "stop")])
    )
    chunks: list[palyra.ChatCompletionChunk] = []
    async with connect(config) as client:
        stream = await start_stream(client, driver)
        with pytest.raises(palyra.APIResponseValidationError) as info:
            await drain(stream, chunks)
    assert len(chunks) == 1
    assert "malformed event" in info.value.message
    assert "{not json" in info.value.message
    assert (info.value.provider, info.value.model) == ("up", MODEL)


MID_STREAM_ERRORS = [
    pytest.param(
        "data: " + json.dumps({"error": {"message": "boom", "type": "server_error"}}),
        palyra.InternalServerError,
        500,
        id="error-envelope",
    ),
    pytest.param(
        "data: "
        + json.dumps({"error": {"message": "boom", "type": "rate_limit_error"}}),
        palyra.RateLimitError,
        429,
        id="rate-limit-envelope",
    ),
    pytest.param(
        "event: error\ndata: "
        + json.dumps({"type": "overloaded_error", "message": "boom"}),
        palyra.OverloadedError,
        529,
        id="error-event",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("event", "cls", "status"), MID_STREAM_ERRORS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_mid_stream_error_event(
    upstream: Upstream,
    config: dict[str, Any],
    driver: str,
    event: str,
    cls: type[palyra.APIStatusError],
    status: int,
) -> None:
    """An error event in the middle of a stream raises a typed error."""
    raw = f"data: {chunk_json('partial')}\n\n{event}\n\ndata: [DONE]\n\n"
    upstream.enqueue(Reply(sse_raw=raw.encode()))
    chunks: list[palyra.ChatCompletionChunk] = []
    async with connect(config) as client:
        stream = await start_stream(client, driver)
        with pytest.raises(cls) as info:
            await drain(stream, chunks)
    assert len(chunks) == 1
    exc = info.value
    assert type(exc) is cls
    assert exc.message == "boom"
    assert exc.status_code == status
    assert (exc.provider, exc.model) == ("up", MODEL)
    assert stream.completion is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reply", "cls"),
    [
        pytest.param(
            Reply(sse=[chunk_json("a"), json.dumps({"error": {"message": "boom"}})]),
            palyra.InternalServerError,
            id="error-event",
        ),
        pytest.param(
            Reply(sse=[chunk_json("a"), "{not json"]),
            palyra.APIResponseValidationError,
            id="malformed",
        ),
        pytest.param(
            Reply(sse=[chunk_json("a"), chunk_json("b")], cut_after=1),
            palyra.StreamInterruptedError,
            id="cut",
        ),
        pytest.param(
            Reply(sse=[chunk_json("a")]),
            palyra.StreamInterruptedError,
            id="ended-early",
        ),
    ],
)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_stream_body_errors_keep_the_request_id(
    upstream: Upstream,
    config: dict[str, Any],
    driver: str,
    reply: Reply,
    cls: type[palyra.APIError],
) -> None:
    """An error raised from the stream iterator names the request id that the
    response opening the stream carried."""
    upstream.enqueue(reply)
    async with connect(config) as client:
        stream = await start_stream(client, driver)
        with pytest.raises(cls) as info:
            await drain(stream, [])
    assert stream.palyra.attempts[0].request_id == "req_1"
    assert info.value.request_id == "req_1"
    assert str(info.value).endswith("request_id=req_1)")


# -- transport failures ------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_hang_times_out_quickly(
    upstream: Upstream, config: dict[str, Any], driver: str, op: str
) -> None:
    """An upstream that never answers raises APITimeoutError after the per-call
    timeout, not the provider's."""
    upstream.enqueue(Reply(hang=10))
    async with connect(config) as client:
        started = time.perf_counter()
        with pytest.raises(palyra.APITimeoutError) as info:
            await send(client, driver, op, timeout=0.3)
        elapsed = time.perf_counter() - started
    assert 0.25 < elapsed < 5
    assert elapsed < 1.5  # the provider timeout is 2 s: the call's 0.3 s won
    assert (info.value.provider, info.value.model) == ("up", MODEL)
    assert "in time" in info.value.message


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_stream_going_silent_times_out(
    upstream: Upstream, config: dict[str, Any], driver: str
) -> None:
    """A stream whose upstream stops sending raises APITimeoutError from the
    iterator after the chunks already received."""
    upstream.enqueue(
        Reply(sse=[chunk_json("a"), chunk_json("b"), "[DONE]"], chunk_delay=10)
    )
    chunks: list[palyra.ChatCompletionChunk] = []
    async with connect(config) as client:
        started = time.perf_counter()
        stream = await start_stream(client, driver, timeout=0.3)
        with pytest.raises(palyra.APITimeoutError, match="mid-stream") as info:
            await drain(stream, chunks)
        elapsed = time.perf_counter() - started
    assert elapsed < 5
    assert [c.choices[0].delta.content for c in chunks] == ["a"]
    assert info.value.request_id == "req_1"
    assert stream.completion is None


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_connection_reset(
    upstream: Upstream, config: dict[str, Any], driver: str, op: str
) -> None:
    """A connection reset before any answer is an APIConnectionError."""
    upstream.enqueue(Reply(reset=True))
    async with connect(config) as client:
        with pytest.raises(palyra.APIConnectionError) as info:
            await run(client, driver, op)
    exc = info.value
    assert type(exc) is palyra.APIConnectionError
    assert (exc.provider, exc.model) == ("up", MODEL)
    assert "could not reach upstream" in exc.message
    # The reason is given, even when the httpx error's own text is empty.
    assert re.search(r"\(\w+Error: [^)\s]", exc.message), exc.message


# -- leaving a stream early ----------------------------------------------------------


def slow_stream() -> Reply:
    """A long recorded stream that takes seconds to send in full."""
    raw = load_recorded("openai/chat_stream_text_long.sse")
    return Reply(sse_raw=raw, chunk_delay=0.05)


def test_break_inside_with_closes_the_response(
    upstream: Upstream, config: dict[str, Any]
) -> None:
    """Breaking out of a ``with`` stream block closes the upstream response."""
    upstream.enqueue(slow_stream())
    started = time.perf_counter()
    with connect(config) as client:
        with client.stream(MESSAGES, MODEL) as stream:
            for _chunk in stream:
                break
            assert not stream._response.is_closed
        assert stream._response.is_closed
        assert stream.completion is None
        # The aborted connection is not reused: the next call opens a new one.
        assert client.chat(MESSAGES, MODEL).choices[0].message.content
    assert time.perf_counter() - started < 3
    assert [r.connection for r in upstream.requests] == [1, 2]


def test_close_after_break_closes_the_response(
    upstream: Upstream, config: dict[str, Any]
) -> None:
    """``close()`` after a ``break`` closes the upstream response; iteration ends."""
    upstream.enqueue(slow_stream())
    with connect(config) as client:
        stream = client.stream(MESSAGES, MODEL)
        first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
        stream.close()
        assert stream._response.is_closed
        assert list(stream) == []
        assert client.chat(MESSAGES, MODEL).choices[0].message.content
    assert [r.connection for r in upstream.requests] == [1, 2]


@pytest.mark.anyio
async def test_async_break_inside_with_closes_the_response(
    upstream: Upstream, config: dict[str, Any]
) -> None:
    """Breaking out of an ``async with`` stream block closes the upstream response."""
    upstream.enqueue(slow_stream())
    started = time.perf_counter()
    async with connect(config) as client:
        async with await client.astream(MESSAGES, MODEL) as stream:
            async for _chunk in stream:
                break
            assert not stream._response.is_closed
        assert stream._response.is_closed
        assert stream.completion is None
        resp = await client.achat(MESSAGES, MODEL)
        assert resp.choices[0].message.content
    assert time.perf_counter() - started < 3
    assert [r.connection for r in upstream.requests] == [1, 2]


# -- secrets ---------------------------------------------------------------------

SECRET_ECHOES = [
    pytest.param(
        "chat",
        error_reply(401, f"Incorrect API key provided: {FAKE_KEY}.", code="bad_key"),
        palyra.AuthenticationError,
        id="401-key",
    ),
    pytest.param(
        "chat",
        error_reply(
            400, f"Bad header Authorization: Bearer {FAKE_KEY}", param=FAKE_KEY
        ),
        palyra.BadRequestError,
        id="400-bearer",
    ),
    pytest.param(
        "stream",
        error_reply(429, f"key {FAKE_KEY} is over quota", code=FAKE_KEY),
        palyra.RateLimitError,
        id="429-stream",
    ),
    pytest.param(
        "chat",
        Reply(
            status=502,
            body=f"<html>proxy saw Bearer {FAKE_KEY}</html>".encode(),
            content_type="text/html",
        ),
        palyra.InternalServerError,
        id="502-html",
    ),
    pytest.param(
        "chat",
        Reply(body=f"key={FAKE_KEY}".encode(), content_type="text/plain"),
        palyra.APIResponseValidationError,
        id="200-not-json",
    ),
    pytest.param(
        "chat",
        Reply(json={"echo": FAKE_KEY}),
        palyra.APIResponseValidationError,
        id="200-wrong-shape",
    ),
    pytest.param(
        "stream",
        Reply(
            sse=[
                chunk_json("a"),
                json.dumps({"error": {"message": f"Bearer {FAKE_KEY} revoked"}}),
            ]
        ),
        palyra.InternalServerError,
        id="mid-stream-bearer",
    ),
    pytest.param(
        "stream",
        Reply(sse=[chunk_json("a"), f"{{not json {FAKE_KEY}"]),
        palyra.APIResponseValidationError,
        id="malformed-event",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("op", "reply", "cls"), SECRET_ECHOES)
async def test_key_never_appears_in_errors(
    upstream: Upstream,
    config: dict[str, Any],
    driver: str,
    op: str,
    reply: Reply,
    cls: type[palyra.APIError],
) -> None:
    """An upstream echoing the key back never puts it in a raised exception."""
    upstream.enqueue(reply)
    async with connect(config) as client:
        with pytest.raises(cls) as info:
            await run(client, driver, op)
    exc = info.value
    # What a printed traceback shows too, with any chained exceptions.
    printed = "".join(traceback.format_exception(exc))
    shown = [str(exc), repr(exc), exc.message, repr(exc.args), repr(exc.body), printed]
    for text in shown:
        assert FAKE_KEY not in text
        assert FAKE_KEY[3:] not in text
    assert "redacted" in str(exc)
