"""Malformed Anthropic answers: typed errors naming provider, model and event
type, never quoting the upstream's value, and counted as failures."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import palyra
from tests.helpers import DRIVERS, PieceTransport, chat, drain, start_stream
from tests.providers.anthropic_fixtures import KEY, MODEL, USER, config, message

pytestmark = pytest.mark.anyio

MARK = "UPSTREAM-VALUE-7731"  # must never appear in an error


def _client(handler: Any) -> palyra.Palyra:
    return palyra.Palyra(
        config(),
        transport=httpx.MockTransport(handler),
        credentials=lambda provider: KEY,
    )


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("content", "usage", "problem"),
    [
        pytest.param(
            [{"type": "text", "text": {"x": MARK}}],
            None,
            r"content\[0\]\.text is not a string",
            id="text-object",
        ),
        pytest.param([MARK], None, r"content\[0\] is not a content block", id="str"),
        pytest.param(
            None,
            {"input_tokens": MARK, "output_tokens": 1},
            "usage.input_tokens is not a token count",
            id="usage-str",
        ),
        pytest.param(
            None,
            {"input_tokens": 1.5, "output_tokens": 1},
            "usage.input_tokens is not a whole number",
            id="usage-fraction",
        ),
        pytest.param(None, MARK, "usage is not an object", id="usage-not-object"),
        pytest.param(
            [{"type": "tool_use", "id": "t", "name": {"n": MARK}, "input": {}}],
            None,
            "ValidationError",
            id="tool-name",
        ),
    ],
)
async def test_malformed_messages_are_typed(
    driver: str, content: Any, usage: Any, problem: str
) -> None:
    body = message(content, usage=usage)
    if usage is not None:
        body["usage"] = usage
    with _client(lambda r: httpx.Response(200, json=body)) as client:
        with pytest.raises(palyra.APIResponseValidationError, match=problem) as info:
            await chat(client, driver, USER, MODEL)
        (health,) = client.health()
    error = info.value
    assert (error.provider, error.model) == ("ant", MODEL)
    assert MARK not in str(error)
    assert MARK not in repr(error.args)
    assert health.consecutive_failures == 1


def _pieces(*events: tuple[str, Any]) -> palyra.Palyra:
    """A client of an upstream sending one event per network read, so the
    stream is the caller's before the later events arrive."""
    upstream = PieceTransport(b"", 1)
    upstream.pieces = [
        f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events
    ]
    return palyra.Palyra(
        config(), credentials=lambda provider: KEY, **upstream.transports()
    )


START = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "usage": {"input_tokens": 5, "output_tokens": 1},
        },
    },
)
BLOCK = (
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
)
HELLO = (
    "content_block_delta",
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Hello"},
    },
)


def _delta(delta: Any, index: Any = 0) -> tuple[str, Any]:
    body = {"type": "content_block_delta", "index": index, "delta": delta}
    return ("content_block_delta", body)


BAD_EVENTS = [
    pytest.param(
        _delta({"type": "text_delta", "text": {"x": MARK}}), "text is not a string"
    ),
    pytest.param(_delta(MARK), "AttributeError", id="delta-str"),
    pytest.param(
        ("content_block_stop", {"type": "content_block_stop", "index": MARK}),
        "ValueError",
        id="index",
    ),
    pytest.param(
        (
            "content_block_start",
            {"type": "content_block_start", "content_block": [MARK]},
        ),
        "AttributeError",
        id="block-list",
    ),
    pytest.param(
        ("message_delta", {"type": "message_delta", "usage": MARK}),
        "AttributeError",
        id="usage-str",
    ),
    pytest.param(
        ("message_start", {"type": "message_start", "message": MARK}),
        "AttributeError",
        id="message-str",
    ),
    pytest.param(
        _delta({"type": "thinking_delta", "thinking": 5}),
        "thinking is not a string",
        id="thinking",
    ),
    pytest.param(
        _delta({"type": "input_json_delta", "partial_json": [MARK]}),
        "partial_json is not a string",
        id="json-delta",
    ),
    pytest.param(
        ("message_delta", {"type": "message_delta", "delta": MARK}),
        "AttributeError",
        id="message-delta-str",
    ),
    pytest.param(("content_block_delta", [MARK]), "malformed", id="not-an-object"),
]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("bad", "problem"), BAD_EVENTS)
async def test_malformed_events_after_the_first_chunk_are_typed(
    driver: str, bad: tuple[str, Any], problem: str
) -> None:
    """Raised from the iterator as APIResponseValidationError naming the event
    type; the broken stream counts as the provider's failure."""
    with _pieces(START, BLOCK, HELLO, bad) as client:
        stream = await start_stream(client, driver, USER, MODEL)
        with pytest.raises(palyra.APIResponseValidationError) as info:
            await drain(stream)
        (health,) = client.health()
    error = info.value
    assert f"malformed {bad[0]} event" in str(error)
    assert problem in str(error)
    assert (error.provider, error.model) == ("ant", MODEL)
    assert MARK not in str(error)
    assert MARK not in repr(error.args)
    assert (health.consecutive_failures, health.success_rate) == (1, 0.0)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_usage_counts_at_the_end_are_checked(driver: str) -> None:
    """A non-numeric output count arrives in message_delta and is read at
    message_stop: typed as well."""
    usage = (
        "message_delta",
        {"type": "message_delta", "usage": {"output_tokens": MARK}},
    )
    stop = ("message_stop", {"type": "message_stop"})
    with _pieces(START, BLOCK, HELLO, usage, stop) as client:
        stream = await start_stream(client, driver, USER, MODEL)
        with pytest.raises(palyra.APIResponseValidationError, match="output_tokens"):
            await drain(stream)


def test_a_bad_event_leaves_nothing_of_itself_in_the_accumulator() -> None:
    """An event whose second chunk is malformed: the first is not kept either,
    so the partial answer never holds half an event."""
    from palyra._providers.anthropic_stream import AnthropicStreamParser
    from palyra._providers.base import Target
    from palyra._providers.sse import ServerSentEvent

    with palyra.Palyra() as client:
        target = Target(client._registry.resolve(None, "chat"), None)
    good = {"id": "m", "model": "x", "created": 1, "choices": []}

    class TwoBodies(AnthropicStreamParser):
        __slots__ = ()

        def _translate(self, event: ServerSentEvent) -> list[dict[str, Any]]:
            return [good, {"choices": "not a list"}]

    parser = TwoBodies(target, forward_usage=True)
    with pytest.raises(palyra.APIResponseValidationError, match="message_delta"):
        parser._events([ServerSentEvent(data="{}", event="message_delta")])
    assert parser.accumulator.chunks == 0
