"""palyra.testing.AnthropicMock refuses with a 400 what the real Messages API
refuses, so a test catches it before production does."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import palyra
from palyra.testing import AnthropicMock
from tests.testing_fixtures import HELLO, VERSION, WEATHER, body, connect, wire

USE = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}


def turn(role: str, *blocks: dict[str, Any]) -> dict[str, Any]:
    """A message of content blocks."""
    return {"role": role, "content": list(blocks)}


TEXT = {"type": "text", "text": "hi"}
REFUSED = [
    pytest.param({"model": None}, "model: Field required", id="no-model"),
    pytest.param({"max_tokens": None}, "max_tokens: Field required", id="no-max"),
    pytest.param({"max_tokens": 0}, "max_tokens: Input should be", id="max-0"),
    pytest.param({"max_tokens": "9"}, "max_tokens: Input should be", id="max-str"),
    pytest.param({"temperature": 1.5}, "temperature: Input should be", id="temp"),
    pytest.param({"top_p": -0.1}, "top_p: Input should be between", id="top-p"),
    pytest.param({"stream": "yes"}, "stream: Input should be", id="stream"),
    pytest.param({"stop_sequences": "END"}, "stop_sequences:", id="stops"),
    pytest.param({"system": {"text": "x"}}, "system: Input should be", id="system"),
    pytest.param({"tools": [{"name": "f"}]}, "tools.0.input_schema", id="schema"),
    pytest.param({"tools": [{}]}, "tools.0.name: Field required", id="tool-name"),
    pytest.param({"messages": None}, "messages: Field required", id="no-messages"),
    pytest.param({"messages": []}, "messages: at least one message", id="empty"),
    pytest.param(
        {"messages": [{"role": "system", "content": "x"}]},
        "messages.0.role: Input should be 'user' or 'assistant'",
        id="system-role",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": ""}]},
        "messages.0: all messages must have non-empty content",
        id="empty-content",
    ),
    pytest.param(
        {"messages": [turn("user", {"type": "text", "text": " "})]},
        "messages.0: text content blocks must be non-empty",
        id="empty-text",
    ),
    pytest.param(
        {"messages": [turn("user", {"text": "no type"})]},
        "messages.0.content: each block needs a 'type'",
        id="untyped",
    ),
    pytest.param(
        {"messages": [turn("user", TEXT), turn("assistant", USE), turn("user", TEXT)]},
        "messages.1: `tool_use` ids were found without `tool_result` blocks"
        " immediately after: toolu_1",
        id="no-result",
    ),
    pytest.param(
        {"messages": [turn("user", TEXT), turn("assistant", USE)]},
        "messages.1: `tool_use` ids were found without",
        id="use-last",
    ),
    pytest.param(
        {"messages": [turn("user", RESULT)]},
        "messages.0.content: unexpected `tool_use_id` found in `tool_result`"
        " blocks: toolu_1",
        id="stray-result",
    ),
]


@pytest.mark.parametrize(("change", "message"), REFUSED)
def test_what_the_api_refuses_is_a_400(change: dict[str, Any], message: str) -> None:
    """Each refused body gets invalid_request_error saying what is wrong."""
    mock = AnthropicMock()
    payload = {k: v for k, v in body(**change).items() if v is not None}
    response = wire(mock, payload)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(message)


def test_a_well_formed_tool_loop_passes() -> None:
    """Text, a tool_result answering its tool_use and an empty final assistant
    turn (a prefill) pass."""
    mock = AnthropicMock()
    messages = [
        turn("user", TEXT),
        turn("assistant", {"type": "text", "text": "calling"}, USE),
        turn("user", RESULT, TEXT),
        {"role": "assistant", "content": ""},
    ]
    response = wire(mock, body(messages=messages, temperature=1, top_p=0.5))
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "hi"}]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param({}, "anthropic-version: header is required", id="missing"),
        pytest.param(
            {"anthropic-version": "2024-13-01"},
            "anthropic-version: '2024-13-01' is not a valid version",
            id="unknown",
        ),
    ],
)
def test_the_version_header_is_required(headers: dict[str, str], message: str) -> None:
    """Without a valid anthropic-version, every endpoint answers 400."""
    mock = AnthropicMock()
    with httpx.Client(transport=mock.transport) as http:
        for response in (
            http.post("https://a.test/v1/messages", json=body(), headers=headers),
            http.get("https://a.test/v1/models", headers=headers),
        ):
            assert response.status_code == 400
            assert response.json()["error"] == {
                "type": "invalid_request_error",
                "message": message,
            }


def test_bodies_that_are_not_json_objects_and_unknown_paths() -> None:
    """Not JSON, not an object: 400; another path or method: 404."""
    mock = AnthropicMock()
    with httpx.Client(transport=mock.transport, headers=VERSION) as http:
        assert http.post("https://a.test/v1/messages", content=b"{").status_code == 400
        assert http.post("https://a.test/v1/messages", json=[1]).status_code == 400
        for response in (
            http.post("https://a.test/v1/complete", json=body()),
            http.get("https://a.test/v1/messages"),
        ):
            assert response.status_code == 404
            assert response.json()["error"]["type"] == "not_found_error"
    assert mock.history == []


def test_a_refused_request_is_recorded_and_takes_no_reply() -> None:
    """The history shows the refused body; the scripted reply waits for the next."""
    mock = AnthropicMock()
    mock.enqueue("kept")
    assert wire(mock, body(max_tokens=0)).status_code == 400
    assert wire(mock, body()).json()["content"][0]["text"] == "kept"
    assert [sent["max_tokens"] for sent in mock.history] == [0, 64]


def test_what_palyra_sends_passes_and_caller_mistakes_fail() -> None:
    """Through the client: palyra's own bodies pass the checks, a temperature
    above Anthropic's 1 and a tool call left without its result do not."""
    mock = AnthropicMock()
    with connect(mock) as client:
        assert client.chat(HELLO, temperature=1, tools=[WEATHER]).choices
        with pytest.raises(palyra.BadRequestError, match="temperature: Input should"):
            client.chat(HELLO, temperature=1.5)
        dangling = [
            *HELLO,
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "user", "content": "and?"},
        ]
        with pytest.raises(palyra.BadRequestError, match="without `tool_result`"):
            client.chat(dangling, tools=[WEATHER])
    assert len(mock.history) == 3
