"""Usage on every answer: when an upstream reports none, palyra counts it
locally and flags it; ``stream_usage = false`` stops asking for it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import (
    DRIVERS,
    chat,
    chunk_json,
    completion_json,
    drain,
    start_stream,
    upstream_config,
)
from tests.upstream import Reply, Upstream

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

USER = [{"role": "user", "content": "Count the tokens of this prompt, please."}]
NO_USAGE_STREAM = [chunk_json("Hello"), chunk_json(" world", "stop"), "[DONE]"]


async def _client(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, driver: str, **provider: object
) -> AsyncIterator[palyra.Palyra]:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    config = upstream_config(upstream.base_url)
    config["providers"][0].update(provider)
    client = palyra.Palyra(config)
    yield client
    if driver == "async":
        await client.aclose()
    else:
        client.close()


@pytest.fixture(name="client")
async def client_fixture(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, driver: str
) -> AsyncIterator[palyra.Palyra]:
    async for client in _client(upstream, monkeypatch, driver):
        yield client


@pytest.mark.parametrize("driver", DRIVERS)
async def test_stream_without_usage_gets_an_estimate(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    """The docs' ``stream.usage.total_tokens`` works on an upstream that
    ignores include_usage, and says it was counted locally."""
    upstream.enqueue(Reply(sse=NO_USAGE_STREAM))
    stream = await start_stream(client, driver, USER)
    await drain(stream)
    assert stream.usage is not None
    assert stream.completion is not None
    assert stream.completion.usage == stream.usage
    estimate = stream.palyra.token_estimate
    assert estimate is not None
    assert stream.usage.prompt_tokens == estimate.prompt_tokens > 0
    assert stream.usage.completion_tokens == 2  # "Hello", " world"
    assert stream.usage.total_tokens == estimate.prompt_tokens + 2
    assert stream.palyra.usage_estimated is True
    assert stream.completion.palyra is not None
    assert stream.completion.palyra.usage_estimated is True


@pytest.mark.parametrize("driver", DRIVERS)
async def test_reported_usage_is_not_flagged(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    last = json.dumps({**json.loads(chunk_json()), "choices": [], "usage": usage})
    upstream.enqueue(Reply(sse=[*NO_USAGE_STREAM[:2], last, "[DONE]"]))
    stream = await start_stream(client, driver, USER)
    await drain(stream)
    assert stream.usage is not None
    assert stream.usage.total_tokens == 13
    assert stream.palyra.usage_estimated is False


@pytest.mark.parametrize("driver", DRIVERS)
async def test_chat_without_usage_gets_an_estimate(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    body = completion_json("Hello world")
    del body["usage"]
    upstream.enqueue(Reply(json=body))
    reply = await chat(client, driver, USER)
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 2
    assert reply.palyra is not None
    assert reply.palyra.usage_estimated is True
    upstream.enqueue(Reply(json=completion_json("Hello world")))
    reply = await chat(client, driver, USER)
    assert reply.usage is not None
    assert (reply.usage.total_tokens, reply.palyra.usage_estimated) == (7, False)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_stream_usage_false_sends_no_stream_options(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    """For a server that refuses stream_options: none is sent, usage is
    counted locally."""
    async for client in _client(upstream, monkeypatch, driver, stream_usage=False):
        upstream.enqueue(Reply(sse=NO_USAGE_STREAM))
        stream = await start_stream(client, driver, USER)
        await drain(stream)
        body = json.loads(upstream.requests[-1].body)
        assert body["stream"] is True
        assert "stream_options" not in body
        assert stream.usage is not None
        assert stream.palyra.usage_estimated is True
