"""``/v1/messages`` (issue 13): the official ``anthropic`` SDK against uvicorn
on 127.0.0.1 with only ``base_url`` changed: messages, system prompts,
streams read with the SDK's helper and its final-message accumulator, tool
round trips, images, token counts, usage with cache fields, and errors in
Anthropic's envelope mapped to the SDK's exceptions; an OpenAI-backed model
reached through the Anthropic shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

import palyra
from palyra.asgi import create_app
from tests.asgi.server import serving

HELLO = [{"role": "user", "content": "Hello there"}]
PIXEL = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQ"
    "DwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture(name="served", scope="module")
def served_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    ledger = palyra.MemoryLedger()
    client = palyra.Palyra(
        {
            "providers": [{"id": "local", "kind": "deterministic"}],
            "models": [
                {
                    "id": "claude-ish",
                    "provider": "local",
                    "capabilities": {"vision": True},
                    "pricing": {"input": 3, "output": 15},
                }
            ],
        },
        home=tmp_path_factory.mktemp("home"),
        ledger=ledger,
    )
    _, secret = client.tokens.create("sdk", agent="claude-client")
    with serving(create_app(client)) as base_url:
        origin = base_url.removesuffix("/v1")
        made = {
            "client": client,
            "ledger": ledger,
            "secret": secret,
            "origin": origin,
            "sdk": anthropic.Anthropic(api_key=secret, base_url=origin, max_retries=0),
        }
        yield made
        made["sdk"].close()


def test_a_message_with_a_system_prompt(served: dict[str, Any]) -> None:
    sdk: anthropic.Anthropic = served["sdk"]
    reply = sdk.messages.create(
        model="claude-ish",
        max_tokens=100,
        system="Be brief.",
        messages=HELLO,  # type: ignore[arg-type]
    )
    assert reply.type == "message"
    assert reply.role == "assistant"
    assert reply.content[0].type == "text"
    assert reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens > 0
    assert reply.usage.cache_read_input_tokens == 0
    assert served["ledger"].records()[-1].agent == "claude-client"


def test_a_stream_with_the_sdk_helper(served: dict[str, Any]) -> None:
    sdk: anthropic.Anthropic = served["sdk"]
    with sdk.messages.stream(
        model="claude-ish", max_tokens=100, messages=HELLO
    ) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello there"
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_a_tool_round_trip(served: dict[str, Any]) -> None:
    sdk: anthropic.Anthropic = served["sdk"]
    served["client"].deterministic().enqueue(
        tool_calls=[{"name": "weather", "arguments": {"city": "Lima"}}]
    )
    tools = [
        {
            "name": "weather",
            "description": "The weather in a city",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
            },
        }
    ]
    first = sdk.messages.create(
        model="claude-ish", max_tokens=100, messages=HELLO, tools=tools
    )  # type: ignore[arg-type]
    assert first.stop_reason == "tool_use"
    (use,) = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "weather"  # type: ignore[union-attr]
    assert use.input == {"city": "Lima"}  # type: ignore[union-attr]
    second = sdk.messages.create(
        model="claude-ish",
        max_tokens=100,
        tools=tools,  # type: ignore[arg-type]
        messages=[  # type: ignore[arg-type]
            *HELLO,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}
                ],  # type: ignore[union-attr]
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    served["client"].deterministic().enqueue(
        tool_calls=[{"name": "weather", "arguments": {"city": "Oslo"}}]
    )
    with sdk.messages.stream(
        model="claude-ish", max_tokens=100, messages=HELLO, tools=tools
    ) as s:  # type: ignore[arg-type]
        streamed = s.get_final_message()
    assert [b.input for b in streamed.content if b.type == "tool_use"] == [
        {"city": "Oslo"}
    ]  # type: ignore[union-attr]


def test_an_image(served: dict[str, Any]) -> None:
    sdk: anthropic.Anthropic = served["sdk"]
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
    }
    reply = sdk.messages.create(
        model="claude-ish",
        max_tokens=50,
        messages=[
            {
                "role": "user",
                "content": [image, {"type": "text", "text": "What is it?"}],
            }
        ],  # type: ignore[list-item]
    )
    assert reply.content


def test_count_tokens(served: dict[str, Any]) -> None:
    sdk: anthropic.Anthropic = served["sdk"]
    counted = sdk.messages.count_tokens(model="claude-ish", messages=HELLO)  # type: ignore[arg-type]
    assert counted.input_tokens > 0


def test_errors_map_to_the_sdk_s_exceptions(served: dict[str, Any]) -> None:
    sdk: anthropic.Anthropic = served["sdk"]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(
            api_key="nope", base_url=served["origin"], max_retries=0
        ).messages.create(
            model="claude-ish",
            max_tokens=10,
            messages=HELLO,  # type: ignore[arg-type]
        )
    with pytest.raises(anthropic.NotFoundError) as missing:
        sdk.messages.create(model="nope", max_tokens=10, messages=HELLO)  # type: ignore[arg-type]
    assert missing.value.body["type"] == "error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        sdk.messages.create(model="claude-ish", max_tokens=0, messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(anthropic.BadRequestError):
        sdk.messages.create(model="claude-ish", max_tokens=10, messages=[])


def test_an_openai_backed_model_through_the_anthropic_shape(
    upstream: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from tests.conftest import FAKE_KEY
    from tests.helpers import loopback_transports

    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    client = palyra.Palyra(
        {
            "providers": [
                {
                    "id": "up",
                    "kind": "openai",
                    "base_url": upstream.base_url,
                    "api_key_env": "UP_KEY",
                }
            ],
            "models": [{"id": "gpt-4o-mini", "provider": "up"}],
        },
        home=tmp_path,
        ledger=False,
        **loopback_transports(),
    )
    _, secret = client.tokens.create("sdk")
    with serving(create_app(client)) as base_url:
        sdk = anthropic.Anthropic(
            api_key=secret, base_url=base_url.removesuffix("/v1"), max_retries=0
        )
        reply = sdk.messages.create(model="gpt-4o-mini", max_tokens=20, messages=HELLO)  # type: ignore[arg-type]
        with sdk.messages.stream(
            model="gpt-4o-mini", max_tokens=20, messages=HELLO
        ) as s:  # type: ignore[arg-type]
            text = "".join(s.text_stream)
    assert reply.content[0].text == "Hello there"  # type: ignore[union-attr]
    assert text == "Hello there"
    sent = upstream.requests[0].json()
    assert sent["messages"] == HELLO  # OpenAI's shape went upstream
    assert sent["max_tokens"] == 20 or sent.get("max_completion_tokens") == 20
