"""Stream requests answered without an event stream, over real loopback HTTP:
a JSON completion is served as a stream, anything else is a typed error that
names the content type and is not retried."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import (
    DRIVERS,
    chat,
    completion_json,
    drain,
    start_stream,
    texts,
    upstream_config,
)
from tests.providers.anthropic_fixtures import message
from tests.upstream import Reply, Upstream

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

USER = [{"role": "user", "content": "hi"}]


def _openai(upstream: Upstream) -> dict[str, Any]:
    config = upstream_config(upstream.base_url)
    config["providers"][0]["max_retries"] = 2  # a retry would show as a request
    return config


def _anthropic(upstream: Upstream) -> dict[str, Any]:
    provider = {
        "id": "ant",
        "kind": "anthropic",
        "base_url": upstream.origin,
        "api_key_env": "UP_KEY",
        "max_retries": 2,
    }
    return {
        "providers": [provider],
        "models": [{"id": "claude", "provider": "ant", "upstream_model": "claude-x"}],
    }


@pytest.fixture(name="client")
async def client_fixture(
    upstream: Upstream,
    monkeypatch: pytest.MonkeyPatch,
    driver: str,
    request: pytest.FixtureRequest,
) -> AsyncIterator[palyra.Palyra]:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    dialect = getattr(request, "param", "openai")
    config = _anthropic(upstream) if dialect == "anthropic" else _openai(upstream)
    client = palyra.Palyra(config, async_sleep=_no_wait, sleep=lambda s: None)
    yield client
    if driver == "async":
        await client.aclose()
    else:
        client.close()


async def _no_wait(seconds: float) -> None:
    """Retries without waiting."""


@pytest.mark.parametrize("driver", DRIVERS)
async def test_json_completion_is_served_as_a_stream(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    """Chunks built from the completion, usage included, in one request."""
    upstream.enqueue(Reply(json=completion_json("Hello there")))
    stream = await start_stream(
        client, driver, USER, stream_options={"include_usage": True}
    )
    chunks = await drain(stream)
    assert "".join(texts(chunks)) == "Hello there"
    assert chunks[-1].usage is not None
    assert stream.usage is not None
    assert stream.usage.total_tokens == 7
    assert stream.completion is not None
    assert stream.completion.choices[0].finish_reason == "stop"
    assert stream.completion.usage == stream.usage
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("driver", DRIVERS)
async def test_json_tool_call_completion_is_served_as_a_stream(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    body = completion_json("")
    body["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
            }
        ],
    }
    body["choices"][0]["finish_reason"] = "tool_calls"
    upstream.enqueue(Reply(json=body))
    stream = await start_stream(client, driver, USER)
    chunks = await drain(stream)
    assert all(c.usage is None for c in chunks)  # the caller did not ask for it
    assert stream.completion is not None
    (call,) = stream.completion.choices[0].message.tool_calls or []
    assert (call.id, call.function.name) == ("call_1", "get_weather")
    assert call.function.arguments == '{"city":"Oslo"}'
    assert stream.usage is not None


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("reply", "match"),
    [
        pytest.param(
            Reply(json={"object": "list", "data": []}),
            "answered a stream request with JSON that is not a chat completion",
            id="not-a-completion",
        ),
        pytest.param(
            Reply(
                body=b"<html><body>Gateway says hi</body></html>",
                content_type="text/html",
            ),
            "answered a stream request with text/html, not text/event-stream",
            id="html",
        ),
        pytest.param(
            Reply(json={**completion_json("x"), "choices": []}),
            "has no choices",
            id="no-choices",
        ),
    ],
)
async def test_other_answers_are_typed_and_not_retried(
    upstream: Upstream, client: palyra.Palyra, driver: str, reply: Reply, match: str
) -> None:
    upstream.enqueue(reply)
    with pytest.raises(palyra.APIResponseValidationError, match=match) as info:
        await start_stream(client, driver, USER)
    assert len(upstream.requests) == 1
    assert info.value.request_id == "req_1"
    assert [a.failure for a in info.value.attempts] == ["unknown"]


@pytest.mark.parametrize("driver", DRIVERS)
async def test_json_error_body_is_that_error(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    error = {"message": "slow down", "type": "rate_limit_error"}
    upstream.enqueue(Reply(json={"error": error}))
    upstream.enqueue(Reply(json=completion_json("after the wait")))
    stream = await start_stream(client, driver, USER)
    assert "".join(texts(await drain(stream))) == "after the wait"
    assert [a.failure for a in stream.palyra.attempts] == ["rate_limited", None]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("client", ["anthropic"], indirect=True)
async def test_anthropic_json_message_is_served_as_a_stream(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    upstream.enqueue(Reply(json=message()))
    stream = await start_stream(client, driver, USER)
    assert "".join(texts(await drain(stream))) == "Hello!"
    assert stream.usage is not None
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (10, 3)
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("driver", DRIVERS)
async def test_non_stream_answer_with_no_choices_is_invalid(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    """A chat answer with no choices is not a success, nor is one whose
    choice has no message."""
    upstream.enqueue(Reply(json={**completion_json("x"), "choices": []}))
    no_message = completion_json("x")
    no_message["choices"] = [{"index": 0, "finish_reason": "stop"}]
    upstream.enqueue(Reply(json=no_message))
    for what in ("has no choices", "is not a chat completion"):
        with pytest.raises(palyra.APIResponseValidationError, match=what) as info:
            await chat(client, driver, USER)
        assert (info.value.provider, info.value.model) == ("up", "gpt-4o-mini")
    (health,) = client.health()
    assert health.consecutive_failures == 2
