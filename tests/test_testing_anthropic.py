"""palyra.testing.AnthropicMock: an Anthropic-kind config against the in-memory
Messages API, through the public client (sync and async) and on the wire."""

from __future__ import annotations

import json
from typing import Any

import pytest

import palyra
from palyra.testing import AnthropicMock
from tests.helpers import DRIVERS, OPS, chat, drain, start_stream, texts
from tests.testing_fixtures import HELLO, UPSTREAM, WEATHER, body, connect, wire
from tests.upstream import load_recorded


def events(raw: bytes) -> list[dict[str, Any]]:
    """The data of each SSE event, checking that ``event:`` names its type."""
    found = []
    for block in raw.decode().strip().split("\n\n"):
        name, data = block.split("\n")
        payload = json.loads(data.removeprefix("data: "))
        assert name == f"event: {payload['type']}"
        found.append(payload)
    return found


def shape(found: list[dict[str, Any]]) -> list[str]:
    """Event types, runs of deltas of one block collapsed into one entry."""
    kinds: list[str] = []
    for event in found:
        kind = event["type"]
        if kind == "content_block_delta":
            kind += ":" + event["delta"]["type"]
        if not kinds or kinds[-1] != kind or not kind.startswith("content_block_delta"):
            kinds.append(kind)
    return kinds


async def read(client: palyra.Palyra, driver: str) -> None:
    """Open a stream of HELLO and read it all."""
    await drain(await start_stream(client, driver, HELLO))


# -- chat and stream through the client ------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_chat_echoes_in_the_messages_format(driver: str) -> None:
    """An Anthropic-kind config gets the echo, with usage, from /v1/messages."""
    mock = AnthropicMock()
    async with connect(mock) as client:
        reply = await chat(client, driver, HELLO)
        count = client.count_tokens(HELLO, exact=True)
    assert reply.choices[0].message.content == "hello there"
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.id, reply.model) == ("msg_det_1", UPSTREAM)
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == count.exact
    assert reply.usage.completion_tokens == 2
    assert mock.history[0] == {
        "model": UPSTREAM,
        "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
        ],
        "system": "be brief",
    }


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_scripted_text_and_tool_calls_in_one_answer(driver: str) -> None:
    """A scripted reply comes back as text and tool_use blocks (stop: tool_use)."""
    mock = AnthropicMock()
    mock.enqueue(
        "Let me check.",
        tool_calls=[
            {"id": "toolu_1", "name": "get_weather", "arguments": {"city": "Paris"}},
            {"name": "get_time", "arguments": '{"zone": "CET"}'},
        ],
    )
    async with connect(mock) as client:
        reply = await chat(client, driver, HELLO, tools=[WEATHER])
    (choice,) = reply.choices
    assert choice.message.content == "Let me check."
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [
        ("toolu_1", "get_weather"),
        ("toolu_det_1_1", "get_time"),
    ]
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "Paris"},
        {"zone": "CET"},
    ]
    assert mock.history[0]["tools"][0]["name"] == "get_weather"


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_stream_text(driver: str) -> None:
    """A streamed answer arrives in pieces, with usage and a stop finish."""
    mock = AnthropicMock()
    mock.enqueue("one two three four five six seven")
    async with connect(mock) as client:
        stream = await start_stream(client, driver, HELLO)
        chunks = await drain(stream)
    assert [t for t in texts(chunks) if t] == ["one two three four", " five six seven"]
    completion = stream.completion
    assert completion is not None
    assert completion.choices[0].message.content == "one two three four five six seven"
    assert completion.choices[0].finish_reason == "stop"
    assert stream.usage is not None
    assert stream.usage.completion_tokens == 7
    assert mock.history[0]["stream"] is True


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_stream_tool_calls(driver: str) -> None:
    """Tool calls stream as tool_use blocks whose input arrives in pieces."""
    mock = AnthropicMock()
    arguments = {"city": "Paris", "unit": "celsius", "days": 3}
    mock.enqueue(tool_calls=[{"name": "get_weather", "arguments": arguments}])
    async with connect(mock) as client:
        stream = await start_stream(client, driver, HELLO, tools=[WEATHER])
        chunks = await drain(stream)
    pieces = [
        call.function.arguments
        for chunk in chunks
        for choice in chunk.choices
        for call in choice.delta.tool_calls or []
        if call.function and call.function.arguments
    ]
    assert len(pieces) > 1
    completion = stream.completion
    assert completion is not None
    (call,) = completion.choices[0].message.tool_calls or []
    assert (call.id, call.function.name) == ("toolu_det_1_0", "get_weather")
    assert json.loads(call.function.arguments) == arguments
    assert completion.choices[0].message.content is None
    assert completion.choices[0].finish_reason == "tool_calls"


def test_a_tool_loop_echoes_the_question_after_the_result() -> None:
    """The tool result turn is a user turn on the wire; the echo skips it."""
    mock = AnthropicMock()
    mock.enqueue(tool_calls=[{"id": "toolu_9", "name": "get_weather"}])
    with connect(mock) as client:
        first = client.chat(HELLO, tools=[WEATHER])
        answer = first.choices[0].message
        followup = [
            *HELLO,
            answer.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": "toolu_9", "content": "sunny"},
        ]
        second = client.chat(followup, tools=[WEATHER])
    assert second.choices[0].message.content == "hello there"
    result = mock.history[1]["messages"][2]["content"][0]
    assert result == {
        "type": "tool_result",
        "tool_use_id": "toolu_9",
        "content": "sunny",
    }


def test_json_mode_echoes_json() -> None:
    """palyra asks for JSON in the system prompt; the echo answers JSON."""
    mock = AnthropicMock()
    with connect(mock) as client:
        reply = client.chat(HELLO, response_format={"type": "json_object"})
    assert json.loads(reply.choices[0].message.content or "") == {"echo": "hello there"}


# -- the wire ------------------------------------------------------------------------


def test_the_stream_is_shaped_like_a_recorded_one() -> None:
    """Event for event, a text-then-tool answer streams as the real API did."""
    recorded = events(load_recorded("anthropic/tool_use_response.sse"))
    mock = AnthropicMock()
    mock.enqueue(
        "I'll check the current weather in Paris for you.",
        tool_calls=[{"name": "get_weather", "arguments": {"location": "Paris"}}],
    )
    found = events(wire(mock, body(stream=True)).content)
    assert shape(found) == shape(recorded)
    for kind in ("message_start", "message_delta", "content_block_start"):
        mine, real = (
            next(e for e in es if e["type"] == kind) for es in (found, recorded)
        )
        assert mine.keys() == real.keys()
    assert found[0]["message"].keys() == recorded[0]["message"].keys()
    assert found[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert found[-2]["usage"]["output_tokens"] >= 1
    tool_block = next(e for e in found if e.get("index") == 1)["content_block"]
    assert tool_block == {
        "type": "tool_use",
        "id": "toolu_det_1_0",
        "name": "get_weather",
        "input": {},
    }
    streamed = "".join(
        e["delta"]["partial_json"]
        for e in found
        if e.get("index") == 1 and "delta" in e
    )
    assert json.loads(streamed) == {"location": "Paris"}


def test_a_message_answer_on_the_wire() -> None:
    """The non-streamed answer is a ``message`` with blocks and usage."""
    mock = AnthropicMock()
    mock.enqueue("Sure.", tool_calls=[{"name": "f", "arguments": {"a": 1}}])
    response = wire(mock, body())
    assert response.headers["request-id"] == "req_det_1"
    message = response.json()
    assert message == {
        "id": "msg_det_1",
        "type": "message",
        "role": "assistant",
        "model": UPSTREAM,
        "content": [
            {"type": "text", "text": "Sure."},
            {"type": "tool_use", "id": "toolu_det_1_0", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": message["usage"]["input_tokens"], "output_tokens": 2},
    }
    assert message["usage"]["input_tokens"] > 0


@pytest.mark.parametrize(
    ("scripted", "stop_reason", "finish"),
    [
        (None, "end_turn", "stop"),
        ("stop", "end_turn", "stop"),
        ("length", "max_tokens", "length"),
        ("tool_calls", "tool_use", "tool_calls"),
        ("content_filter", "refusal", "content_filter"),
        ("end_turn", "end_turn", "stop"),
        ("max_tokens", "max_tokens", "length"),
        ("stop_sequence", "stop_sequence", "stop"),
        ("pause_turn", "pause_turn", "pause_turn"),
    ],
)
def test_finish_reasons_map_to_stop_reasons(
    scripted: str | None, stop_reason: str, finish: str
) -> None:
    """Scripted finish reasons (OpenAI's or Anthropic's words) become stop
    reasons on the wire, and palyra maps them back."""
    mock = AnthropicMock()
    mock.enqueue("text", finish_reason=scripted, times=2)
    assert wire(mock, body()).json()["stop_reason"] == stop_reason
    with connect(mock) as client:
        assert client.chat(HELLO).choices[0].finish_reason == finish


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
async def test_a_stop_sequence_cuts_the_answer(op: str) -> None:
    """The content ends before the stop sequence, which the answer names."""
    mock = AnthropicMock()
    mock.enqueue("alpha STOP beta", times=2)
    async with connect(mock) as client:
        if op == "chat":
            reply = await chat(client, "async", HELLO, stop=["STOP"])
        else:
            stream = await start_stream(client, "async", HELLO, stop="STOP")
            await drain(stream)
            assert stream.completion is not None
            reply = stream.completion
    assert reply.choices[0].message.content == "alpha "
    assert reply.choices[0].finish_reason == "stop"
    wired = wire(mock, body(stop_sequences=["STOP"])).json()
    assert (wired["stop_reason"], wired["stop_sequence"]) == ("stop_sequence", "STOP")


def test_a_refusal_stops_with_refusal() -> None:
    """A scripted refusal is text that stops with ``refusal``."""
    mock = AnthropicMock()
    mock.enqueue(refusal="I can't help with that.")
    message = wire(mock, body()).json()
    assert message["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert message["stop_reason"] == "refusal"


# -- errors ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_rate_limits_are_retried(driver: str) -> None:
    """A 429 is retried; scripted once per attempt it reaches the caller."""
    mock = AnthropicMock()
    mock.enqueue(status=429, error="slow down", times=3)
    async with connect(mock) as client:
        with pytest.raises(palyra.RateLimitError, match="slow down") as caught:
            await chat(client, driver, HELLO)
        assert caught.value.type == "rate_limit_error"
        assert len(mock.history) == 3
        mock.enqueue(status=429, error="slow down")
        reply = await chat(client, driver, HELLO)
    assert reply.choices[0].message.content == "hello there"
    assert len(mock.history) == 5


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("op", OPS)
async def test_overload_is_an_overloaded_error(driver: str, op: str) -> None:
    """529 comes as Anthropic's overloaded_error, for calls and streams."""
    mock = AnthropicMock()
    mock.enqueue(status=529, error="Overloaded", times=3)
    async with connect(mock) as client:
        call = chat(client, driver, HELLO) if op == "chat" else read(client, driver)
        with pytest.raises(palyra.OverloadedError, match="Overloaded") as caught:
            await call
    assert (caught.value.status_code, caught.value.type) == (529, "overloaded_error")
    assert caught.value.request_id == "req_det_3"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (418, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_scripted_errors_use_the_anthropic_envelope(status: int, kind: str) -> None:
    """The error type follows the status, as Anthropic's does."""
    mock = AnthropicMock()
    mock.enqueue(status=status, error="boom")
    response = wire(mock, body())
    assert response.status_code == status
    assert response.json() == {
        "type": "error",
        "error": {"type": kind, "message": "boom"},
        "request_id": "req_det_1",
    }
    assert response.headers["request-id"] == "req_det_1"


def test_enqueue_refuses_tool_input_that_is_not_an_object() -> None:
    """A tool_use input is a JSON object on the wire: anything else fails early."""
    mock = AnthropicMock()
    for arguments in ("[1, 2]", '{"city": "Par', 3):
        with pytest.raises(ValueError, match="JSON object"):
            mock.enqueue(tool_calls=[{"name": "f", "arguments": arguments}])
    with pytest.raises(ValueError, match="needs a 'name'"):
        mock.enqueue(tool_calls=[{"arguments": {}}])
    mock.enqueue(tool_calls=[{"function": {"name": "f", "arguments": "{}"}}])
