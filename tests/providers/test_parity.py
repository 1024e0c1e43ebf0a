"""Parity: one conversation through an OpenAI-compatible and an Anthropic provider.

Two `httpx.MockTransport` upstreams answer the same turn, each in its own dialect
(Chat Completions JSON and SSE chunks; Messages JSON and named events). What the
caller gets back must be the same: content, tool calls (name and parsed
arguments), finish reason and usage, for `chat` and for `stream` alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

import palyra

KEY = "sk-parity-test-KEY"
SSE = {"content-type": "text/event-stream"}
SYSTEM = {"role": "system", "content": "You are a terse weather bot."}
ASK = {"role": "user", "content": "Weather in Paris?"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
NOW_TOOL = {"type": "function", "function": {"name": "now", "parameters": {}}}
TOOL_TURN = [
    SYSTEM,
    ASK,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
]
# OpenAI finish reason -> the Anthropic stop reason that means the same.
STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


@dataclass
class Turn:
    """One answer, to be told in both dialects."""

    messages: list[dict[str, Any]]
    text: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    finish: str = "stop"
    uncached: int = 20
    cached: int = 0
    output: int = 9
    tools: list[dict[str, Any]] = field(default_factory=list)

    def words(self) -> list[str]:
        """The text in streamed pieces."""
        return [w + " " for w in self.text.split(" ")[:-1]] + self.text.split(" ")[-1:]


TURNS = [
    pytest.param(Turn([SYSTEM, ASK], text="Sunny, 18C in Paris."), id="text"),
    pytest.param(
        Turn([SYSTEM, ASK], text="Sunny.", uncached=5, cached=1024), id="cached_prompt"
    ),
    pytest.param(
        Turn(
            [SYSTEM, ASK],
            calls=[("get_weather", {"city": "Paris", "units": ["c", "f"]})],
            finish="tool_calls",
            tools=[WEATHER_TOOL],
        ),
        id="tool_call",
    ),
    pytest.param(
        Turn(
            [SYSTEM, ASK],
            text="Checking both.",
            calls=[
                ("get_weather", {"city": "Paris"}),
                ("get_weather", {"city": "Zürich"}),
            ],
            finish="tool_calls",
            tools=[WEATHER_TOOL],
        ),
        id="text_and_two_tool_calls",
    ),
    pytest.param(
        Turn(TOOL_TURN, text="It is 18C in Paris.", tools=[WEATHER_TOOL]),
        id="after_tool_result",
    ),
    pytest.param(
        Turn([SYSTEM, ASK], text="It is sunny and", finish="length"), id="length"
    ),
    pytest.param(
        Turn(
            [SYSTEM, ASK],
            calls=[("now", {})],
            finish="tool_calls",
            tools=[NOW_TOOL],
        ),
        id="tool_call_without_arguments",
    ),
]


# -- the two dialects -------------------------------------------------------------


def openai_json(turn: Turn) -> dict[str, Any]:
    """The turn as a Chat Completions response."""
    calls = [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }
        for i, (name, args) in enumerate(turn.calls)
    ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": turn.text or None,
                    "tool_calls": calls or None,
                },
                "finish_reason": turn.finish,
            }
        ],
        "usage": openai_usage(turn),
    }


def openai_usage(turn: Turn) -> dict[str, Any]:
    """OpenAI usage: prompt tokens include the cached ones."""
    prompt = turn.uncached + turn.cached
    return {
        "prompt_tokens": prompt,
        "completion_tokens": turn.output,
        "total_tokens": prompt + turn.output,
        "prompt_tokens_details": {"cached_tokens": turn.cached},
    }


def openai_sse(turn: Turn) -> bytes:
    """The turn as a Chat Completions stream."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    chunks = [chunk({"role": "assistant", "content": ""})]
    if turn.text:
        chunks += [chunk({"content": word}) for word in turn.words()]
    for i, (name, args) in enumerate(turn.calls):
        start = {
            "index": i,
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        chunks.append(chunk({"tool_calls": [start]}))
        text = json.dumps(args)
        for piece in (text[:5], text[5:]):
            if piece:
                piece_delta = {"index": i, "function": {"arguments": piece}}
                chunks.append(chunk({"tool_calls": [piece_delta]}))
    chunks.append(chunk({}, turn.finish))
    chunks.append({**chunk({}), "choices": [], "usage": openai_usage(turn)})
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
    return "".join(lines).encode()


def anthropic_json(turn: Turn) -> dict[str, Any]:
    """The turn as a Messages API response."""
    content: list[dict[str, Any]] = []
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    for i, (name, args) in enumerate(turn.calls):
        content.append(
            {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": args}
        )
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": STOP[turn.finish],
        "stop_sequence": None,
        "usage": {
            "input_tokens": turn.uncached,
            "cache_read_input_tokens": turn.cached,
            "cache_creation_input_tokens": 0,
            "output_tokens": turn.output,
        },
    }


def anthropic_sse(turn: Turn) -> bytes:
    """The turn as a Messages API event stream."""
    start = {**anthropic_json(turn), "content": [], "stop_reason": None}
    start["usage"] = {**start["usage"], "output_tokens": 1}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    index = 0
    if turn.text:
        events.append(
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            }
        )
        events += [
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": word},
            }
            for word in turn.words()
        ]
        events.append({"type": "content_block_stop", "index": index})
        index += 1
    for i, (name, args) in enumerate(turn.calls):
        block = {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": {}}
        events.append(
            {"type": "content_block_start", "index": index, "content_block": block}
        )
        # Anthropic streams a tool without arguments as one empty piece.
        text = json.dumps(args) if args else ""
        for piece in (text[:5], text[5:]) if text else ("",):
            events.append(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                }
            )
        events.append({"type": "content_block_stop", "index": index})
        index += 1
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": STOP[turn.finish], "stop_sequence": None},
            "usage": {"output_tokens": turn.output},
        }
    )
    events.append({"type": "message_stop"})
    return "".join(
        f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events
    ).encode()


def clients(turn: Turn, stream: bool) -> tuple[palyra.Palyra, list[httpx.Request]]:
    """One client with both providers, each answering ``turn`` in its dialect."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "openai.test":
            assert request.url.path == "/v1/chat/completions"
            if stream:
                return httpx.Response(200, headers=SSE, content=openai_sse(turn))
            return httpx.Response(200, json=openai_json(turn))
        assert request.url.host == "anthropic.test"
        assert request.url.path == "/v1/messages"
        if stream:
            return httpx.Response(200, headers=SSE, content=anthropic_sse(turn))
        return httpx.Response(200, json=anthropic_json(turn))

    config = {
        "providers": [
            {
                "id": "oai",
                "kind": "openai",
                "base_url": "https://openai.test/v1",
                "max_retries": 0,
            },
            {
                "id": "ant",
                "kind": "anthropic",
                "base_url": "https://anthropic.test",
                "max_retries": 0,
            },
        ],
        "models": [
            {"id": "gpt", "provider": "oai", "upstream_model": "gpt-4o-mini"},
            {"id": "claude", "provider": "ant", "upstream_model": "claude-sonnet-4-5"},
        ],
    }
    client = palyra.Palyra(
        config, transport=httpx.MockTransport(handler), credentials=lambda p: KEY
    )
    return client, seen


# -- what must agree ----------------------------------------------------------------


def summary(completion: palyra.ChatCompletion | None) -> dict[str, Any]:
    """What a caller reads off a completion, provider-independent."""
    assert completion is not None
    (choice,) = completion.choices
    usage = completion.usage
    assert usage is not None
    details = usage.prompt_tokens_details
    return {
        "role": choice.message.role,
        "content": choice.message.content,
        "tool_calls": [
            (call.type, call.function.name, json.loads(call.function.arguments))
            for call in choice.message.tool_calls or []
        ],
        "finish_reason": choice.finish_reason,
        "usage": (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens,
            details.cached_tokens if details is not None else 0,
        ),
    }


def streamed(chunks: list[palyra.ChatCompletionChunk]) -> dict[str, Any]:
    """What a caller assembles from the yielded chunks themselves."""
    text = ""
    calls: dict[int, list[str]] = {}
    starts: list[int] = []
    finish = None
    for chunk in chunks:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for piece in choice.delta.tool_calls or []:
                if piece.id is not None:
                    starts.append(piece.index)
                function = piece.function
                assert function is not None
                entry = calls.setdefault(piece.index, ["", ""])
                entry[0] += function.name or ""
                entry[1] += function.arguments or ""
            finish = choice.finish_reason or finish
    assert starts == sorted(calls)  # one first chunk (with the id) per tool call
    return {
        "text": text,
        "tool_calls": [
            (name, json.loads(arguments))
            for _, (name, arguments) in sorted(calls.items())
        ],
        "finish_reason": finish,
    }


def expected(turn: Turn) -> dict[str, Any]:
    """The summary both providers must give for ``turn``."""
    prompt = turn.uncached + turn.cached
    return {
        "role": "assistant",
        "content": turn.text or None,
        "tool_calls": [("function", name, args) for name, args in turn.calls],
        "finish_reason": turn.finish,
        "usage": (prompt, turn.output, prompt + turn.output, turn.cached),
    }


def options(turn: Turn) -> dict[str, Any]:
    """The call options of ``turn``."""
    return {"tools": turn.tools} if turn.tools else {}


@pytest.mark.parametrize("turn", TURNS)
def test_chat_parity(turn: Turn) -> None:
    """`chat` gives the same answer through both providers."""
    client, seen = clients(turn, stream=False)
    with client:
        via_openai = client.chat(turn.messages, "gpt", **options(turn))
        via_anthropic = client.chat(turn.messages, "claude", **options(turn))
    assert summary(via_openai) == expected(turn)
    assert summary(via_anthropic) == summary(via_openai)
    assert [r.url.host for r in seen] == ["openai.test", "anthropic.test"]


@pytest.mark.anyio
@pytest.mark.parametrize("turn", TURNS)
async def test_async_chat_parity(turn: Turn) -> None:
    """`achat` gives the same answer through both providers."""
    client, _ = clients(turn, stream=False)
    async with client:
        via_openai = await client.achat(turn.messages, "gpt", **options(turn))
        via_anthropic = await client.achat(turn.messages, "claude", **options(turn))
    assert summary(via_anthropic) == summary(via_openai) == expected(turn)


def run_stream(
    client: palyra.Palyra, turn: Turn, model: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(assembled from the chunks, summary of the stream's completion)."""
    with client.stream(turn.messages, model, **options(turn)) as stream:
        chunks = list(stream)
    return streamed(chunks), summary(stream.completion)


@pytest.mark.parametrize("turn", TURNS)
def test_stream_parity(turn: Turn) -> None:
    """`stream` yields the same text and tool calls and assembles the same answer
    through both providers, and the same as `chat`."""
    client, _ = clients(turn, stream=True)
    with client:
        openai_chunks, openai_final = run_stream(client, turn, "gpt")
        anthropic_chunks, anthropic_final = run_stream(client, turn, "claude")
    assert openai_final == expected(turn)
    assert anthropic_final == openai_final
    assert openai_chunks == {
        "text": turn.text,
        "tool_calls": [(name, args) for name, args in turn.calls],
        "finish_reason": turn.finish,
    }
    assert anthropic_chunks == openai_chunks


@pytest.mark.anyio
@pytest.mark.parametrize("turn", TURNS)
async def test_async_stream_parity(turn: Turn) -> None:
    """`astream` agrees across providers too."""
    client, _ = clients(turn, stream=True)
    finals = []
    async with client:
        for model in ("gpt", "claude"):
            async with await client.astream(
                turn.messages, model, **options(turn)
            ) as stream:
                chunks = [chunk async for chunk in stream]
            finals.append((streamed(chunks), summary(stream.completion)))
    assert finals[0] == finals[1]
    assert finals[0][1] == expected(turn)


@pytest.mark.parametrize("turn", TURNS)
def test_both_requests_carry_the_whole_conversation(turn: Turn) -> None:
    """Each upstream receives the conversation in its own dialect, nothing lost."""
    client, seen = clients(turn, stream=False)
    with client:
        client.chat(turn.messages, "gpt", **options(turn))
        client.chat(turn.messages, "claude", **options(turn))
    openai_body, anthropic_body = (json.loads(r.content) for r in seen)
    assert openai_body["messages"] == turn.messages
    assert anthropic_body["system"] == SYSTEM["content"]
    assert [m["role"] for m in anthropic_body["messages"]] == (
        ["user", "assistant", "user"] if turn.messages is TOOL_TURN else ["user"]
    )
    assert [t["name"] for t in anthropic_body.get("tools", [])] == [
        t["function"]["name"] for t in openai_body.get("tools", [])
    ]
    if turn.messages is TOOL_TURN:
        use = anthropic_body["messages"][1]["content"][0]
        result = anthropic_body["messages"][2]["content"][0]
        assert (use["id"], use["name"], use["input"]) == (
            "call_1",
            "get_weather",
            {"city": "Paris"},
        )
        assert (result["tool_use_id"], result["content"]) == (
            "call_1",
            '{"temp_c": 18}',
        )
