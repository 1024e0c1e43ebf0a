"""The Anthropic adapter's requests, through `httpx.MockTransport`: the whole
JSON body palyra sends is compared with the body the Messages API expects, and
what the API cannot take is refused before any HTTP call."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import palyra
from palyra._providers.anthropic_messages import DEFAULT_MAX_TOKENS, JSON_INSTRUCTION
from tests.providers.anthropic_fixtures import (
    BASE,
    KEY,
    MODEL,
    TINY_PNG,
    USER,
    WEATHER_SCHEMA,
    WEATHER_TOOL,
    Recorder,
    client_for,
    config,
    expect,
    message,
    sent_body,
    text,
)

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


# -- edge cases found in review ------------------------------------------------------


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
    body = sent_body(
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
    body = sent_body(
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
    body = sent_body(
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


def test_foreign_tool_ids_are_made_safe_on_both_sides() -> None:
    """Ids from another provider are cleaned the same on tool_use and tool_result."""

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
