"""Streams dropped without being read or closed, sync and async alike: the
connection goes back to the pool, and the breaker, health window and hooks
hear that the stream ended (closed early, not failed)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import palyra
from palyra._core import CallContext, Completion
from tests.helpers import chunk_json, loopback_transports
from tests.upstream import Reply, Upstream

USER = [{"role": "user", "content": "a b c d e f"}]
# Many events, so a stream dropped after its first chunk is far from done.
LONG = [chunk_json(f"w{i} ") for i in range(200)] + [chunk_json("end", "stop")]


@pytest.fixture
def server() -> Iterator[Upstream]:
    with Upstream() as upstream:
        yield upstream
    assert not upstream.errors, upstream.errors


def _client(server: Upstream) -> tuple[palyra.Palyra, list[Completion]]:
    config = {
        "providers": [
            {
                "id": "up",
                "kind": "openai",
                "base_url": server.base_url,
                "auth_header": "none",
            }
        ],
        "models": [{"id": "m", "provider": "up"}],
        "resilience": {"deadline": 5},
    }
    # One connection in the pool: a stream that pinned it would make the next
    # call wait for a free connection, and time out.
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    client = palyra.Palyra(config, **loopback_transports(limits=one))
    ended: list[Completion] = []

    def record(ctx: CallContext, completion: Completion) -> None:
        ended.append(completion)

    client._pipeline.hooks.after_completion.append(record)
    return client, ended


def _health(client: palyra.Palyra) -> tuple[Any, ...]:
    [health] = client.health()
    return (health.calls, health.success_rate, health.state)


def test_a_dropped_sync_stream_gives_its_connection_back(server: Upstream) -> None:
    client, ended = _client(server)
    server.enqueue(Reply(sse=[*LONG, "[DONE]"], chunk_delay=0.001))
    stream = client.stream(USER)
    next(iter(stream))
    del stream
    gc.collect()
    assert [(e.complete, e.candidate.model.id) for e in ended] == [(False, "m")]
    assert _health(client) == (1, 1.0, "closed")
    client.chat(USER, timeout=2)  # the only connection was given back
    client.close()


def test_an_unread_sync_stream_is_released_too(server: Upstream) -> None:
    client, ended = _client(server)
    server.enqueue(Reply(sse=[*LONG, "[DONE]"], chunk_delay=0.001))
    client.stream(USER)  # never iterated, never closed
    gc.collect()
    assert [e.complete for e in ended] == [False]
    client.chat(USER, timeout=2)
    client.close()


@pytest.mark.anyio
async def test_a_dropped_async_stream_gives_its_connection_back(
    server: Upstream,
) -> None:
    client, ended = _client(server)
    server.enqueue(Reply(sse=[*LONG, "[DONE]"], chunk_delay=0.001))
    stream = await client.astream(USER)  # primed, never iterated, never closed
    del stream
    gc.collect()
    for _ in range(20):  # the close runs as a task on this loop
        await asyncio.sleep(0.01)
        if ended:
            break
    assert [(e.complete, e.candidate.model.id) for e in ended] == [(False, "m")]
    assert _health(client) == (1, 1.0, "closed")
    await client.achat(USER, timeout=2)
    await client.aclose()


def test_an_async_stream_outliving_its_loop_leaves_no_warning(
    server: Upstream,
) -> None:
    """A stream kept past asyncio.run cannot close on its loop: it went with
    it. Dropping it later reports the end and warns about nothing."""
    client, ended = _client(server)
    server.enqueue(Reply(sse=[*LONG, "[DONE]"], chunk_delay=0.001))

    async def open_one() -> palyra.AsyncStream:
        return await client.astream(USER)

    kept = asyncio.run(open_one())
    del kept
    gc.collect()
    assert [e.complete for e in ended] == [False]


def test_a_finished_stream_reports_once(server: Upstream) -> None:
    client, ended = _client(server)
    stream = client.stream(USER)
    text = "".join(c.choices[0].delta.content or "" for c in stream)
    assert text.split() == ["a", "b", "c", "d", "e", "f"]
    del stream
    gc.collect()
    assert [e.complete for e in ended] == [True]
    assert _health(client) == (1, 1.0, "closed")
    client.close()
