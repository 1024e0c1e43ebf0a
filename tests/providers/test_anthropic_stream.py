"""Golden tests: recorded Anthropic streams through the real client path.

Each recorded ``.sse`` file is served by an `httpx.MockTransport`, cut into small
network reads. What the chunks and the assembled answer must be is computed here,
independently of palyra: the named events are parsed with `json` and added up
(text, ``tool_use`` blocks with their ``partial_json`` pieces, stop reason, usage
with its cache fields). `client.stream` and `client.astream` must agree with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

import palyra
from tests.helpers import PieceTransport
from tests.upstream import fixtures_dir, load_recorded

KEY = "sk-ant-test-KEY"
MODEL = "claude"
MESSAGES = [{"role": "user", "content": "What's the weather in Paris?"}]
SSE_HEADERS = {"content-type": "text/event-stream", "request-id": "req_golden_1"}
PIECE = 23  # bytes per network read: splits events, lines and JSON strings
FILES = sorted(path.name for path in (fixtures_dir() / "anthropic").glob("*.sse"))
RECORDED = [pytest.param(name, id=name.removesuffix(".sse")) for name in FILES]
USAGE = [
    pytest.param(False, id="default"),
    pytest.param(True, id="include_usage"),
]
# The documented stop reason mapping, written out again (not imported).
FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

Step = tuple[Any, ...]


@dataclass
class ToolPlan:
    """One ``tool_use`` block as the recorded events add it up."""

    index: int
    id: str
    name: str
    arguments: str = ""

    @property
    def complete(self) -> bool:
        """Whether the assembled arguments are JSON."""
        try:
            json.loads(self.arguments or "{}")
        except ValueError:
            return False
        return True


@dataclass
class Expected:
    """What a recorded stream says, parsed with nothing but `json`."""

    id: str = ""
    model: str = ""
    text: str = ""
    tools: dict[int, ToolPlan] = field(default_factory=dict)
    stop_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    """One entry per chunk palyra should yield, in order (see `step_of`)."""

    @property
    def finish_reason(self) -> str | None:
        """The OpenAI finish reason of the stop reason."""
        if self.stop_reason is None:
            return None
        return FINISH.get(self.stop_reason, self.stop_reason)

    @property
    def prompt_tokens(self) -> int:
        """Input plus cache reads plus cache writes."""
        usage = self.usage
        return (
            usage.get("input_tokens", 0)
            + usage.get("cache_read_input_tokens", 0)
            + usage.get("cache_creation_input_tokens", 0)
        )

    @property
    def complete(self) -> bool:
        """Whether every tool call's arguments ended as JSON."""
        return all(tool.complete for tool in self.tools.values())


def events_of(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """``(event name, JSON data)`` for every ``data:`` line of a recording."""
    events = []
    name = "message"
    for line in raw.decode().splitlines():
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line.removeprefix("data:"))))
    return events


def expected_from(raw: bytes) -> Expected:
    """Add up a recorded Anthropic stream independently of palyra."""
    plan = Expected()
    for name, data in events_of(raw):
        kind = data.get("type", name)
        if kind == "message_start":
            message = data["message"]
            plan.id, plan.model = message["id"], message["model"]
            plan.usage.update(_ints(message.get("usage")))
            plan.steps.append(("role", "assistant"))
        elif kind == "content_block_start":
            block = data["content_block"]
            if block["type"] == "tool_use":
                tool = ToolPlan(len(plan.tools), block["id"], block["name"])
                plan.tools[data["index"]] = tool
                plan.steps.append(("tool", tool.index, tool.id, tool.name, ""))
        elif kind == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                plan.text += delta["text"]
                plan.steps.append(("text", delta["text"]))
            elif delta["type"] == "input_json_delta" and delta["partial_json"]:
                tool = plan.tools[data["index"]]
                tool.arguments += delta["partial_json"]
                plan.steps.append(("args", tool.index, delta["partial_json"]))
        elif kind == "message_delta":
            plan.stop_reason = data["delta"]["stop_reason"]
            plan.usage.update(_ints(data.get("usage")))
            plan.steps.append(("finish", plan.finish_reason))
        elif kind == "message_stop":
            plan.steps.append(("usage", *usage_numbers(plan)))
            break
    return plan


def _ints(usage: dict[str, Any] | None) -> dict[str, int]:
    return {k: v for k, v in (usage or {}).items() if isinstance(v, int)}


def usage_numbers(plan: Expected) -> tuple[int, int, int, int, int]:
    """(prompt, completion, total, cached, cache write) in OpenAI terms."""
    completion = plan.usage.get("output_tokens", 0)
    return (
        plan.prompt_tokens,
        completion,
        plan.prompt_tokens + completion,
        plan.usage.get("cache_read_input_tokens", 0),
        plan.usage.get("cache_creation_input_tokens", 0),
    )


def step_of(chunk: palyra.ChatCompletionChunk) -> Step:
    """What one yielded chunk carries, in the shape of `Expected.steps`."""
    if not chunk.choices:
        usage = chunk.usage
        assert usage is not None
        details = usage.prompt_tokens_details
        assert details is not None
        return (
            "usage",
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens,
            details.cached_tokens,
            details.cache_write_tokens,
        )
    (choice,) = chunk.choices
    assert choice.index == 0
    delta = choice.delta
    if choice.finish_reason is not None:
        assert not delta.content
        assert not delta.tool_calls
        return ("finish", choice.finish_reason)
    if delta.role is not None:
        assert not delta.content
        return ("role", delta.role)
    if delta.tool_calls:
        (piece,) = delta.tool_calls
        assert piece.function is not None
        if piece.id is not None:
            return (
                "tool",
                piece.index,
                piece.id,
                piece.function.name,
                piece.function.arguments or "",
            )
        assert piece.function.name is None
        return ("args", piece.index, piece.function.arguments)
    assert delta.content is not None
    return ("text", delta.content)


def terminated(raw: bytes) -> bytes:
    """The recording as the API sends it: every event ends with a blank line.

    The recorded files end right after the last ``data:`` line.
    """
    return raw.rstrip(b"\n") + b"\n\n"


def config() -> dict[str, Any]:
    """One Anthropic provider; the transport never touches the network."""
    return {
        "providers": [
            {
                "id": "ant",
                "kind": "anthropic",
                "base_url": "https://anthropic.test",
                "timeout": 2,
                "max_retries": 0,
            }
        ],
        "models": [{"id": MODEL, "provider": "ant", "context_window": 200000}],
    }


def serve(raw: bytes, size: int = PIECE) -> PieceTransport:
    """The recorded body served in network reads of ``size`` bytes."""
    return PieceTransport(raw, size, SSE_HEADERS)


def client_on(served: PieceTransport) -> palyra.Palyra:
    """A client whose only upstream is ``served`` (sync and async)."""
    return palyra.Palyra(
        config(),
        transport=httpx.MockTransport(served.handler),
        async_transport=httpx.MockTransport(served.ahandler),
        credentials=lambda provider: KEY,
    )


def options_for(with_usage: bool) -> dict[str, Any]:
    """Stream options asking for the usage chunk, or none."""
    return {"stream_options": {"include_usage": True}} if with_usage else {}


def read_sync(
    raw: bytes, **options: Any
) -> tuple[list[palyra.ChatCompletionChunk], palyra.Stream, Exception | None]:
    """Stream ``raw`` with `client.stream`: chunks, the stream, the error if any."""
    served = serve(raw)
    chunks: list[palyra.ChatCompletionChunk] = []
    error: Exception | None = None
    with client_on(served) as client, client.stream(MESSAGES, MODEL, **options) as s:
        try:
            for chunk in s:
                chunks.append(chunk)
        except palyra.APIError as exc:
            error = exc
    body = json.loads(served.requests[0].content)
    assert body["stream"] is True
    assert "stream_options" not in body
    return chunks, s, error


async def read_async(
    raw: bytes, **options: Any
) -> tuple[list[palyra.ChatCompletionChunk], palyra.AsyncStream, Exception | None]:
    """Stream ``raw`` with `client.astream`."""
    served = serve(raw)
    chunks: list[palyra.ChatCompletionChunk] = []
    error: Exception | None = None
    async with (
        client_on(served) as client,
        await client.astream(MESSAGES, MODEL, **options) as s,
    ):
        try:
            async for chunk in s:
                chunks.append(chunk)
        except palyra.APIError as exc:
            error = exc
    return chunks, s, error


def check(
    plan: Expected,
    chunks: list[palyra.ChatCompletionChunk],
    stream: palyra.Stream | palyra.AsyncStream,
    error: Exception | None,
    with_usage: bool,
) -> None:
    """Yielded chunks and the assembled answer match the independent parse."""
    want = [s for s in plan.steps if with_usage or s[0] != "usage"]
    assert [step_of(chunk) for chunk in chunks] == want
    assert {(chunk.id, chunk.model) for chunk in chunks} == {(plan.id, plan.model)}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        plan.text
    )
    if not plan.complete:
        # Never a silent success: the cut tool input is an error, after the chunks.
        assert isinstance(error, palyra.APIResponseValidationError)
        assert "incomplete JSON" in error.message
        assert error.request_id == "req_golden_1"
        assert stream.completion is None
        return
    assert error is None
    completion = stream.completion
    assert completion is not None
    assert (completion.id, completion.model) == (plan.id, plan.model)
    (choice,) = completion.choices
    assert choice.message.content == (plan.text or None)
    assert choice.finish_reason == plan.finish_reason
    if plan.tools:
        calls = choice.message.tool_calls
        assert calls is not None
        assert [(c.id, c.type, c.function.name) for c in calls] == [
            (t.id, "function", t.name) for t in plan.tools.values()
        ]
        for call, tool in zip(calls, plan.tools.values(), strict=True):
            assert call.function.arguments == tool.arguments
            assert json.loads(call.function.arguments) == json.loads(tool.arguments)
    else:
        assert choice.message.tool_calls is None
    usage = stream.usage
    assert usage is not None
    details = usage.prompt_tokens_details
    assert details is not None
    assert (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.total_tokens,
        details.cached_tokens,
        details.cache_write_tokens,
    ) == usage_numbers(plan)
    assert stream.palyra.provider == "ant"
    assert [a.outcome for a in stream.palyra.attempts] == ["success"]


def with_cache(raw: bytes) -> bytes:
    """The tool_use recording with cache reads and writes in its input usage."""
    zero = b'"cache_creation_input_tokens":0,"cache_read_input_tokens":0'
    assert zero in raw
    return raw.replace(
        zero, b'"cache_creation_input_tokens":40,"cache_read_input_tokens":300'
    )


# -- every recording --------------------------------------------------------------


def test_every_recorded_file_is_covered() -> None:
    """All seven recorded Anthropic streams are in the golden set."""
    assert len(FILES) == 7


FRAMINGS = [
    pytest.param(lambda raw: raw, id="as_recorded"),
    pytest.param(terminated, id="terminated"),
]


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("with_usage", USAGE)
@pytest.mark.parametrize("name", RECORDED)
def test_recorded_stream_sync(
    name: str, with_usage: bool, framing: Callable[[bytes], bytes]
) -> None:
    """A recorded stream yields what its events say and assembles the answer,
    byte for byte as stored (no final blank line) and as the API frames it."""
    raw = framing(load_recorded(f"anthropic/{name}"))
    plan = expected_from(raw)
    assert plan.steps[-1][0] == "usage"
    chunks, stream, error = read_sync(raw, **options_for(with_usage))
    check(plan, chunks, stream, error, with_usage)


@pytest.mark.anyio
@pytest.mark.parametrize("with_usage", USAGE)
@pytest.mark.parametrize("name", RECORDED)
async def test_recorded_stream_async(name: str, with_usage: bool) -> None:
    """`astream` yields and assembles exactly what `stream` does."""
    raw = load_recorded(f"anthropic/{name}")
    plan = expected_from(raw)
    chunks, stream, error = await read_async(raw, **options_for(with_usage))
    check(plan, chunks, stream, error, with_usage)
    sync_chunks, sync_stream, sync_error = read_sync(raw, **options_for(with_usage))
    # `created` is the clock second the stream started: the two runs may straddle one.
    assert [c.model_dump(exclude={"created"}) for c in chunks] == [
        c.model_dump(exclude={"created"}) for c in sync_chunks
    ]
    assert type(error) is type(sync_error)
    if stream.completion is not None:
        assert sync_stream.completion is not None
        assert stream.completion.model_dump(
            exclude={"palyra", "created"}
        ) == sync_stream.completion.model_dump(exclude={"palyra", "created"})


@pytest.mark.parametrize("name", RECORDED)
def test_recordings_end_without_a_blank_line(name: str) -> None:
    """The stored files end right after the last ``data:`` line (what
    ``as_recorded`` exercises)."""
    raw = load_recorded(f"anthropic/{name}")
    assert not raw.endswith(b"\n\n")
    assert raw.rstrip(b"\n").splitlines()[-1].startswith(b"data: {")


@pytest.mark.anyio
async def test_cut_inside_the_last_event_is_interrupted() -> None:
    """A body cut inside its final event is an interrupted stream, not garbage."""
    raw = load_recorded("anthropic/basic_response.sse")
    assert raw.endswith(b'{"type":"message_stop"}')
    cut = raw[:-5]
    for chunks, stream, error in (read_sync(cut), await read_async(cut)):
        assert isinstance(error, palyra.StreamInterruptedError)
        assert error.request_id == "req_golden_1"
        assert [step_of(c) for c in chunks][-1] == ("finish", "stop")
        assert stream.completion is None


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda raw: raw.replace(b"\n", b"\r\n"), id="crlf"),
        pytest.param(
            lambda raw: raw.replace(b"\n\n", b"\n\n: keep-alive\n\n"), id="comments"
        ),
        pytest.param(with_cache, id="cache_usage"),
    ],
)
def test_tool_use_recording_in_other_framings(
    variant: Callable[[bytes], bytes],
) -> None:
    """CRLF line ends, keep-alive comments and cache usage change nothing else."""
    raw = variant(terminated(load_recorded("anthropic/tool_use_response.sse")))
    plan = expected_from(raw)
    chunks, stream, error = read_sync(raw, **options_for(True))
    check(plan, chunks, stream, error, with_usage=True)


def test_cache_usage_is_normalised() -> None:
    """Streamed cache reads and writes count in the prompt, and separately."""
    raw = with_cache(terminated(load_recorded("anthropic/tool_use_response.sse")))
    _, stream, error = read_sync(raw)
    assert error is None
    usage = stream.usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        377 + 300 + 40,
        65,
        782,
    )
    assert usage.prompt_tokens_details.cached_tokens == 300
    assert usage.prompt_tokens_details.cache_write_tokens == 40


# -- what the issue names specifically --------------------------------------------


def test_tool_use_recording_yields_exactly_one_tool_call() -> None:
    """One tool call; its arguments parse as the streamed JSON; id and name come
    only in its first chunk."""
    raw = terminated(load_recorded("anthropic/tool_use_response.sse"))
    chunks, stream, error = read_sync(raw)
    assert error is None
    pieces = [
        piece
        for chunk in chunks
        for choice in chunk.choices
        for piece in choice.delta.tool_calls or []
    ]
    assert {piece.index for piece in pieces} == {0}
    first, *rest = pieces
    assert (first.id, first.type) == ("toolu_01NRLabsLyVHZPKxbKvkfSMn", "function")
    assert first.function is not None
    assert first.function.name == "get_weather"
    assert rest
    for piece in rest:
        assert piece.id is None
        assert piece.function is not None
        assert piece.function.name is None
    streamed = "".join(
        data["delta"]["partial_json"]
        for _, data in events_of(raw)
        if data.get("delta", {}).get("type") == "input_json_delta"
    )
    assembled = "".join(p.function.arguments or "" for p in pieces if p.function)
    assert assembled == streamed
    assert json.loads(assembled) == {"location": "Paris"}
    assert stream.completion is not None
    (call,) = stream.completion.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    assert stream.completion.choices[0].finish_reason == "tool_calls"


@pytest.mark.anyio
async def test_incomplete_partial_json_is_never_a_silent_success() -> None:
    """Text chunks are yielded, then the cut tool input raises at the end."""
    raw = terminated(load_recorded("anthropic/incomplete_partial_json_response.sse"))
    for chunks, stream, error in (
        read_sync(raw),
        await read_async(raw),
    ):
        assert isinstance(error, palyra.APIResponseValidationError)
        assert "make_file" in error.message
        assert "max_tokens" in error.message
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.startswith("I'll create a comprehensive tax guide")
        assert chunks[-1].choices[0].finish_reason == "length"
        assert stream.completion is None


def test_refusal_recording_is_content_filter() -> None:
    """``stop_reason: refusal`` finishes with ``content_filter``."""
    raw = terminated(load_recorded("anthropic/refusal_response.sse"))
    _, stream, error = read_sync(raw)
    assert error is None
    assert stream.completion is not None
    assert stream.completion.choices[0].finish_reason == "content_filter"
    assert stream.completion.choices[0].message.content is None


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("fallback_response.sse", id="fallback"),
        pytest.param("fallback_credit_response.sse", id="fallback_credit"),
        pytest.param("compaction_response.sse", id="compaction"),
    ],
)
def test_newer_blocks_and_fields_are_tolerated(name: str) -> None:
    """Unknown block types, deltas and usage fields do not break the stream."""
    raw = terminated(load_recorded(f"anthropic/{name}"))
    _, stream, error = read_sync(raw)
    assert error is None
    assert stream.completion is not None
    assert stream.completion.choices[0].message.content == "Hello there!"
    assert stream.completion.choices[0].finish_reason == "stop"
    assert stream.completion.choices[0].message.tool_calls is None


# -- interruptions and errors -----------------------------------------------------


def event(name: str, data: dict[str, Any]) -> bytes:
    """One named SSE event."""
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def split_events(raw: bytes) -> list[bytes]:
    """A terminated recording as its events."""
    return [part + b"\n\n" for part in raw.split(b"\n\n") if part]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda events: b"".join(events[:-1]), id="before_message_stop"),
        pytest.param(lambda events: b"".join(events[:-2]), id="before_message_delta"),
        pytest.param(
            lambda events: b"".join(events[:-4]) + events[-4][:40],
            id="mid_tool_delta",
        ),
    ],
)
async def test_stream_cut_before_message_stop(
    cut: Callable[[list[bytes]], bytes],
) -> None:
    """A body that ends before ``message_stop`` raises `StreamInterruptedError`."""
    events = split_events(terminated(load_recorded("anthropic/tool_use_response.sse")))
    assert b"message_stop" in events[-1]
    raw = cut(events)
    for chunks, stream, error in (read_sync(raw), await read_async(raw)):
        assert isinstance(error, palyra.StreamInterruptedError)
        assert "message_stop" in error.message
        assert error.request_id == "req_golden_1"
        assert chunks
        assert stream.completion is None


@pytest.mark.anyio
async def test_error_event_mid_stream_is_overloaded() -> None:
    """An ``error`` event (``overloaded_error``) raises `OverloadedError` mid-stream,
    after the chunks before it."""
    events = split_events(terminated(load_recorded("anthropic/basic_response.sse")))
    error_event = event(
        "error",
        {
            "type": "error",
            "error": {"details": None, "type": "overloaded_error", "message": "Busy"},
        },
    )
    raw = b"".join(events[:5]) + error_event + b"".join(events[5:])
    for chunks, stream, error in (read_sync(raw), await read_async(raw)):
        assert isinstance(error, palyra.OverloadedError)
        assert isinstance(error, palyra.InternalServerError)
        assert error.status_code == 529
        assert error.message == "Busy"
        assert error.type == "overloaded_error"
        assert error.provider == "ant"
        assert error.model == MODEL
        assert error.request_id == "req_golden_1"
        assert [step_of(c) for c in chunks] == [
            ("role", "assistant"),
            ("text", "Hello"),
            ("text", " there"),
        ]
        assert stream.completion is None


@pytest.mark.parametrize(
    ("error_type", "cls"),
    [
        pytest.param("api_error", palyra.InternalServerError, id="api_error"),
        pytest.param("rate_limit_error", palyra.RateLimitError, id="rate_limit"),
        pytest.param(
            "invalid_request_error", palyra.BadRequestError, id="invalid_request"
        ),
    ],
)
def test_other_error_events(error_type: str, cls: type[palyra.APIStatusError]) -> None:
    """Other ``error`` events map to their typed errors too."""
    events = split_events(terminated(load_recorded("anthropic/basic_response.sse")))
    error_event = event(
        "error", {"type": "error", "error": {"type": error_type, "message": "no"}}
    )
    raw = events[0] + error_event
    _, _, error = read_sync(raw)
    assert type(error) is cls


def test_ping_and_unknown_events_ignored() -> None:
    """``ping`` and event types palyra does not know yield nothing."""
    raw = terminated(load_recorded("anthropic/tool_use_response.sse"))
    noise = event("ping", {"type": "ping"}) + event(
        "brand_new_event", {"type": "brand_new_event", "payload": [1, 2]}
    )
    noisy = noise + noise.join(split_events(raw)) + noise
    plain_chunks, _, plain_error = read_sync(raw)
    noisy_chunks, noisy_stream, noisy_error = read_sync(noisy)
    assert plain_error is None
    assert noisy_error is None
    assert [c.model_dump(exclude={"created"}) for c in noisy_chunks] == [
        c.model_dump(exclude={"created"}) for c in plain_chunks
    ]
    assert noisy_stream.completion is not None


@pytest.mark.parametrize("with_usage", USAGE)
def test_usage_chunk_only_when_asked(with_usage: bool) -> None:
    """The usage-only chunk is yielded with ``include_usage``; `stream.usage` is
    always set."""
    raw = terminated(load_recorded("anthropic/basic_response.sse"))
    chunks, stream, error = read_sync(raw, **options_for(with_usage))
    assert error is None
    usage_chunks = [c for c in chunks if not c.choices]
    assert len(usage_chunks) == (1 if with_usage else 0)
    if with_usage:
        assert chunks[-1] is usage_chunks[0]
        assert usage_chunks[0].usage == stream.usage
    assert stream.usage is not None
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (11, 6)


def test_events_after_message_stop_are_ignored() -> None:
    """Nothing after ``message_stop`` changes the answer."""
    raw = terminated(load_recorded("anthropic/basic_response.sse"))
    extra = event(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "LATE"},
        },
    )
    chunks, stream, error = read_sync(raw + extra)
    assert error is None
    assert stream.completion is not None
    assert stream.completion.choices[0].message.content == "Hello there!"
    assert all(
        "LATE" not in (c.choices[0].delta.content or "") for c in chunks if c.choices
    )


# -- edge cases found in review ----------------------------------------------------

START_USAGE = {
    "input_tokens": 10,
    "cache_read_input_tokens": 100,
    "cache_creation_input_tokens": 50,
    "output_tokens": 1,
}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()


def _start(usage: dict[str, Any] | None = None) -> bytes:
    message = {
        "id": "msg_r",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "usage": usage or dict(START_USAGE),
    }
    return _event("message_start", {"message": message})


def _text(index: int, text: str) -> bytes:
    return (
        _event(
            "content_block_start",
            {"index": index, "content_block": {"type": "text", "text": ""}},
        )
        + _event(
            "content_block_delta",
            {"index": index, "delta": {"type": "text_delta", "text": text}},
        )
        + _event("content_block_stop", {"index": index})
    )


def _tool(index: int, call_id: str, name: str, pieces: list[str]) -> bytes:
    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    out = _event("content_block_start", {"index": index, "content_block": block})
    for piece in pieces:
        delta = {"type": "input_json_delta", "partial_json": piece}
        out += _event("content_block_delta", {"index": index, "delta": delta})
    return out + _event("content_block_stop", {"index": index})


def _end(stop_reason: str = "end_turn", usage: dict[str, Any] | None = None) -> bytes:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    return _event(
        "message_delta", {"delta": delta, "usage": usage or {"output_tokens": 7}}
    ) + _event("message_stop", {})


def _stream(
    body: bytes, **options: Any
) -> tuple[list[palyra.ChatCompletionChunk], Any, BaseException | None]:
    """Chunks, the stream and the error of a streamed call on ``body``."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=body,
            headers={"content-type": "text/event-stream", "request-id": "req_r"},
        )

    chunks: list[palyra.ChatCompletionChunk] = []
    client = palyra.Palyra(
        config(), transport=httpx.MockTransport(handler), credentials=lambda p: KEY
    )
    stream = None  # an error before the first chunk raises from client.stream
    with client:
        try:
            with client.stream(MESSAGES, MODEL, **options) as stream:
                for chunk in stream:
                    chunks.append(chunk)
        except Exception as exc:
            return chunks, stream, exc
    return chunks, stream, None


def test_null_usage_fields_in_message_delta_keep_input_tokens() -> None:
    usage = {
        "input_tokens": None,
        "cache_read_input_tokens": None,
        "cache_creation_input_tokens": None,
        "output_tokens": 7,
    }
    _, stream, error = _stream(_start() + _text(0, "Hi") + _end(usage=usage))
    assert error is None
    assert stream.usage is not None
    assert stream.usage.prompt_tokens == 160
    assert stream.usage.prompt_tokens_details.cached_tokens == 100


def test_usage_chunk_carries_created() -> None:
    chunks, _, error = _stream(
        _start() + _text(0, "Hi") + _end(), stream_options={"include_usage": True}
    )
    assert error is None
    assert chunks[-1].usage is not None
    assert {c.created for c in chunks} == {chunks[0].created} != {0}


def test_error_event_with_a_string_error_is_typed() -> None:
    _, _, error = _stream(_start() + _event("error", {"error": "upstream exploded"}))
    assert isinstance(error, palyra.APIError)


@pytest.mark.parametrize(
    ("error_type", "status"),
    [
        pytest.param("billing_error", 402, id="billing"),
        pytest.param("timeout_error", 504, id="timeout"),
    ],
)
def test_error_event_status_for_billing_and_timeout(
    error_type: str, status: int
) -> None:
    error_event = _event("error", {"error": {"type": error_type, "message": "no"}})
    _, _, error = _stream(_start() + error_event)
    assert isinstance(error, palyra.APIStatusError)
    assert error.status_code == status


def test_stream_with_several_tools_and_text_after_a_tool() -> None:
    """Two tool_use blocks (one without input) around text: one index per tool,
    ids and names kept, text joined, arguments complete."""
    body = (
        _start()
        + _text(0, "Checking. ")
        + _tool(1, "toolu_a", "get_weather", ['{"city"', ': "Paris"}'])
        + _text(2, "And one more.")
        + _tool(3, "toolu_b", "get_time", [])
        + _end("tool_use", {"output_tokens": 40})
    )
    chunks, stream, error = _stream(body)
    assert error is None
    firsts = [
        (c.choices[0].delta.tool_calls[0].index, c.choices[0].delta.tool_calls[0].id)
        for c in chunks
        if c.choices
        and c.choices[0].delta.tool_calls
        and c.choices[0].delta.tool_calls[0].id
    ]
    assert firsts == [(0, "toolu_a"), (1, "toolu_b")]
    message = stream.completion.choices[0].message
    assert message.content == "Checking. And one more."
    calls = [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls]
    assert calls == [
        ("toolu_a", "get_weather", '{"city": "Paris"}'),
        ("toolu_b", "get_time", "{}"),
    ]
    assert stream.completion.choices[0].finish_reason == "tool_calls"


def test_message_delta_with_cumulative_input_usage() -> None:
    """Newer streams repeat input and cache counts in message_delta; the totals
    are not double counted."""
    final = {
        "input_tokens": 10,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 50,
        "output_tokens": 20,
    }
    _, stream, error = _stream(_start() + _text(0, "Hi") + _end(usage=final))
    assert error is None
    usage = stream.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        160,
        20,
        180,
    )
    assert usage.prompt_tokens_details.cached_tokens == 100
