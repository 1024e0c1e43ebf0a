"""What the Anthropic adapter's tests share: a config, a mock Messages API that
records what it is sent, and builders of requests and answers."""

from __future__ import annotations

import json
from typing import Any

import httpx

import palyra

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
