"""What the tests of palyra.testing share: an Anthropic-kind config on an
`AnthropicMock`, and raw requests to the mock's wire."""

from __future__ import annotations

from typing import Any

import httpx

import palyra
from palyra.testing import AnthropicMock

UPSTREAM = "claude-sonnet-4-5"
CONFIG = {
    "providers": [{"id": "up", "kind": "anthropic", "max_retries": 2}],
    "models": [
        {
            "id": "claude",
            "provider": "up",
            "upstream_model": UPSTREAM,
            "max_output_tokens": 1024,
        }
    ],
}
HELLO = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there"},
]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
VERSION = {"anthropic-version": "2023-06-01"}


async def no_wait(seconds: float) -> None:
    """Retries without waiting (async)."""


def connect(mock: AnthropicMock) -> palyra.Palyra:
    """A client whose Anthropic provider is ``mock``, retries without waits."""
    return palyra.Palyra(
        CONFIG,
        transport=mock.transport,
        async_transport=mock.transport,
        credentials=lambda provider: "sk-ant-test",
        sleep=lambda seconds: None,
        async_sleep=no_wait,
    )


def wire(mock: AnthropicMock, body: dict[str, Any], **headers: str) -> httpx.Response:
    """POST a raw body to the mock's /v1/messages (version header by default)."""
    with httpx.Client(transport=mock.transport) as http:
        return http.post(
            "https://api.anthropic.com/v1/messages",
            json=body,
            headers={**VERSION, **headers},
        )


def body(**fields: Any) -> dict[str, Any]:
    """A valid Messages API body, with ``fields`` changed."""
    return {
        "model": UPSTREAM,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }
