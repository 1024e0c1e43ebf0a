"""Unit tests of the Anthropic Messages translation, through `httpx.MockTransport`.

Requests are golden: the whole JSON body palyra sends is compared with the body
the Messages API expects. Responses are golden too: a Messages API answer (or
error envelope) goes in, the whole OpenAI-shaped result (or typed error) comes out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import palyra
from palyra._providers.anthropic import DEFAULT_MAX_TOKENS, JSON_INSTRUCTION

KEY = "sk-ant-test-KEY"
BASE = "https://anthropic.test"
MODEL = "claude"
UPSTREAM = "claude-sonnet-4-5"
USER = [{"role": "user", "content": "Hi"}]
USER_TURN = {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_SCHEMA = WEATHER_TOOL["function"]["parameters"]  # type: ignore[index]
TINY_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAfbLI3wAAAABJ"
    "RU5ErkJggg=="
)


def config(provider: dict[str, Any] | None = None, **model: Any) -> dict[str, Any]:
    """One Anthropic provider with one chat model (upstream name differs)."""
    return {
        "providers": [
            {
                "id": "ant",
                "kind": "anthropic",
                "base_url": BASE,
                "timeout": 2,
                "max_retries": 0,
                **(provider or {}),
            }
        ],
        "models": [
            {
                "id": MODEL,
                "provider": "ant",
                "upstream_model": UPSTREAM,
                "context_window": 200000,
                **model,
            }
        ],
    }


def message(
    content: list[dict[str, Any]] | None = None,
    stop_reason: str | None = "end_turn",
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Messages API ``message`` object."""
    return {
        "id": "msg_01ABC",
        "type": "message",
        "role": "assistant",
        "model": UPSTREAM,
        "content": [{"type": "text", "text": "Hello!"}] if content is None else content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 10, "output_tokens": 3},
    }


class Recorder:
    """A mock Messages API: records each request, answers with one fixed reply."""

    def __init__(
        self,
        reply: dict[str, Any] | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.reply = message() if reply is None else reply
        self.status = status
        self.headers = headers or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Record and answer."""
        self.requests.append(request)
        return httpx.Response(self.status, json=self.reply, headers=self.headers)

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body of the only request."""
        assert len(self.requests) == 1
        return json.loads(self.requests[0].content)  # type: ignore[no-any-return]


def client_for(recorder: Recorder, cfg: dict[str, Any] | None = None) -> palyra.Palyra:
    """A client whose only upstream is ``recorder``."""
    return palyra.Palyra(
        cfg or config(),
        transport=httpx.MockTransport(recorder),
        credentials=lambda provider: KEY,
    )


def sent_body(
    messages: list[dict[str, Any]], cfg: dict[str, Any] | None = None, **options: Any
) -> dict[str, Any]:
    """The Messages API body a chat call sends."""
    recorder = Recorder()
    with client_for(recorder, cfg) as client:
        client.chat(messages, MODEL, **options)
    return recorder.body


def answer(reply: dict[str, Any], **options: Any) -> palyra.ChatCompletion:
    """The `ChatCompletion` palyra makes of a Messages API answer."""
    with client_for(Recorder(reply)) as client:
        return client.chat(USER, MODEL, **options)


def expect(turns: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """A whole expected body: the defaults plus ``fields``."""
    return {
        "model": UPSTREAM,
        "max_tokens": 4096,
        "messages": [USER_TURN] if turns is None else turns,
        **fields,
    }


def text(value: str) -> dict[str, Any]:
    """A text block."""
    return {"type": "text", "text": value}


# -- golden request payloads ------------------------------------------------------


def test_default_max_tokens_is_the_documented_4096() -> None:
    """The documented default output budget is 4096 (never a silent 2048)."""
    assert DEFAULT_MAX_TOKENS == 4096
    assert sent_body(USER) == expect()


CONVERSATIONS = [
    pytest.param(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use SI."}]},
            {"role": "user", "content": "Hi"},
        ],
        expect(system="Be brief.\n\nUse SI."),
        id="system_and_developer_to_top_level_system",
    ),
    pytest.param(
        [
            {"role": "user", "content": "Hi"},
            {"role": "system", "content": "Late rule."},
            {"role": "user", "content": [{"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Hello"},
            {"role": "assistant", "content": "again"},
            {"role": "user", "content": "Bye"},
        ],
        expect(
            [
                {"role": "user", "content": [text("Hi"), text("there")]},
                {"role": "assistant", "content": [text("Hello"), text("again")]},
                {"role": "user", "content": [text("Bye")]},
            ],
            system="Late rule.",
        ),
        id="consecutive_same_role_merged",
    ),
    pytest.param(
        [
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city": "Paris"}',
                        },
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city": "Oslo"}',
                        },
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C, sunny"},
            {
                "role": "tool",
                "tool_call_id": "toolu_2",
                "content": "service down",
                "is_error": True,
            },
            {"role": "user", "content": "Thanks"},
        ],
        expect(
            [
                {"role": "user", "content": [text("Weather in Paris and Oslo?")]},
                {
                    "role": "assistant",
                    "content": [
                        text("Checking."),
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                        {
                            "type": "tool_use",
                            "id": "toolu_2",
                            "name": "get_weather",
                            "input": {"city": "Oslo"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": "18C, sunny",
                        },
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "content": "service down",
                            "is_error": True,
                        },
                        text("Thanks"),
                    ],
                },
            ]
        ),
        id="tool_calls_and_tool_results",
    ),
    pytest.param(
        [
            {"role": "user", "content": "Time?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_9",
                        "type": "function",
                        "function": {"name": "now", "arguments": "{}"},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "toolu_9",
                "content": [{"type": "text", "text": "12:00"}],
            },
        ],
        expect(
            [
                {"role": "user", "content": [text("Time?")]},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "toolu_9",
                            "name": "now",
                            "input": {},
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_9",
                            "content": [text("12:00")],
                        }
                    ],
                },
            ]
        ),
        id="tool_call_without_text_and_list_result",
    ),
    pytest.param(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{TINY_PNG}"},
                    },
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.jpg"},
                    },
                ],
            }
        ],
        expect(
            [
                {
                    "role": "user",
                    "content": [
                        text("Compare"),
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": TINY_PNG,
                            },
                        },
                        {
                            "type": "image",
                            "source": {
                                "type": "url",
                                "url": "https://example.com/cat.jpg",
                            },
                        },
                    ],
                }
            ]
        ),
        id="images_base64_and_url",
    ),
]


@pytest.mark.parametrize(("messages", "expected"), CONVERSATIONS)
def test_conversation_payload(
    messages: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    """OpenAI-shaped conversations become the exact Messages API body."""
    assert sent_body(messages) == expected


TOOL_OUT = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "input_schema": WEATHER_SCHEMA,
}
OPTIONS = [
    pytest.param({"tools": [WEATHER_TOOL]}, {"tools": [TOOL_OUT]}, id="tools"),
    pytest.param(
        {
            "tools": [
                {"type": "function", "function": {"name": "now"}},
            ]
        },
        {
            "tools": [
                {"name": "now", "input_schema": {"type": "object", "properties": {}}}
            ]
        },
        id="tool_without_description_or_parameters",
    ),
    pytest.param(
        {"tools": [WEATHER_TOOL], "tool_choice": "auto"},
        {"tools": [TOOL_OUT], "tool_choice": {"type": "auto"}},
        id="tool_choice_auto",
    ),
    pytest.param(
        {"tools": [WEATHER_TOOL], "tool_choice": "required"},
        {"tools": [TOOL_OUT], "tool_choice": {"type": "any"}},
        id="tool_choice_required",
    ),
    pytest.param(
        {"tools": [WEATHER_TOOL], "tool_choice": "none"},
        {"tools": [TOOL_OUT], "tool_choice": {"type": "none"}},
        id="tool_choice_none",
    ),
    pytest.param(
        {
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        },
        {"tools": [TOOL_OUT], "tool_choice": {"type": "tool", "name": "get_weather"}},
        id="tool_choice_named",
    ),
    pytest.param(
        {"tools": [WEATHER_TOOL], "parallel_tool_calls": False},
        {
            "tools": [TOOL_OUT],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        },
        id="parallel_false",
    ),
    pytest.param(
        {
            "tools": [WEATHER_TOOL],
            "tool_choice": "required",
            "parallel_tool_calls": False,
        },
        {
            "tools": [TOOL_OUT],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        },
        id="required_and_parallel_false",
    ),
    pytest.param(
        {
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": False,
        },
        {
            "tools": [TOOL_OUT],
            "tool_choice": {
                "type": "tool",
                "name": "get_weather",
                "disable_parallel_tool_use": True,
            },
        },
        id="named_and_parallel_false",
    ),
    pytest.param({"stop": "END"}, {"stop_sequences": ["END"]}, id="stop_string"),
    pytest.param(
        {"stop": ["END", "\n\n"]}, {"stop_sequences": ["END", "\n\n"]}, id="stop_list"
    ),
    pytest.param(
        {"temperature": 0, "top_p": 0.9},
        {"temperature": 0, "top_p": 0.9},
        id="temperature_top_p",
    ),
    pytest.param(
        {"extra_body": {"top_k": 5}},
        {"top_k": 5},
        id="top_k_via_extra_body",
    ),
    pytest.param(
        # (the API takes no top_k with thinking: palyra refuses that mix)
        {"extra_body": {"thinking": {"type": "enabled", "budget_tokens": 2048}}},
        {"thinking": {"type": "enabled", "budget_tokens": 2048}},
        id="thinking_via_extra_body",
    ),
    pytest.param({"max_tokens": 256}, {"max_tokens": 256}, id="max_tokens"),
    pytest.param(
        {"max_completion_tokens": 300}, {"max_tokens": 300}, id="max_completion_tokens"
    ),
    pytest.param(
        {"user": "agent-7/session-3"},
        {"metadata": {"user_id": "agent-7/session-3"}},
        id="user_to_metadata",
    ),
    pytest.param(
        {"safety_identifier": "hashed-user"},
        {"metadata": {"user_id": "hashed-user"}},
        id="safety_identifier_to_metadata",
    ),
    pytest.param(
        {"metadata": {"user_id": "u-1", "team": "x"}, "user": "ignored"},
        {"metadata": {"user_id": "u-1"}},
        id="metadata_user_id_wins",
    ),
    pytest.param(
        {
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.5,
            "logit_bias": {"50256": -100},
            "store": True,
            "service_tier": "auto",
            "reasoning_effort": "low",
            "prompt_cache_key": "k",
            "verbosity": "low",
            "top_logprobs": 0,
            "n": 1,
            "logprobs": False,
        },
        {},
        id="dropped_options_not_sent",
    ),
]


@pytest.mark.parametrize(("options", "fields"), OPTIONS)
def test_option_payload(options: dict[str, Any], fields: dict[str, Any]) -> None:
    """Each OpenAI option becomes exactly its Messages API counterpart, or nothing."""
    assert sent_body(USER, **options) == expect(**fields)


def test_tool_choice_without_tools_is_not_sent() -> None:
    """A tool choice with no tools would be rejected upstream, so it is left out."""
    assert sent_body(USER, tool_choice="none") == expect()


@pytest.mark.parametrize(
    ("model", "options", "max_tokens"),
    [
        pytest.param({}, {}, 4096, id="documented_default"),
        pytest.param({"max_output_tokens": 8192}, {}, 8192, id="model_entry"),
        pytest.param(
            {"max_output_tokens": 8192}, {"max_tokens": 100}, 100, id="request_wins"
        ),
    ],
)
def test_max_tokens_source(
    model: dict[str, Any], options: dict[str, Any], max_tokens: int
) -> None:
    """``max_tokens``: the request, else the model entry, else 4096."""
    assert sent_body(USER, config(**model), **options) == expect(max_tokens=max_tokens)


@pytest.mark.parametrize(
    ("response_format", "instruction"),
    [
        pytest.param({"type": "json_object"}, JSON_INSTRUCTION, id="json_object"),
        pytest.param(
            {
                "type": "json_schema",
                "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA},
            },
            f"{JSON_INSTRUCTION} It must match this JSON schema:"
            f" {json.dumps(WEATHER_SCHEMA)}",
            id="json_schema",
        ),
    ],
)
def test_json_mode_instruction_in_system(
    response_format: dict[str, Any], instruction: str
) -> None:
    """JSON mode is asked for in ``system``, after the caller's own system text."""
    recorder = Recorder(message([text('{"ok": true}')]))
    messages = [{"role": "system", "content": "Be brief."}, *USER]
    with client_for(recorder) as client:
        client.chat(messages, MODEL, response_format=response_format)
    assert "JSON" in JSON_INSTRUCTION
    assert recorder.body == expect(system=f"Be brief.\n\n{instruction}")
    assert "response_format" not in recorder.body


def test_headers_and_url() -> None:
    """``x-api-key`` and ``anthropic-version`` on ``{base}/v1/messages``."""
    recorder = Recorder()
    with client_for(recorder) as client:
        client.chat(USER, MODEL)
    request = recorder.requests[0]
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/v1/messages"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert "anthropic-beta" not in request.headers


def test_bearer_auth_headers() -> None:
    """``auth_header = "bearer"``: Authorization Bearer with the OAuth beta header."""
    recorder = Recorder()
    with client_for(recorder, config({"auth_header": "bearer"})) as client:
        client.chat(USER, MODEL)
    request = recorder.requests[0]
    assert str(request.url) == f"{BASE}/v1/messages"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["anthropic-beta"] == "oauth-2025-04-20"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "x-api-key" not in request.headers


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key can come from ``api_key_env``, as for any provider."""
    monkeypatch.setenv("MY_ANT_KEY", KEY)
    recorder = Recorder()
    cfg = config({"api_key_env": "MY_ANT_KEY"})
    with palyra.Palyra(cfg, transport=httpx.MockTransport(recorder)) as client:
        client.chat(USER, MODEL)
    assert recorder.requests[0].headers["x-api-key"] == KEY


def test_default_base_url() -> None:
    """Without ``base_url`` calls go to ``https://api.anthropic.com/v1/messages``."""
    recorder = Recorder()
    cfg = config()
    del cfg["providers"][0]["base_url"]
    with client_for(recorder, cfg) as client:
        client.chat(USER, MODEL)
    assert str(recorder.requests[0].url) == "https://api.anthropic.com/v1/messages"


# -- refused before any HTTP call -------------------------------------------------


AUDIO_PART = {
    "type": "input_audio",
    "input_audio": {"data": "UklGRg==", "format": "wav"},
}


@pytest.mark.parametrize(
    ("messages", "options", "capability"),
    [
        pytest.param(USER, {"n": 2}, "n > 1", id="n_2"),
        pytest.param(USER, {"logprobs": True}, "logprobs", id="logprobs"),
        pytest.param(
            [{"role": "user", "content": [AUDIO_PART]}], {}, "audio", id="audio_input"
        ),
    ],
)
def test_unsupported_before_http(
    messages: list[dict[str, Any]], options: dict[str, Any], capability: str
) -> None:
    """What Anthropic cannot do raises `UnsupportedCapabilityError`, sending nothing."""
    recorder = Recorder()
    with client_for(recorder) as client:
        with pytest.raises(palyra.UnsupportedCapabilityError) as info:
            client.chat(messages, MODEL, **options)
        with pytest.raises(palyra.UnsupportedCapabilityError):
            client.stream(messages, MODEL, **options)
    assert info.value.capability == capability
    assert info.value.provider == "ant"
    assert info.value.model == MODEL
    assert recorder.requests == []


@pytest.mark.parametrize(
    "part",
    [
        pytest.param(AUDIO_PART, id="input_audio"),
        pytest.param({"type": "file", "file": {"file_id": "file-abc"}}, id="file"),
    ],
)
def test_parts_without_a_messages_block_are_refused(part: dict[str, Any]) -> None:
    """Audio and file parts are never silently dropped, even when the model entry
    claims audio: the call is refused before HTTP."""
    recorder = Recorder()
    cfg = config(capabilities={"audio": True})
    messages = [{"role": "user", "content": [text("Listen"), part]}]
    with client_for(recorder, cfg) as client:
        with pytest.raises(palyra.UnsupportedCapabilityError) as info:
            client.chat(messages, MODEL)
        with pytest.raises(palyra.UnsupportedCapabilityError):
            client.stream(messages, MODEL)
    assert info.value.capability == part["type"]
    assert (info.value.provider, info.value.model) == ("ant", MODEL)
    assert recorder.requests == []


def test_embeddings_model_on_anthropic_is_a_config_error() -> None:
    """An embeddings model on an anthropic provider is refused in the config."""
    cfg = config()
    cfg["models"].append({"id": "emb", "provider": "ant", "role": "embeddings"})
    with pytest.raises(palyra.ConfigError, match="serve no embeddings") as info:
        palyra.Palyra(cfg)
    assert info.value.errors[0][0] == "models[1].role"


def test_embed_with_an_anthropic_chat_model_sends_nothing() -> None:
    """Embedding with an anthropic chat model raises before any HTTP call."""
    recorder = Recorder()
    with (
        client_for(recorder) as client,
        pytest.raises(palyra.UnsupportedCapabilityError),
    ):
        client.embed("hello", MODEL)
    assert recorder.requests == []


@pytest.mark.anyio
async def test_transcribe_on_anthropic_audio_model_sends_nothing() -> None:
    """Transcription on an anthropic provider raises before any HTTP call."""
    recorder = Recorder()
    cfg = config()
    cfg["models"].append(
        {"id": "ears", "provider": "ant", "role": "audio_transcription"}
    )
    async with client_for(recorder, cfg) as client:
        with pytest.raises(palyra.UnsupportedCapabilityError) as info:
            client.transcribe(("clip.wav", b"RIFF0000"), "ears")
        with pytest.raises(palyra.UnsupportedCapabilityError):
            await client.atranscribe(("clip.wav", b"RIFF0000"), "ears")
    assert info.value.capability == "audio_transcription"
    assert info.value.provider == "ant"
    assert recorder.requests == []


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
