"""The Palyra client on the deterministic provider and on mock transports."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import completion_json

USER = [{"role": "user", "content": "Hello there, palyra"}]


def _openai_config(**provider: Any) -> dict[str, Any]:
    return {
        "providers": [
            {"id": "up", "kind": "openai", "api_key_env": "UP_KEY", **provider}
        ],
        "models": [
            {"id": "gpt-4o-mini", "provider": "up", "context_window": 1000},
            {"id": "emb", "provider": "up", "role": "embeddings", "dimensions": 3},
        ],
    }


class Recorder:
    """A MockTransport handler that records requests and answers in order."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0)


@pytest.fixture(name="key")
def key_fixture(monkeypatch: pytest.MonkeyPatch) -> str:
    """The fake key, exported where the config expects it."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    return FAKE_KEY


def test_deterministic_chat_echoes_and_reports_who_served() -> None:
    """The offline default echoes the last user message with usage and palyra info."""
    with palyra.Palyra() as client:
        reply = client.chat(USER)
    assert reply.choices[0].message.content == "Hello there, palyra"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.total_tokens == (
        reply.usage.prompt_tokens + reply.usage.completion_tokens
    )
    info = reply.palyra
    assert info is not None
    assert (info.provider, info.model) == ("deterministic", "deterministic-chat")
    assert [a.outcome for a in info.attempts] == ["success"]
    assert info.token_estimate is not None
    assert info.token_estimate.prompt_tokens == reply.usage.prompt_tokens


def test_deterministic_json_mode_returns_json() -> None:
    """JSON mode answers with a JSON object."""
    with palyra.Palyra() as client:
        reply = client.chat(USER, response_format={"type": "json_object"})
    content = reply.choices[0].message.content
    assert content is not None
    assert json.loads(content) == {"echo": "Hello there, palyra"}


def test_deterministic_stream_concatenates_to_the_reply() -> None:
    """Streamed pieces add up to the echo; the stream object has the totals."""
    text = "one two three four five six seven eight nine"
    with (
        palyra.Palyra() as client,
        client.stream([{"role": "user", "content": text}]) as stream,
    ):
        pieces = [c.choices[0].delta.content or "" for c in stream]
    assert "".join(pieces) == text
    assert len([p for p in pieces if p]) > 1
    assert stream.completion is not None
    assert stream.completion.choices[0].message.content == text
    assert stream.usage is not None
    assert stream.palyra.provider == "deterministic"


def test_scripted_tool_calls_and_history() -> None:
    """Scripted replies come first; history keeps what was sent."""
    with palyra.Palyra() as client:
        backend = client.deterministic()
        backend.enqueue(tool_calls=[{"name": "get_weather", "arguments": {"c": "P"}}])
        backend.enqueue("second")
        tools = [{"type": "function", "function": {"name": "get_weather"}}]
        first = client.chat(USER, tools=tools)
        second = client.chat(USER)
        third = client.chat(USER)
    [call] = first.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"c": "P"}
    assert first.choices[0].finish_reason == "tool_calls"
    assert second.choices[0].message.content == "second"
    assert third.choices[0].message.content == "Hello there, palyra"
    assert len(backend.history) == 3
    assert backend.history[0]["tools"] == tools


def test_scripted_tool_call_streams_by_index() -> None:
    """Scripted tool calls stream as id/name first, then argument pieces."""
    with palyra.Palyra() as client:
        args = {"city": "Paris", "unit": "celsius", "days": 3}
        client.deterministic().enqueue(
            tool_calls=[{"name": "a", "arguments": args}, {"name": "b"}]
        )
        with client.stream(USER) as stream:
            chunks = list(stream)
    assert len(chunks) > 4
    completion = stream.completion
    assert completion is not None
    calls = completion.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["a", "b"]
    assert json.loads(calls[0].function.arguments) == args
    assert calls[1].function.arguments == "{}"


def test_scripted_error_status_is_typed() -> None:
    """A scripted 429 raises RateLimitError naming provider and model."""
    waits: list[float] = []
    with palyra.Palyra(sleep=waits.append) as client:
        client.deterministic().enqueue(status=429, error="slow down", times=3)
        with pytest.raises(palyra.RateLimitError) as info:
            client.chat(USER)
    assert len(waits) == 2  # max_retries = 2: three attempts, two waits
    assert 0 < waits[0] < waits[1]
    error = info.value
    assert (error.provider, error.model, error.status_code) == (
        "deterministic",
        "deterministic-chat",
        429,
    )
    assert "slow down" in str(error)


def test_hash_embeddings_are_stable_unit_vectors() -> None:
    """Same text, same vector; vectors are normalised; order is kept."""
    with palyra.Palyra() as client:
        first = client.embed(["alpha beta", "gamma"])
        again = client.embed("alpha beta")
    assert [d.index for d in first.data] == [0, 1]
    assert first.data[0].embedding == again.data[0].embedding
    assert len(first.data[0].embedding) == 64
    norm = sum(x * x for x in first.data[0].embedding)
    assert norm == pytest.approx(1.0)
    assert first.palyra is not None
    assert first.palyra.model == "deterministic-embeddings"


def test_models_lists_registry() -> None:
    """models() shows ids, roles, defaults and resolved capabilities."""
    with palyra.Palyra() as client:
        infos = {m.id: m for m in client.models()}
    chat = infos["deterministic-chat"]
    assert chat.role == "chat"
    assert chat.is_default
    assert chat.capabilities.streaming
    assert not chat.capabilities.vision


def test_image_to_model_without_vision_is_refused_before_http() -> None:
    """Images are never silently dropped: no vision, no call."""
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    message = {"role": "user", "content": [{"type": "text", "text": "hi"}, image]}
    with palyra.Palyra() as client:
        with pytest.raises(palyra.UnsupportedCapabilityError, match="vision") as info:
            client.chat([message])
        assert client.deterministic().history == []
    assert info.value.capability == "vision"


def test_context_window_checked_before_http(key: str) -> None:
    """Prompt plus requested output beyond the window fails with no HTTP call."""
    recorder = Recorder()
    with (
        palyra.Palyra(
            _openai_config(), transport=httpx.MockTransport(recorder)
        ) as client,
        pytest.raises(palyra.ContextWindowExceededError) as info,
    ):
        client.chat(USER, max_tokens=995)
    assert recorder.requests == []
    error = info.value
    assert error.context_window == 1000
    assert error.requested_output_tokens == 995
    assert "exceeds the context window of 1000" in str(error)
    assert "model=gpt-4o-mini" in str(error)


def test_unknown_option_is_a_type_error() -> None:
    """Typos in options fail loudly and point at extra_body."""
    with palyra.Palyra() as client, pytest.raises(TypeError, match="extra_body"):
        client.chat(USER, temprature=0.2)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        pytest.param([], "at least one message", id="empty"),
        pytest.param([{"content": "x"}], r"messages\[0\]\.role", id="no-role"),
        pytest.param([{"role": "user"}], r"messages\[0\]\.content", id="no-content"),
        pytest.param(
            [{"role": "tool", "content": "x"}], "tool_call_id", id="tool-no-id"
        ),
        pytest.param(
            [{"role": "user", "content": [{"type": "video"}]}],
            r"content\[0\]\.type",
            id="part",
        ),
        pytest.param(["hi"], r"messages\[0\]: must be a message dict", id="str"),
    ],
)
def test_invalid_messages(messages: list[Any], message: str) -> None:
    """Bad messages raise InvalidRequestError naming the field."""
    with (
        palyra.Palyra() as client,
        pytest.raises(palyra.InvalidRequestError, match=message),
    ):
        client.chat(messages)


def test_unknown_model_and_wrong_role() -> None:
    """Model lookups fail with typed errors."""
    with palyra.Palyra() as client:
        with pytest.raises(palyra.ModelNotFoundError, match="unknown model 'x'"):
            client.chat(USER, model="x")
        with pytest.raises(palyra.UnsupportedCapabilityError, match="role"):
            client.chat(USER, model="deterministic-embeddings")
        with pytest.raises(palyra.ModelNotFoundError, match="audio_transcription"):
            client.transcribe(b"RIFF")


def test_disabled_model_is_not_served() -> None:
    """enabled = false takes a model out of service."""
    config = {
        "providers": [{"id": "d", "kind": "deterministic"}],
        "models": [{"id": "m", "provider": "d", "enabled": False}],
    }
    with (
        palyra.Palyra(config) as client,
        pytest.raises(palyra.ModelNotFoundError, match="disabled"),
    ):
        client.chat(USER, model="m")


def test_openai_request_shape(key: str) -> None:
    """Model, messages, options, extra_body and headers reach the upstream."""
    recorder = Recorder(httpx.Response(200, json=completion_json("hi")))
    config = _openai_config(headers={"x-team": "a"})
    with palyra.Palyra(config, transport=httpx.MockTransport(recorder)) as client:
        reply = client.chat(
            USER,
            temperature=0.2,
            seed=7,
            extra_body={"top_k": 3},
            extra_headers={"x-trace": "1"},
        )
    [request] = recorder.requests
    body = json.loads(request.content)
    assert request.url == "https://api.openai.com/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert request.headers["x-team"] == "a"
    assert request.headers["x-trace"] == "1"
    assert body == {
        "model": "gpt-4o-mini",
        "messages": USER,
        "temperature": 0.2,
        "seed": 7,
        "top_k": 3,
    }
    assert reply.choices[0].message.content == "hi"


def test_missing_env_key_is_a_credential_error() -> None:
    """No key: a CredentialError that says which variable to set, no HTTP."""
    recorder = Recorder()
    with (
        palyra.Palyra(
            _openai_config(), transport=httpx.MockTransport(recorder)
        ) as client,
        pytest.raises(palyra.CredentialError, match="UP_KEY") as info,
    ):
        client.chat(USER)
    assert info.value.provider == "up"
    assert recorder.requests == []


def test_credential_resolver_is_injectable() -> None:
    """A custom resolver supplies keys (the seam for auth profiles)."""
    recorder = Recorder(httpx.Response(200, json=completion_json("hi")))
    with palyra.Palyra(
        _openai_config(),
        transport=httpx.MockTransport(recorder),
        credentials=lambda provider: f"sk-from-{provider.id}-resolver",
    ) as client:
        client.chat(USER)
    assert recorder.requests[0].headers["authorization"] == "Bearer sk-from-up-resolver"


def test_embeddings_request_and_validation(key: str) -> None:
    """Embeddings send dimensions and reject vectors that do not match."""
    good = {
        "object": "list",
        "model": "emb",
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.0, 1.0, 0.0]},
            {"object": "embedding", "index": 0, "embedding": [1.0, 0.0, 0.0]},
        ],
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    short = json.loads(json.dumps(good))
    short["data"][1]["embedding"] = [1.0]
    recorder = Recorder(httpx.Response(200, json=good), httpx.Response(200, json=short))
    with palyra.Palyra(
        _openai_config(), transport=httpx.MockTransport(recorder)
    ) as client:
        result = client.embed(["a", "b"])
        with pytest.raises(palyra.APIResponseValidationError, match="dimensions"):
            client.embed(["a", "b"])
    body = json.loads(recorder.requests[0].content)
    assert body["dimensions"] == 3
    assert body["input"] == ["a", "b"]
    assert [d.embedding[0] for d in result.data] == [1.0, 0.0]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        pytest.param([], "at least one input", id="empty"),
        pytest.param(["ok", " "], r"input\[1\]", id="blank"),
        pytest.param(["x"] * 2049, "at most 2048", id="too-many"),
    ],
)
def test_embedding_input_limits(inputs: list[str], message: str) -> None:
    """Embedding inputs are checked before any call."""
    with (
        palyra.Palyra() as client,
        pytest.raises(palyra.InvalidRequestError, match=message),
    ):
        client.embed(inputs)


def test_embedding_input_over_context_window() -> None:
    """An input longer than the embeddings model accepts is refused."""
    with (
        palyra.Palyra() as client,
        pytest.raises(palyra.ContextWindowExceededError, match=r"input\[0\]"),
    ):
        client.embed("word " * 9000)


def test_transcription_multipart(key: str, tmp_path: Any) -> None:
    """Transcriptions post multipart with model, format and the file."""
    recorder = Recorder(httpx.Response(200, json={"text": "hello"}))
    config = _openai_config()
    config["models"].append(
        {"id": "whisper-1", "provider": "up", "role": "audio_transcription"}
    )
    audio = tmp_path / "clip.wav"
    audio.write_bytes(b"RIFF....WAVE")
    with palyra.Palyra(config, transport=httpx.MockTransport(recorder)) as client:
        result = client.transcribe(audio, language="en")
    assert result.text == "hello"
    request = recorder.requests[0]
    assert request.url.path == "/v1/audio/transcriptions"
    assert b'name="model"\r\n\r\nwhisper-1' in request.content
    assert b'filename="clip.wav"' in request.content
    assert b'name="language"\r\n\r\nen' in request.content


def test_deterministic_transcription_formats() -> None:
    """The deterministic provider transcribes for offline tests."""
    config = {
        "providers": [{"id": "d", "kind": "deterministic"}],
        "models": [{"id": "asr", "provider": "d", "role": "audio_transcription"}],
    }
    with palyra.Palyra(config) as client:
        plain = client.transcribe(("a.wav", b"1234"), response_format="text")
        verbose = client.transcribe(b"12", response_format="verbose_json")
        client.deterministic().enqueue("scripted words")
        scripted = client.transcribe(b"12")
    assert plain.text == "[4 bytes of a.wav]"
    assert verbose.segments is not None
    assert verbose.duration == 1.0
    assert scripted.text == "scripted words"


def test_bad_transcription_input() -> None:
    """Empty files, missing files and unknown formats are caught early."""
    with palyra.Palyra() as client:
        with pytest.raises(palyra.InvalidRequestError, match="empty"):
            client.transcribe(b"")
        with pytest.raises(palyra.InvalidRequestError, match="cannot read"):
            client.transcribe("/nonexistent/file.wav")
        with pytest.raises(palyra.InvalidRequestError, match="response_format"):
            client.transcribe(b"x", response_format="srt")


def test_http_client_is_reused_and_closed(key: str) -> None:
    """One pooled httpx client serves every call; close() releases it."""
    recorder = Recorder(
        httpx.Response(200, json=completion_json("hi")),
        httpx.Response(200, json=completion_json("hi")),
    )
    client = palyra.Palyra(_openai_config(), transport=httpx.MockTransport(recorder))
    client.chat(USER)
    pooled = client._sync._network
    client.chat(USER)
    assert client._sync._network is pooled
    client.close()
    assert pooled is not None
    assert pooled.is_closed


@pytest.mark.anyio
async def test_async_twins_on_the_deterministic_provider() -> None:
    """achat, astream and aembed match their sync twins."""
    async with palyra.Palyra() as client:
        reply = await client.achat(USER)
        async with await client.astream(USER) as stream:
            pieces = [c.choices[0].delta.content or "" async for c in stream]
        vectors = await client.aembed("alpha beta")
    assert reply.choices[0].message.content == "Hello there, palyra"
    assert "".join(pieces) == "Hello there, palyra"
    assert stream.completion is not None
    assert (
        vectors.data[0].embedding
        == palyra.Palyra().embed("alpha beta").data[0].embedding
    )


@pytest.mark.anyio
async def test_async_transport_is_used(key: str) -> None:
    """async_transport serves the async methods."""

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=completion_json("async"))

    async with palyra.Palyra(
        _openai_config(), async_transport=httpx.MockTransport(handler)
    ) as client:
        reply = await client.achat(USER)
    assert reply.choices[0].message.content == "async"


def test_client_repr_is_short() -> None:
    """repr names providers, nothing else."""
    assert repr(palyra.Palyra()) == "Palyra(providers=[deterministic], models=2)"


def test_embed_does_not_eat_a_scripted_chat_reply() -> None:
    """Embeddings take only scripted errors; queued content waits for chat."""
    with palyra.Palyra() as client:
        backend = client.deterministic()
        backend.enqueue("for chat")
        client.embed("in between")
        assert client.chat(USER).choices[0].message.content == "for chat"
        backend.enqueue(status=500, error="embeddings down", times=3)
        with pytest.raises(palyra.InternalServerError, match="embeddings down"):
            client.embed("x")


def test_transcription_list_fields_repeat(key: str) -> None:
    """List options go out as repeated `name[]` multipart fields."""
    recorder = Recorder(httpx.Response(200, json={"text": "ok"}))
    config = _openai_config()
    config["models"].append(
        {"id": "whisper-1", "provider": "up", "role": "audio_transcription"}
    )
    with palyra.Palyra(config, transport=httpx.MockTransport(recorder)) as client:
        client.transcribe(
            b"RIFF", extra_body={"timestamp_granularities": ["word", "segment"]}
        )
    body = recorder.requests[0].content
    assert body.count(b'name="timestamp_granularities[]"') == 2


def test_dropped_unread_stream_releases_its_response(key: str) -> None:
    """A stream dropped without reading or closing closes its response."""
    closed: list[bool] = []

    class Body(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            # The first chunk is read before client.stream returns; the rest not.
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "delta": {"role": "assistant"}}],
            }
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        def close(self) -> None:
            closed.append(True)

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, stream=Body())

    with palyra.Palyra(
        _openai_config(), transport=httpx.MockTransport(handler)
    ) as client:
        stream = client.stream(USER)
        del stream
        gc.collect()
    assert closed == [True]
