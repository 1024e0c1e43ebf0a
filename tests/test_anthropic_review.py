"""Review of the Anthropic provider (issue 3).

Regression tests for bugs found in review of the Anthropic provider.
The plain tests fill coverage gaps: secret safety of the Anthropic path under
DEBUG logging, multi-tool streams and cumulative ``message_delta`` usage.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.test_anthropic_e2e import MODEL as E2E_MODEL
from tests.test_anthropic_e2e import connect
from tests.test_anthropic_translation import (
    KEY,
    MODEL,
    TINY_PNG,
    WEATHER_TOOL,
    Recorder,
    client_for,
    config,
)
from tests.upstream import Upstream, anthropic_error_reply, anthropic_sse

USER = [{"role": "user", "content": "Hi"}]
START_USAGE = {
    "input_tokens": 10,
    "cache_read_input_tokens": 100,
    "cache_creation_input_tokens": 50,
    "output_tokens": 1,
}


# ----------------------------------------------------------------- helpers


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
            with client.stream(USER, MODEL, **options) as stream:
                for chunk in stream:
                    chunks.append(chunk)
        except Exception as exc:
            return chunks, stream, exc
    return chunks, stream, None


def _payload(messages: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    recorder = Recorder()
    with client_for(recorder) as client:
        client.chat(messages, MODEL, **options)
    return recorder.body


# ------------------------------------------------------- streaming: bugs


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


# -------------------------------------------------------- errors: bugs


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


# ------------------------------------------------------ requests: bugs


def test_oauth_beta_survives_another_beta_header() -> None:
    recorder = Recorder()
    with client_for(recorder, config({"auth_header": "bearer"})) as client:
        client.chat(
            USER,
            MODEL,
            extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
        )
    beta = recorder.requests[0].headers["anthropic-beta"]
    assert "oauth-2025-04-20" in [b.strip() for b in beta.split(",")]
    assert "interleaved-thinking-2025-05-14" in beta


def test_system_cache_control_is_kept() -> None:
    body = _payload(
        [
            {
                "role": "system",
                "content": [
                    {
                        "type": "text",
                        "text": "Long shared instructions.",
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
            {"role": "user", "content": "Hi"},
        ]
    )
    system = body["system"]
    assert isinstance(system, list)
    assert system[0]["cache_control"] == {"type": "ephemeral"}


def test_tool_results_come_first_in_a_merged_user_turn() -> None:
    call = {
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    body = _payload(
        [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "user", "content": "(metric units please)"},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        ],
        tools=[WEATHER_TOOL],
    )
    last = body["messages"][-1]["content"]
    kinds = [block["type"] for block in last]
    assert kinds[0] == "tool_result"


def test_thinking_budget_fits_in_the_default_max_tokens() -> None:
    thinking = {"type": "enabled", "budget_tokens": 10000}
    recorder = Recorder()
    with client_for(recorder) as client:
        try:
            client.chat(USER, MODEL, extra_body={"thinking": thinking})
        except (palyra.InvalidRequestError, palyra.UnsupportedCapabilityError):
            assert not recorder.requests  # refused before any HTTP call: fine
            return
    assert recorder.body["max_tokens"] > thinking["budget_tokens"]


def test_thinking_with_temperature_is_caught_before_http() -> None:
    recorder = Recorder()
    thinking = {"type": "enabled", "budget_tokens": 1024}
    with client_for(recorder) as client:
        try:
            client.chat(
                USER,
                MODEL,
                max_tokens=4096,
                temperature=0.2,
                extra_body={"thinking": thinking},
            )
        except (palyra.InvalidRequestError, palyra.UnsupportedCapabilityError):
            assert not recorder.requests
            return
    assert recorder.body.get("temperature", 1) == 1


def test_image_in_a_system_message_is_not_dropped() -> None:
    recorder = Recorder()
    image: dict[str, Any] = {
        "type": "image_url",
        "image_url": {"url": "https://img.test/a.png"},
    }
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": [{"type": "text", "text": "Style:"}, image]},
        {"role": "user", "content": "Hi"},
    ]
    with client_for(recorder) as client:
        try:
            client.chat(messages, MODEL)
        except (palyra.UnsupportedCapabilityError, palyra.InvalidRequestError):
            assert not recorder.requests
            return
    assert "img.test" in json.dumps(recorder.body)


def test_jpg_media_type_is_normalised() -> None:
    url = f"data:image/jpg;base64,{TINY_PNG}"
    body = _payload(
        [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": url}}],
            }
        ]
    )
    source = body["messages"][0]["content"][0]["source"]
    assert source["media_type"] == "image/jpeg"


def test_unknown_tool_choice_shape_is_a_typed_error() -> None:
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}
    recorder = Recorder()
    with client_for(recorder) as client, pytest.raises(palyra.PalyraError):
        client.chat(USER, MODEL, tools=[WEATHER_TOOL], tool_choice=choice)
    assert not recorder.requests


# ---------------------------------------------- coverage gaps (passing)


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
            client.chat(USER, E2E_MODEL)
            with client.stream(USER, E2E_MODEL) as stream:
                list(stream)
            upstream.enqueue(
                anthropic_error_reply(
                    401, "authentication_error", f"invalid x-api-key {FAKE_KEY}"
                )
            )
            with pytest.raises(palyra.AuthenticationError) as auth:
                client.chat(USER, E2E_MODEL)
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
                client.stream(USER, E2E_MODEL) as stream,
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


def test_foreign_tool_ids_are_made_safe_on_both_sides() -> None:
    """Ids from another provider are cleaned the same on tool_use and tool_result."""
    from tests.test_anthropic_translation import sent_body

    call = {
        "id": "functions.get_weather:0",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"},
    }
    body = sent_body(
        [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
        ]
    )
    use = body["messages"][1]["content"][0]
    result = body["messages"][2]["content"][0]
    assert use["id"] == result["tool_use_id"] == "functions_get_weather_0"


def test_refusal_parts_and_blank_text() -> None:
    """Refusal parts become text; whitespace-only text is not sent."""
    from tests.test_anthropic_translation import sent_body

    body = sent_body(
        [
            {"role": "user", "content": "Do the bad thing"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "  "},
                    {"type": "text", "text": "ok"},
                ],
            },
        ]
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "No."}],
    }
    assert body["messages"][2]["content"] == [{"type": "text", "text": "ok"}]


def test_base_url_ending_in_v1_is_not_doubled() -> None:
    """https://api.anthropic.com/v1 still calls /v1/messages once."""
    recorder = Recorder()
    cfg = config({"base_url": "https://api.anthropic.com/v1"})
    with client_for(recorder, cfg) as client:
        client.chat(USER, MODEL)
    assert recorder.requests[0].url == "https://api.anthropic.com/v1/messages"


def test_system_only_conversation_is_refused() -> None:
    """A request with nothing but system messages fails before HTTP."""
    recorder = Recorder()
    with (
        client_for(recorder) as client,
        pytest.raises(palyra.InvalidRequestError, match="non-system message"),
    ):
        client.chat([{"role": "system", "content": "Be brief."}], MODEL)
    assert recorder.requests == []
