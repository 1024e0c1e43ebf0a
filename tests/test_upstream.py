"""Tests of the OpenAI-compatible loopback server in ``tests/upstream.py``."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.upstream import (
    Reply,
    Upstream,
    anthropic_error_reply,
    anthropic_sse,
    error_reply,
    html_reply,
    load_recorded,
)

pytestmark = pytest.mark.e2e

CHAT = "/chat/completions"
MESSAGES = "/v1/messages"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant"}


@pytest.fixture
def anyio_backend() -> str:
    """Run the anyio tests on asyncio only."""
    return "asyncio"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A started server, stopped after the test; handlers must not have crashed."""
    with Upstream() as server:
        yield server
    assert server.errors == []


@pytest.fixture
def client(upstream: Upstream) -> Iterator[httpx.Client]:
    """A plain httpx client pointed at the server."""
    with httpx.Client(base_url=upstream.base_url, timeout=5.0) as http:
        yield http


def chat_body(text: str, **extra: Any) -> dict[str, Any]:
    """A chat completion request whose last user message is ``text``."""
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": text},
        ],
        **extra,
    }


def sse_payloads(raw: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    payloads = []
    for line in raw.decode().splitlines():
        if line.startswith("data:"):
            payloads.append(line[5:].strip())
    return payloads


def test_chat_non_streaming_echo(upstream: Upstream, client: httpx.Client) -> None:
    """A plain chat completion echoes the last user message with word usage."""
    response = client.post(CHAT, json=chat_body("hello there world"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "req_1"
    data = response.json()
    assert data["id"] == "chatcmpl-upstream-1"
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "gpt-4o-mini"
    assert data["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "hello there world",
                "refusal": None,
            },
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert data["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
    }
    assert len(upstream.requests) == 1
    recorded = upstream.requests[0]
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.headers["content-type"] == "application/json"
    assert recorded.json()["messages"][1]["content"] == "hello there world"


def test_chat_content_parts_echo(client: httpx.Client) -> None:
    """A user message given as content parts echoes the joined text parts."""
    parts = [
        {"type": "text", "text": "look "},
        {"type": "image_url", "image_url": {"url": "data:,"}},
        {"type": "text", "text": "here"},
    ]
    body = {"model": "m", "messages": [{"role": "user", "content": parts}]}
    data = client.post(CHAT, json=body).json()
    assert data["choices"][0]["message"]["content"] == "look here"
    assert data["model"] == "m"


def test_chat_streaming_echo_with_usage(client: httpx.Client) -> None:
    """Streaming yields role, word deltas, stop, a usage chunk, then [DONE]."""
    text = "  streaming  is\tfun \n"
    body = chat_body(text, stream=True, stream_options={"include_usage": True})
    with client.stream("POST", CHAT, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["transfer-encoding"] == "chunked"
        raw = response.read()
    payloads = sse_payloads(raw)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks[1:-2]]
    assert len(deltas) == 3
    assert "".join(deltas) == text
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
    }


def test_chat_streaming_without_usage(client: httpx.Client) -> None:
    """Without include_usage there is no usage chunk and no usage key."""
    with client.stream("POST", CHAT, json=chat_body("a b", stream=True)) as response:
        payloads = sse_payloads(response.read())
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert payloads[-1] == "[DONE]"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)


def test_keep_alive_reuses_one_connection(
    upstream: Upstream, client: httpx.Client
) -> None:
    """Two requests on one client, streamed or not, share one TCP connection."""
    assert client.post(CHAT, json=chat_body("one")).status_code == 200
    with client.stream("POST", CHAT, json=chat_body("two", stream=True)) as response:
        response.read()
    assert client.get("/models").status_code == 200
    assert len(upstream.requests) == 3
    assert upstream.connections == 1
    assert {r.connection for r in upstream.requests} == {1}


def test_scripted_error_then_default(upstream: Upstream, client: httpx.Client) -> None:
    """Scripted replies are used first-in first-out, then the default answers."""
    upstream.enqueue(
        Reply(status=500, json={"error": {"message": "boom", "type": "server_error"}}),
        error_reply(429, "slow down", code="rate_limit", headers={"retry-after": "1"}),
    )
    assert upstream.pending == 2
    first = client.post(CHAT, json=chat_body("x"))
    assert first.status_code == 500
    assert first.json() == {"error": {"message": "boom", "type": "server_error"}}
    second = client.get("/models")
    assert second.status_code == 429
    assert second.headers["retry-after"] == "1"
    assert second.json() == {
        "error": {
            "message": "slow down",
            "type": "invalid_request_error",
            "param": None,
            "code": "rate_limit",
        }
    }
    third = client.post(CHAT, json=chat_body("fine"))
    assert third.status_code == 200
    assert third.json()["choices"][0]["message"]["content"] == "fine"
    assert upstream.pending == 0
    assert upstream.connections == 1


def test_html_reply(upstream: Upstream, client: httpx.Client) -> None:
    """html_reply serves an nginx-style error page."""
    upstream.enqueue(html_reply())
    response = client.post(CHAT, json=chat_body("x"))
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"
    assert "<h1>502 Bad Gateway</h1>" in response.text


def test_sse_raw_recorded_fixture(upstream: Upstream, client: httpx.Client) -> None:
    """A recorded SSE file is served byte for byte."""
    recorded = load_recorded("openai/chat_stream_text_a.sse")
    upstream.enqueue(Reply(sse_raw=recorded))
    with client.stream("POST", CHAT, json=chat_body("x", stream=True)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read()
    assert raw == recorded
    payloads = sse_payloads(raw)
    assert payloads[-1] == "[DONE]"
    text = "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for chunk in map(json.loads, payloads[:-1])
        if chunk["choices"]
    )
    assert text.startswith('{"city"')


def test_load_recorded_env_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PALYRA_FIXTURES_DIR overrides where recorded fixtures are read from."""
    (tmp_path / "x.sse").write_bytes(b"data: [DONE]\n\n")
    monkeypatch.setenv("PALYRA_FIXTURES_DIR", str(tmp_path))
    assert load_recorded("x.sse") == b"data: [DONE]\n\n"


def test_cut_after_truncates_stream(upstream: Upstream, client: httpx.Client) -> None:
    """cut_after closes mid-stream without the final chunk: a protocol error."""
    upstream.enqueue(Reply(sse=["1", "2", "3", "[DONE]"], cut_after=2))
    received: list[str] = []
    with client.stream("POST", CHAT, json=chat_body("x", stream=True)) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            received.extend(line for line in lines if line)
    assert received == ["data: 1", "data: 2"]
    # The broken connection is discarded; the next request opens a new one.
    assert client.post(CHAT, json=chat_body("again")).status_code == 200
    assert upstream.connections == 2


def test_cut_after_truncates_plain_body(
    upstream: Upstream, client: httpx.Client
) -> None:
    """For a non-SSE body cut_after is a byte count under the Content-Length."""
    upstream.enqueue(Reply(json={"long": "x" * 100}, cut_after=10))
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/models")


def test_chunk_delay_and_delay(upstream: Upstream, client: httpx.Client) -> None:
    """delay holds the status line; chunk_delay spaces the events."""
    upstream.enqueue(Reply(sse=["a", "b", "c"], delay=0.1, chunk_delay=0.05))
    start = time.monotonic()
    with client.stream("POST", CHAT, json=chat_body("x")) as response:
        headers_at = time.monotonic() - start
        lines = [line for line in response.iter_lines() if line]
    total = time.monotonic() - start
    assert lines == ["data: a", "data: b", "data: c"]
    assert headers_at >= 0.09
    assert total >= 0.19


def test_hang_times_out_and_stop_is_prompt() -> None:
    """A hanging reply trips the client read timeout; stop() still returns fast."""
    upstream = Upstream().start()
    try:
        upstream.enqueue(Reply(hang=30.0))
        with httpx.Client(base_url=upstream.base_url, timeout=0.2) as http:
            start = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                http.post(CHAT, json=chat_body("x"))
            assert time.monotonic() - start < 1.0
            # A second hang with the client still connected when we stop.
            upstream.enqueue(Reply(hang=30.0))
            with pytest.raises(httpx.ReadTimeout):
                http.get("/models")
            start = time.monotonic()
            upstream.stop()
            assert time.monotonic() - start < 1.0
    finally:
        upstream.stop()


def test_stop_with_idle_keep_alive_connection() -> None:
    """stop() is prompt while a client still holds an idle keep-alive connection."""
    upstream = Upstream().start()
    http = httpx.Client(base_url=upstream.base_url, timeout=5.0)
    try:
        assert http.get("/models").status_code == 200
        start = time.monotonic()
        upstream.stop()
        assert time.monotonic() - start < 1.0
    finally:
        http.close()
        upstream.stop()


def test_reset_raises_connection_error(
    upstream: Upstream, client: httpx.Client
) -> None:
    """reset drops the connection with an RST: ECONNRESET on the client."""
    upstream.enqueue(Reply(reset=True))
    with pytest.raises(httpx.ReadError):
        client.post(CHAT, json=chat_body("x"))
    assert len(upstream.requests) == 1
    assert client.get("/models").status_code == 200


def test_embeddings(client: httpx.Client) -> None:
    """Embeddings are deterministic per text, with the requested dimensions."""
    body = {"model": "text-embedding-3-small", "input": ["a b", "c", "a b"]}
    data = client.post("/embeddings", json=body).json()
    assert data["object"] == "list"
    assert data["model"] == "text-embedding-3-small"
    assert data["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    vectors = [item["embedding"] for item in data["data"]]
    assert [item["index"] for item in data["data"]] == [0, 1, 2]
    assert {item["object"] for item in data["data"]} == {"embedding"}
    assert all(len(v) == 8 for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]

    single = client.post(
        "/embeddings", json={"model": "m", "input": "c", "dimensions": 20}
    ).json()
    assert len(single["data"]) == 1
    assert len(single["data"][0]["embedding"]) == 20
    assert single["data"][0]["embedding"][:8] != vectors[1]

    encoded = client.post(
        "/embeddings", json={"model": "m", "input": "c", "encoding_format": "base64"}
    ).json()
    packed = base64.b64decode(encoded["data"][0]["embedding"])
    floats = struct.unpack("<8f", packed)
    assert floats == pytest.approx(vectors[1], abs=1e-6)


@pytest.mark.parametrize("response_format", [None, "json", "verbose_json", "text"])
def test_transcription(
    upstream: Upstream, client: httpx.Client, response_format: str | None
) -> None:
    """A multipart upload is parsed exactly and answered in each format."""
    audio = b"RIFF\r\n--\r\n\r\n\x00\xff" * 10
    form = {"model": "whisper-1", "language": "fr"}
    if response_format is not None:
        form["response_format"] = response_format
    response = client.post(
        "/audio/transcriptions",
        data=form,
        files={"file": ("clip.wav", audio, "audio/wav")},
    )
    assert response.status_code == 200
    text = f"transcribed {len(audio)} bytes of clip.wav"
    assert (
        upstream.requests[0]
        .headers["content-type"]
        .startswith("multipart/form-data; boundary=")
    )
    if response_format in (None, "json"):
        assert response.json() == {"text": text}
    elif response_format == "text":
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text == text
    else:
        data = response.json()
        assert data["task"] == "transcribe"
        assert data["language"] == "fr"
        assert data["duration"] == 1.5
        assert data["text"] == text
        assert data["segments"][0]["text"] == text
        assert data["segments"][0]["avg_logprob"] == -0.1


def test_transcription_without_file_is_400(client: httpx.Client) -> None:
    """A transcription request without a file part is rejected."""
    response = client.post(
        "/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"other": ("x.bin", b"x")},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"


def test_models_and_unknown_path(client: httpx.Client) -> None:
    """GET /v1/models lists a model; an unknown path is a 404 error envelope."""
    models = client.get("/models").json()
    assert models == {
        "object": "list",
        "data": [
            {
                "id": "gpt-4o-mini",
                "object": "model",
                "created": 0,
                "owned_by": "upstream",
            }
        ],
    }
    missing = client.post("/nope", json={})
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "unknown_url"


def test_bad_json_is_400(client: httpx.Client) -> None:
    """A chat request whose body is not JSON gets a 400 error envelope."""
    response = client.post(
        CHAT, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "error" in response.json()


def test_api_key_required() -> None:
    """With api_key set, a missing or wrong bearer token gets a 401 envelope."""
    with Upstream(api_key="sk-good") as upstream:
        upstream.enqueue(Reply(status=201, json={"scripted": True}))
        with httpx.Client(base_url=upstream.base_url, timeout=5.0) as http:
            for headers in ({}, {"authorization": "Bearer sk-bad"}):
                response = http.post(CHAT, json=chat_body("x"), headers=headers)
                assert response.status_code == 401
                assert response.json() == {
                    "error": {
                        "message": "Incorrect API key provided",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                }
            assert upstream.pending == 1
            good = {"authorization": "Bearer sk-good"}
            response = http.post(CHAT, json=chat_body("x"), headers=good)
            assert response.status_code == 201
            assert upstream.pending == 0


def test_api_key_may_be_a_check() -> None:
    """A callable api_key judges the bearer token or x-api-key presented, and
    is asked on every request (so revoking a token takes effect at once)."""
    valid = {"tok-1"}
    seen: list[str] = []

    def check(token: str) -> bool:
        seen.append(token)
        return token in valid

    with (
        Upstream(api_key=check) as upstream,
        httpx.Client(base_url=upstream.origin, timeout=5.0) as http,
    ):
        bearer = {"authorization": "Bearer tok-1"}
        assert http.get("/v1/models", headers=bearer).status_code == 200
        anthropic = {"x-api-key": "tok-1", "anthropic-version": "2023-06-01"}
        assert http.get("/v1/models", headers=anthropic).status_code == 200
        valid.clear()
        assert http.get("/v1/models", headers=bearer).status_code == 401
        assert http.get("/v1/models", headers=anthropic).status_code == 401
        assert http.get("/v1/models").status_code == 401
    assert seen == ["tok-1", "tok-1", "tok-1", "tok-1"]
    assert not upstream.errors


@pytest.mark.anyio
async def test_async_client_streaming(upstream: Upstream) -> None:
    """An httpx.AsyncClient streams the echo over one kept-alive connection."""
    async with httpx.AsyncClient(base_url=upstream.base_url, timeout=5.0) as http:
        for text in ("async one", "async two"):
            body = chat_body(text, stream=True)
            async with http.stream("POST", CHAT, json=body) as response:
                assert response.status_code == 200
                deltas = []
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        chunk = json.loads(line[6:])
                        deltas.append(chunk["choices"][0]["delta"].get("content", ""))
            assert "".join(deltas) == text
    assert upstream.connections == 1
    assert len(upstream.requests) == 2


def test_fixture_copies_match_shared_recordings() -> None:
    """tests/fixtures mirrors the project's shared recordings byte for byte."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "recorded"
    if not shared.is_dir():
        pytest.skip("shared/ is not beside this checkout")
    ours = Path(__file__).resolve().parent / "fixtures" / "recorded"
    for path in shared.rglob("*.sse"):
        assert (ours / path.relative_to(shared)).read_bytes() == path.read_bytes()


# ------------------------------------------------------------------- Anthropic


@pytest.fixture
def anthropic(upstream: Upstream) -> Iterator[httpx.Client]:
    """An httpx client at the Anthropic base URL, sending Anthropic headers."""
    with httpx.Client(
        base_url=upstream.origin, headers=ANTHROPIC_HEADERS, timeout=5.0
    ) as http:
        yield http


def messages_body(text: str, **extra: Any) -> dict[str, Any]:
    """A Messages request whose last user message is ``text``."""
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": "be brief",
        "messages": [
            {"role": "user", "content": "earlier words"},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
            {"role": "user", "content": text},
        ],
        **extra,
    }


def named_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The ``(event, data)`` pairs of a named-event SSE body, in order."""
    events = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line
        )
        if fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_anthropic_messages_echo(upstream: Upstream, anthropic: httpx.Client) -> None:
    """POST /v1/messages echoes the last user message with word-count usage."""
    response = anthropic.post(MESSAGES, json=messages_body("hello there world"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["request-id"] == "req_1"
    assert "x-request-id" not in response.headers
    assert response.json() == {
        "id": "msg_upstream_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "hello there world"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 8,
            "output_tokens": 3,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    recorded = upstream.requests[0]
    assert (recorded.method, recorded.path) == ("POST", "/v1/messages")
    assert recorded.headers["anthropic-version"] == "2023-06-01"


def test_anthropic_messages_blocks_and_tool_results(anthropic: httpx.Client) -> None:
    """Text blocks are joined; a turn of only tool results gets a fixed reply."""
    blocks = [
        {"type": "text", "text": "look "},
        {"type": "image", "source": {"type": "base64", "data": ""}},
        {"type": "text", "text": "here"},
    ]
    body = messages_body("x")
    body["messages"][-1]["content"] = blocks
    data = anthropic.post(MESSAGES, json=body).json()
    assert data["content"] == [{"type": "text", "text": "look here"}]
    results = [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 20C"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rainy"},
    ]
    body["messages"][-1]["content"] = results
    data = anthropic.post(MESSAGES, json=body).json()
    assert data["content"][0]["text"] == "tool results received"
    # system 2 + "earlier words" 2 + "ok" 1 + tool results 3.
    assert data["usage"]["input_tokens"] == 8


def test_anthropic_messages_streaming(anthropic: httpx.Client) -> None:
    """Streaming sends Anthropic's named events in order; the deltas rebuild it."""
    body = messages_body("hello  there world", stream=True)
    with anthropic.stream("POST", MESSAGES, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["request-id"] == "req_1"
        raw = response.read()
    assert raw.startswith(b"event: message_start\ndata: {")
    events = named_events(raw)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["id"] == "msg_upstream_1"
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 8
    assert start["usage"]["output_tokens"] == 1
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"text_delta"}
    assert "".join(d["text"] for d in deltas) == "hello  there world"
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 3},
    }


def test_anthropic_auth() -> None:
    """With api_key set, x-api-key or Bearer passes; anything else is a 401."""
    version = {"anthropic-version": "2023-06-01"}
    with Upstream(api_key="sk-ant") as upstream:
        upstream.enqueue(Reply(status=201, json={"scripted": True}))
        with httpx.Client(base_url=upstream.origin, timeout=5.0) as http:
            for bad in (
                {},
                {"x-api-key": "sk-bad"},
                {"authorization": "Bearer sk-bad"},
                {"authorization": "sk-ant"},
            ):
                response = http.post(
                    MESSAGES, json=messages_body("x"), headers={**version, **bad}
                )
                assert response.status_code == 401
                assert response.json() == {
                    "type": "error",
                    "error": {
                        "type": "authentication_error",
                        "message": "invalid x-api-key",
                    },
                }
                assert response.headers["request-id"].startswith("req_")
            assert upstream.pending == 1
            good = {**version, "x-api-key": "sk-ant"}
            response = http.post(MESSAGES, json=messages_body("x"), headers=good)
            assert response.status_code == 201
            assert upstream.pending == 0
            bearer = {**version, "authorization": "Bearer sk-ant"}
            response = http.post(MESSAGES, json=messages_body("hi"), headers=bearer)
            assert response.status_code == 200
            assert response.json()["content"][0]["text"] == "hi"
            # The OpenAI side still wants its bearer token, not x-api-key.
            openai = {"x-api-key": "sk-ant"}
            response = http.get("/v1/models", headers=openai)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"


def test_anthropic_missing_version() -> None:
    """A valid key without anthropic-version is a 400 invalid_request_error."""
    with Upstream(api_key="sk-ant") as upstream:
        upstream.enqueue(Reply(status=201))
        with httpx.Client(base_url=upstream.origin, timeout=5.0) as http:
            for path in (MESSAGES, f"{MESSAGES}/count_tokens"):
                response = http.post(
                    path, json=messages_body("x"), headers={"x-api-key": "sk-ant"}
                )
                assert response.status_code == 400
                body = response.json()
                assert body["type"] == "error"
                assert body["error"]["type"] == "invalid_request_error"
                assert "anthropic-version" in body["error"]["message"]
        assert upstream.pending == 1
    with Upstream() as upstream, httpx.Client(base_url=upstream.origin) as http:
        response = http.post(MESSAGES, json=messages_body("x"))
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_anthropic_missing_max_tokens(anthropic: httpx.Client) -> None:
    """max_tokens is required by /v1/messages."""
    body = messages_body("x")
    del body["max_tokens"]
    response = anthropic.post(MESSAGES, json=body)
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "max_tokens: Field required",
        },
    }


def test_anthropic_count_tokens(anthropic: httpx.Client) -> None:
    """count_tokens counts the words of the messages and system prompt."""
    body = messages_body("one two three")
    del body["max_tokens"]
    response = anthropic.post(f"{MESSAGES}/count_tokens", json=body)
    assert response.status_code == 200
    assert response.json() == {"input_tokens": 8}
    blocks = [{"type": "text", "text": "a b"}, {"type": "text", "text": "c"}]
    body = {
        "model": "m",
        "system": blocks,
        "messages": [{"role": "user", "content": "d"}],
    }
    response = anthropic.post(f"{MESSAGES}/count_tokens", json=body)
    assert response.json() == {"input_tokens": 4}


def test_anthropic_models_pagination(anthropic: httpx.Client) -> None:
    """Anthropic's GET /v1/models pages with limit and after_id."""
    first = anthropic.get("/v1/models", params={"limit": 2})
    assert first.status_code == 200
    assert first.headers["request-id"] == "req_1"
    page = first.json()
    assert page == {
        "data": [
            {
                "type": "model",
                "id": "claude-sonnet-4-5",
                "display_name": "Claude Sonnet 4.5",
                "created_at": "2025-02-19T00:00:00Z",
            },
            {
                "type": "model",
                "id": "claude-haiku-4-5",
                "display_name": "Claude Haiku 4.5",
                "created_at": "2025-02-19T00:00:00Z",
            },
        ],
        "has_more": True,
        "first_id": "claude-sonnet-4-5",
        "last_id": "claude-haiku-4-5",
    }
    params = {"limit": 2, "after_id": page["last_id"]}
    second = anthropic.get("/v1/models", params=params).json()
    assert [m["id"] for m in second["data"]] == ["claude-opus-4-1"]
    assert second["has_more"] is False
    assert second["first_id"] == second["last_id"] == "claude-opus-4-1"
    everything = anthropic.get("/v1/models").json()
    assert len(everything["data"]) == 3
    assert everything["has_more"] is False
    assert anthropic.get("/v1/models", params={"limit": 0}).status_code == 400


def test_models_dialect_follows_version_header(
    upstream: Upstream, client: httpx.Client
) -> None:
    """Without anthropic-version GET /v1/models keeps the OpenAI list."""
    assert client.get("/models").json()["object"] == "list"
    anthropic = client.get("/models", headers={"anthropic-version": "2023-06-01"})
    assert "has_more" in anthropic.json()
    assert [r.path for r in upstream.requests] == ["/v1/models", "/v1/models"]


def test_anthropic_scripted_overloaded(
    upstream: Upstream, anthropic: httpx.Client
) -> None:
    """A scripted 529 overloaded_error takes precedence over the default."""
    upstream.enqueue(
        anthropic_error_reply(
            529, "overloaded_error", "Overloaded", headers={"retry-after": "2"}
        )
    )
    response = anthropic.post(MESSAGES, json=messages_body("x"))
    assert response.status_code == 529
    assert response.headers["retry-after"] == "2"
    assert response.headers["request-id"] == "req_1"
    assert response.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert anthropic.post(MESSAGES, json=messages_body("x")).status_code == 200


def test_anthropic_sse_helper(upstream: Upstream, anthropic: httpx.Client) -> None:
    """anthropic_sse writes named events; cut_after counts them."""
    upstream.enqueue(
        anthropic_sse(
            [
                ("ping", {}),
                ("error", {"error": {"type": "overloaded_error", "message": "x"}}),
            ]
        ),
        anthropic_sse([("ping", {}), ("ping", {}), ("ping", {})], cut_after=1),
    )
    body = messages_body("x", stream=True)
    with anthropic.stream("POST", MESSAGES, json=body) as response:
        raw = response.read()
    assert raw == (
        b'event: ping\ndata: {"type":"ping"}\n\n'
        b"event: error\n"
        b'data: {"type":"error","error":{"type":"overloaded_error","message":"x"}}'
        b"\n\n"
    )
    received: list[str] = []
    with anthropic.stream("POST", MESSAGES, json=body) as response:
        lines = response.iter_lines()
        with pytest.raises(httpx.RemoteProtocolError):
            received.extend(line for line in lines if line)
    assert received == ["event: ping", 'data: {"type":"ping"}']


def test_anthropic_sse_raw_recorded(
    upstream: Upstream, anthropic: httpx.Client
) -> None:
    """A recorded Anthropic stream is served byte for byte as named events."""
    recorded = load_recorded("anthropic/tool_use_response.sse")
    upstream.enqueue(Reply(sse_raw=recorded))
    body = messages_body("x", stream=True)
    with anthropic.stream("POST", MESSAGES, json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read()
    assert raw == recorded
    events = named_events(raw)
    assert events[0][0] == "message_start"
    assert events[-1][0] == "message_stop"
    assert any(
        data.get("content_block", {}).get("type") == "tool_use"
        for name, data in events
        if name == "content_block_start"
    )
