"""The Anthropic adapter's answers, through `httpx.MockTransport`: a Messages API
answer (or error envelope) goes in, the whole OpenAI-shaped result (or typed
error) comes out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import palyra
from palyra._governance.usage import from_openai
from tests.conftest import FAKE_KEY
from tests.providers.anthropic_fixtures import (
    KEY,
    MODEL,
    UPSTREAM,
    USER,
    WEATHER_TOOL,
    Recorder,
    answer,
    client_for,
    config,
    message,
    text,
)

# -- golden responses -------------------------------------------------------------


def test_golden_response_with_cache_reads_and_writes() -> None:
    """A whole Messages answer becomes the whole OpenAI-shaped completion."""
    reply = message(
        [text("Hello"), text(", world")],
        usage={
            "input_tokens": 12,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 250,
            "output_tokens": 7,
            "service_tier": "standard",
        },
    )
    completion = answer(reply)
    got = completion.model_dump(mode="json", exclude={"palyra", "created"})
    assert got == {
        "id": "msg_01ABC",
        "object": "chat.completion",
        "model": UPSTREAM,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello, world",
                    "refusal": None,
                    "tool_calls": None,
                },
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 1262,
            "completion_tokens": 7,
            "total_tokens": 1269,
            "prompt_tokens_details": {
                "cached_tokens": 1000,
                "cache_write_tokens": 250,
                "cache_write_1h_tokens": None,
                "audio_tokens": None,
            },
            "completion_tokens_details": None,
        },
    }
    assert completion.created > 0
    assert completion.palyra is not None
    assert completion.palyra.provider == "ant"
    assert completion.palyra.upstream_model == UPSTREAM


def test_usage_without_cache_fields() -> None:
    """No cache fields: prompt tokens are the input tokens, cache counts are 0."""
    usage = answer(message(usage={"input_tokens": 5, "output_tokens": 2})).usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        5,
        2,
        7,
    )
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.prompt_tokens_details.cache_write_tokens == 0


def test_tool_use_to_tool_calls() -> None:
    """``tool_use`` blocks become tool calls with JSON-string arguments."""
    reply = message(
        [
            text("Let me check."),
            {
                "type": "tool_use",
                "id": "toolu_01A",
                "name": "get_weather",
                "input": {"city": "Zürich", "days": [1, 2]},
            },
            {"type": "tool_use", "id": "toolu_01B", "name": "now", "input": {}},
        ],
        stop_reason="tool_use",
    )
    choice = answer(reply, tools=[WEATHER_TOOL]).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    calls = choice.message.tool_calls
    assert calls is not None
    assert [(c.id, c.type, c.function.name) for c in calls] == [
        ("toolu_01A", "function", "get_weather"),
        ("toolu_01B", "function", "now"),
    ]
    assert all(isinstance(c.function.arguments, str) for c in calls)
    assert json.loads(calls[0].function.arguments) == {"city": "Zürich", "days": [1, 2]}
    assert json.loads(calls[1].function.arguments) == {}


def test_tool_use_only_has_no_content() -> None:
    """An answer of only a tool call has ``content`` None, as OpenAI's does."""
    reply = message(
        [{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}],
        stop_reason="tool_use",
    )
    assert answer(reply).choices[0].message.content is None


def test_thinking_blocks_kept_out_of_content() -> None:
    """Thinking blocks go to the message's extra fields, never into ``content``."""
    thinking = {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="}
    redacted = {"type": "redacted_thinking", "data": "opaque"}
    reply = message([thinking, redacted, text("42")])
    completion = answer(reply, extra_body={"thinking": {"type": "enabled"}})
    message_ = completion.choices[0].message
    assert message_.content == "42"
    assert message_.model_extra == {
        "thinking_blocks": [thinking, redacted],
        "reasoning_content": "Let me think.",
    }


def test_thinking_blocks_sent_back_with_the_tool_call() -> None:
    """An answer with thinking and a tool call, sent back as the assistant turn,
    keeps its thinking block (signature included) before the ``tool_use``."""
    thinking = {"type": "thinking", "thinking": "Need weather.", "signature": "sig=="}
    tool_use = {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    recorder = Recorder(message([thinking, tool_use], stop_reason="tool_use"))
    options: dict[str, Any] = {
        "tools": [WEATHER_TOOL],
        "extra_body": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
    }
    with client_for(recorder) as client:
        first = client.chat(USER, MODEL, **options)
        follow_up = [
            *USER,
            first.choices[0].message,
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        ]
        client.chat(follow_up, MODEL, **options)
    body = json.loads(recorder.requests[1].content)
    assert body["messages"][1] == {"role": "assistant", "content": [thinking, tool_use]}


def test_no_thinking_no_extra_fields() -> None:
    """A plain answer carries no thinking fields."""
    assert answer(message()).choices[0].message.model_extra == {}


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        pytest.param("end_turn", "stop", id="end_turn"),
        pytest.param("stop_sequence", "stop", id="stop_sequence"),
        pytest.param("max_tokens", "length", id="max_tokens"),
        pytest.param("tool_use", "tool_calls", id="tool_use"),
        pytest.param("refusal", "content_filter", id="refusal"),
        pytest.param(
            "model_context_window_exceeded", "length", id="context_window_exceeded"
        ),
        pytest.param("pause_turn", "pause_turn", id="pause_turn_passthrough"),
        pytest.param("brand_new_reason", "brand_new_reason", id="unknown_passthrough"),
    ],
)
def test_stop_reason_mapping(stop_reason: str, finish_reason: str) -> None:
    """Every stop reason maps to its OpenAI finish reason; unknown ones pass."""
    choice = answer(message(stop_reason=stop_reason)).choices[0]
    assert choice.finish_reason == finish_reason


def test_response_that_is_not_a_message() -> None:
    """A 2xx body without a ``content`` list is `APIResponseValidationError`."""
    recorder = Recorder({"type": "message", "id": "x"})
    with (
        client_for(recorder) as client,
        pytest.raises(palyra.APIResponseValidationError) as info,
    ):
        client.chat(USER, MODEL)
    assert info.value.provider == "ant"


# -- JSON mode answers ------------------------------------------------------------

JSON_ANSWERS = [
    ("valid", '{"a": 1}', '{"a": 1}'),
    ("valid_with_whitespace", '  {"a": 1}\n', '{"a": 1}'),
    ("fenced", '```json\n{"a": 1}\n```', '{"a": 1}'),
    ("fenced_without_language", "```\n[1, 2]\n```", "[1, 2]"),
    ("prose", "Sure! Here it is: {", None),
]


def _json_mode_chat(reply_text: str) -> palyra.ChatCompletion:
    with client_for(Recorder(message([text(reply_text)]))) as client:
        return client.chat(USER, MODEL, response_format={"type": "json_object"})


def _json_mode_stream(reply_text: str) -> palyra.ChatCompletion:
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {**message([]), "stop_reason": None},
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": text("")},
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": reply_text},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 4},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    raw = "".join(f"event: {n}\ndata: {json.dumps(d)}\n\n" for n, d in events)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=raw.encode()
        )

    with (
        palyra.Palyra(
            config(),
            transport=httpx.MockTransport(handler),
            credentials=lambda provider: KEY,
        ) as client,
        client.stream(USER, MODEL, response_format={"type": "json_object"}) as stream,
    ):
        list(stream)
    assert stream.completion is not None
    return stream.completion


def _json_cases() -> list[Any]:
    """Every answer through both calls."""
    return [
        pytest.param(call, reply_text, content, id=f"{call_name}-{name}")
        for call_name, call in (
            ("chat", _json_mode_chat),
            ("stream", _json_mode_stream),
        )
        for name, reply_text, content in JSON_ANSWERS
    ]


@pytest.mark.parametrize(("call", "reply_text", "content"), _json_cases())
def test_json_mode_answer_checked(
    call: Callable[[str], palyra.ChatCompletion], reply_text: str, content: str | None
) -> None:
    """JSON mode answers are JSON (a fence is removed); prose is an error."""
    if content is None:
        with pytest.raises(palyra.APIResponseValidationError, match="not valid JSON"):
            call(reply_text)
    else:
        assert call(reply_text).choices[0].message.content == content


# -- error envelopes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "cls"),
    [
        pytest.param(400, "invalid_request_error", palyra.BadRequestError, id="400"),
        pytest.param(401, "authentication_error", palyra.AuthenticationError, id="401"),
        pytest.param(403, "permission_error", palyra.PermissionDeniedError, id="403"),
        pytest.param(404, "not_found_error", palyra.NotFoundError, id="404"),
        pytest.param(413, "request_too_large", palyra.RequestTooLargeError, id="413"),
        pytest.param(429, "rate_limit_error", palyra.RateLimitError, id="429"),
        pytest.param(500, "api_error", palyra.InternalServerError, id="500"),
        pytest.param(529, "overloaded_error", palyra.OverloadedError, id="529"),
    ],
)
@pytest.mark.parametrize("op", [pytest.param("chat"), pytest.param("stream")])
def test_error_envelope(
    status: int, error_type: str, cls: type[palyra.APIStatusError], op: str
) -> None:
    """``{"type":"error","error":{...}}`` maps to the typed error with its context."""
    envelope = {
        "type": "error",
        "error": {"type": error_type, "message": f"{error_type} happened"},
    }
    recorder = Recorder(envelope, status=status, headers={"request-id": "req_01XYZ"})
    with client_for(recorder) as client:
        call = client.chat if op == "chat" else client.stream
        with pytest.raises(palyra.APIStatusError) as info:
            call(USER, MODEL)
    error = info.value
    assert type(error) is cls
    assert error.status_code == status
    assert error.message == f"{error_type} happened"
    assert error.type == error_type
    assert error.provider == "ant"
    assert error.model == MODEL
    assert error.request_id == "req_01XYZ"
    assert error.body == envelope
    assert KEY not in str(error)
    assert len(recorder.requests) == 1


def test_overloaded_is_a_retryable_server_error() -> None:
    """`OverloadedError` is an `InternalServerError` (5xx), so 5xx handling applies."""
    assert issubclass(palyra.OverloadedError, palyra.InternalServerError)
    recorder = Recorder(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Busy"}},
        status=529,
    )
    with (
        client_for(recorder) as client,
        pytest.raises(palyra.InternalServerError) as info,
    ):
        client.chat(USER, MODEL)
    assert isinstance(info.value, palyra.OverloadedError)
    assert str(info.value).startswith("HTTP 529: Busy")


def test_streamed_thinking_keeps_signed_blocks() -> None:
    """A streamed answer keeps its thinking blocks (with signature) for the
    next turn, and the reasoning stays out of content."""
    events = [
        ("message_start", {"message": {"id": "m", "model": "c", "usage": {}}}),
        ("content_block_start", {"index": 0, "content_block": {"type": "thinking"}}),
        (
            "content_block_delta",
            {"index": 0, "delta": {"type": "thinking_delta", "thinking": "Hm."}},
        ),
        (
            "content_block_delta",
            {"index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        ),
        ("content_block_stop", {"index": 0}),
        ("content_block_start", {"index": 1, "content_block": {"type": "text"}}),
        (
            "content_block_delta",
            {"index": 1, "delta": {"type": "text_delta", "text": "Done."}},
        ),
        ("content_block_stop", {"index": 1}),
        ("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {}}),
        ("message_stop", {}),
    ]
    body = "".join(
        f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"
        for name, data in events
    ).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=body
        )

    config = {
        "providers": [{"id": "an", "kind": "anthropic", "api_key_env": "K"}],
        "models": [{"id": "claude", "provider": "an"}],
    }
    with (
        palyra.Palyra(
            config,
            transport=httpx.MockTransport(handler),
            credentials=lambda provider: "sk-ant-x",
        ) as client,
        client.stream([{"role": "user", "content": "think"}]) as stream,
    ):
        list(stream)
    assert stream.completion is not None
    message = stream.completion.choices[0].message
    assert message.content == "Done."
    assert message.model_extra is not None
    assert message.model_extra["reasoning_content"] == "Hm."
    assert message.model_extra["thinking_blocks"] == [
        {"type": "thinking", "thinking": "Hm.", "signature": "sig"}
    ]
    assert stream.completion.created > 0


@pytest.mark.parametrize("status", [500, 503])
def test_overloaded_error_envelope_at_other_status(status: int) -> None:
    reply = {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}
    recorder = Recorder(reply, status=status)
    with client_for(recorder) as client, pytest.raises(palyra.APIStatusError) as info:
        client.chat(USER, MODEL)
    assert isinstance(info.value, palyra.OverloadedError)


def test_non_json_2xx_body_leaves_no_key_in_the_exception_chain() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=f"oops key={FAKE_KEY}".encode())

    client = palyra.Palyra(
        config(), transport=httpx.MockTransport(handler), credentials=lambda p: FAKE_KEY
    )
    with client, pytest.raises(palyra.APIResponseValidationError) as info:
        client.chat(USER, MODEL)
    seen: BaseException | None = info.value
    while seen is not None:
        assert FAKE_KEY not in repr(seen)
        assert FAKE_KEY not in repr(getattr(seen, "__dict__", {}))
        assert FAKE_KEY not in str(getattr(seen, "doc", ""))
        seen = seen.__cause__ or seen.__context__


def test_1h_cache_writes_are_carried_and_split() -> None:
    """Anthropic's ``cache_creation`` split survives the adapter, so governance
    prices the 1 hour writes at their own rate."""
    split = {"ephemeral_5m_input_tokens": 50, "ephemeral_1h_input_tokens": 200}
    usage = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 250,
        "cache_creation": split,
        "output_tokens": 7,
    }
    completion = answer(message(usage=usage))
    assert completion.usage is not None
    details = completion.usage.prompt_tokens_details
    assert details is not None
    assert (details.cache_write_tokens, details.cache_write_1h_tokens) == (250, 200)
    normalized = from_openai(completion.usage)
    assert (normalized.cache_write_5m, normalized.cache_write_1h) == (50, 200)
    # A split that does not add up is dropped, not raised on.
    odd = {**usage, "cache_creation": {**split, "ephemeral_1h_input_tokens": 9}}
    completion = answer(message(usage=odd))
    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cache_write_1h_tokens is None
    assert completion.usage.prompt_tokens_details.cache_write_tokens == 250
