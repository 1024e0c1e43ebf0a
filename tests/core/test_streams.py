"""Streams dropped without being read to the end or closed, sync and async:
the connection goes back to the pool, and the breaker, health window and
hooks hear that the stream ended (closed early, not failed) exactly once.

The work is done at the client's next call (an async stream's: on its loop),
never inside the garbage collector; a one-connection pool proves that no
connection stays pinned."""

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


def _watch(client: palyra.Palyra) -> list[Completion]:
    ended: list[Completion] = []

    def record(ctx: CallContext, completion: Completion) -> None:
        ended.append(completion)

    client._pipeline.hooks.after_completion.append(record)
    return ended


def _network_client(server: Upstream) -> tuple[palyra.Palyra, list[Completion]]:
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
    return client, _watch(client)


def _health(client: palyra.Palyra) -> tuple[Any, ...]:
    [health] = client.health()
    return (health.calls, health.success_rate, health.state)


def _dropped_events(ended: list[Completion]) -> list[tuple[bool, str]]:
    return [(e.complete, e.candidate.model.id) for e in ended]


def test_a_half_read_sync_stream_gives_its_connection_back(server: Upstream) -> None:
    client, ended = _network_client(server)
    server.enqueue(Reply(sse=[*LONG, "[DONE]"], chunk_delay=0.001))
    stream = client.stream(USER)
    next(iter(stream))
    del stream  # no cycle: finalized here, its work left to the next call
    assert ended == []
    client.chat(USER, timeout=2)  # the only connection was given back first
    assert _dropped_events(ended)[0] == (False, "m")
    assert _health(client) == (2, 1.0, "closed")
    client.close()


def test_an_unread_sync_stream_is_released_too(server: Upstream) -> None:
    client, ended = _network_client(server)
    server.enqueue(Reply(sse=[*LONG, "[DONE]"], chunk_delay=0.001))
    client.stream(USER)  # never iterated, never closed
    gc.collect()
    client.chat(USER, timeout=2)
    assert [e.complete for e in ended] == [False, True]
    client.close()


def test_closing_the_client_settles_what_was_dropped(server: Upstream) -> None:
    client, ended = _network_client(server)
    client.stream(USER)
    client.close()
    assert [e.complete for e in ended] == [False]


@pytest.mark.anyio
async def test_a_dropped_async_stream_gives_its_connection_back(
    server: Upstream,
) -> None:
    client, ended = _network_client(server)
    server.enqueue(Reply(sse=[*LONG, "[DONE]"], chunk_delay=0.001))
    stream = await client.astream(USER)  # primed, never iterated, never closed
    del stream
    gc.collect()
    for _ in range(20):  # the close runs on this loop, soon after
        await asyncio.sleep(0.01)
        if ended:
            break
    assert _dropped_events(ended) == [(False, "m")]
    assert _health(client) == (1, 1.0, "closed")
    await client.achat(USER, timeout=2)
    await client.aclose()


@pytest.mark.anyio
async def test_a_half_read_async_stream_reports_once(server: Upstream) -> None:
    client, ended = _network_client(server)
    server.enqueue(Reply(sse=[*LONG, "[DONE]"], chunk_delay=0.001))
    stream = await client.astream(USER)
    await anext(aiter(stream))
    del stream
    gc.collect()
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert _dropped_events(ended) == [(False, "m")]
    await client.achat(USER, timeout=2)
    assert len(ended) == 2
    await client.aclose()


def test_an_async_stream_outliving_its_loop_leaves_no_warning(
    server: Upstream,
) -> None:
    """A stream kept past asyncio.run cannot close on its loop: its connection
    went with it. Its end is still reported, at the client's next call."""
    client, ended = _network_client(server)
    server.enqueue(Reply(sse=[*LONG, "[DONE]"], chunk_delay=0.001))

    async def open_one() -> palyra.AsyncStream:
        return await client.astream(USER)

    kept = asyncio.run(open_one())
    del kept
    gc.collect()
    client.close()
    assert [e.complete for e in ended] == [False]


@pytest.mark.parametrize("read", [0, 1])
def test_dropped_in_memory_streams_report_too(read: int) -> None:
    """The deterministic upstream answers from memory (its body is read at
    once): a stream of it dropped unread still owes, and gives, its report."""
    client = palyra.Palyra()
    ended = _watch(client)
    stream = client.stream(USER)
    for _ in range(read):
        next(iter(stream))
    del stream
    client.chat(USER)
    assert [e.complete for e in ended] == [False, True]
    assert client.health()[0].calls == 2


@pytest.mark.anyio
async def test_a_cancelled_async_read_reports_a_stream_closed_early(
    server: Upstream,
) -> None:
    client, ended = _network_client(server)
    server.enqueue(Reply(sse=[*LONG, "[DONE]"], chunk_delay=0.01))
    stream = await client.astream(USER)

    async def read_all() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(read_all())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _dropped_events(ended) == [(False, "m")]
    await stream.aclose()  # nothing more to report
    assert len(ended) == 1
    await client.aclose()


def test_a_finished_stream_reports_once(server: Upstream) -> None:
    client, ended = _network_client(server)
    stream = client.stream(USER)
    text = "".join(c.choices[0].delta.content or "" for c in stream)
    assert text.split() == ["a", "b", "c", "d", "e", "f"]
    del stream
    client.chat(USER)
    assert [e.complete for e in ended] == [True, True]
    assert _health(client) == (2, 1.0, "closed")
    client.close()
